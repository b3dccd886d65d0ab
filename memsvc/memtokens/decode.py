"""Decoding from input embeddings with a KV cache, in the inference precision (float32): the one loop behind
token-set verification, `decode_tokens` (check a set through the API) and the backend's generation."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from memsvc.memtokens.model import LocalModel, require_torch

__all__ = ["as_embeds", "decode_tokens", "greedy", "next_ids"]


def as_embeds(model: LocalModel, vectors: np.ndarray) -> Any:
    """A stored token set (float16, k x hidden) as input embeddings (k x hidden) of the inference dtype."""
    torch = require_torch()
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] != model.hidden_size or array.shape[0] < 1:
        raise ValueError(f"token vectors must be k x {model.hidden_size}, not {'x'.join(map(str, array.shape))}")
    # A copy: a set read from the database is a read-only buffer, which torch will not wrap without warning.
    return torch.from_numpy(np.array(array, dtype=np.float16)).to(model.device, model.dtype)


def next_ids(model: LocalModel, embeds: Any, max_new_tokens: int, *, temperature: float = 0.0,
             seed: int | None = None) -> Iterator[Any]:
    """Yield the next token of every row (a LongTensor (B,)) of `embeds` (B x L x hidden), up to
    max_new_tokens times; the caller stops iterating when it has what it needs."""
    torch = require_torch()
    gen = None
    if temperature > 0:
        gen = torch.Generator(device=model.device)
        gen.manual_seed(seed if seed is not None else int(torch.seed() % (2**63)))
    # transformers 5.2x renamed past_key_values to cache (the old name still works there, with a warning).
    cache_kw = "cache" if "cache" in inspect.signature(model.model.forward).parameters else "past_key_values"
    with torch.inference_mode():
        out = model.model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
        for step in range(max_new_tokens):
            logits = out.logits[:, -1].float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                ids = torch.multinomial(probs, 1, generator=gen)[:, 0]
            else:
                ids = logits.argmax(-1)
            yield ids
            if step + 1 < max_new_tokens:
                out = model.model(input_ids=ids[:, None], use_cache=True, logits_to_keep=1,
                                  **{cache_kw: out[cache_kw]})


def greedy(model: LocalModel, vectors: Sequence[np.ndarray], max_new_tokens: int, *,
           targets: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Greedy decode from each token set alone (all of one k, after the start token as in training),
    batched; each row ends at a stop token, and with `targets` also at its first token that differs from
    its target (verification needs no more)."""
    if not vectors:
        return []
    torch = require_torch()
    start = model.embed(torch.tensor([model.start_id])).to(model.dtype)
    embeds = torch.stack([torch.cat([start, as_embeds(model, v)]) for v in vectors])
    out: list[list[int]] = [[] for _ in vectors]
    alive = [True] * len(vectors)
    for step, ids in enumerate(next_ids(model, embeds, max_new_tokens)):
        for i, tok in enumerate(ids.tolist()):
            if not alive[i]:
                continue
            out[i].append(tok)
            if tok in model.stop_ids or (targets is not None and (step >= len(targets[i]) or tok != targets[i][step])):
                alive[i] = False
        if not any(alive):
            break
    return out


def decode_tokens(model: LocalModel, vectors: np.ndarray, max_new_tokens: int) -> str:
    """What greedy decoding from one token set alone produces (up to its end token), as verification does."""
    ids = greedy(model, [vectors], max_new_tokens)[0]
    if ids and ids[-1] in model.stop_ids:
        ids = ids[:-1]
    return model.decode(ids)
