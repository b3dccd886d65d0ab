"""The local LLM backend: a conversation in, text pieces out, with memory token sets spliced into the prompt.

The context builder writes `memory_mark(id)` (memsvc.memtokens.marks) where a memory goes in as tokens. Here
the conversation is rendered with the model's chat template, cut at the markers, the text between them
tokenized, and each memory's k vectors put into `inputs_embeds` where its marker stood: the model reads k
positions instead of the memory's text. The vectors are float16 as stored; they are used in the inference
precision (float32), as when the set was verified.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from memsvc.memtokens.decode import as_embeds, next_ids
from memsvc.memtokens.marks import MEMORY_MARK, memory_mark, split_marked
from memsvc.memtokens.model import LocalModel, require_torch

__all__ = ["MEMORY_MARK", "generate", "memory_mark", "prompt_embeds"]


def prompt_embeds(model: LocalModel, messages: Sequence[Mapping[str, str]],
                  memory_vectors: Mapping[uuid.UUID | str, np.ndarray]) -> Any:
    """The prompt as input embeddings (1 x positions x hidden), ready for the first generated token."""
    torch = require_torch()
    vectors = {uuid.UUID(str(k)): v for k, v in memory_vectors.items()}
    parts = []
    for piece in split_marked(model.render_chat(messages, add_generation_prompt=True)):
        if isinstance(piece, uuid.UUID):
            if piece not in vectors:
                raise ValueError(f"the prompt marks memory {piece} but no token vectors were given for it")
            parts.append(as_embeds(model, vectors[piece]))
        else:
            ids = model.encode(piece)
            if ids:
                parts.append(model.embed(torch.tensor(ids)).to(model.dtype))
    return torch.cat(parts)[None]


def generate(model: LocalModel, messages: list[dict[str, Any]],
             memory_vectors: Mapping[uuid.UUID | str, np.ndarray], *, max_new_tokens: int = 256,
             temperature: float = 0.0, seed: int | None = None) -> Iterator[str]:
    """Yield the reply's text as it is generated (greedy at temperature 0), until an end token or
    max_new_tokens. A marker whose memory has no vectors in `memory_vectors` is a ValueError naming it."""
    embeds = prompt_embeds(model, messages, memory_vectors)
    ids: list[int] = []
    sent = ""
    for tok in next_ids(model, embeds, max_new_tokens, temperature=temperature, seed=seed):
        token = int(tok[0])
        if token in model.stop_ids:
            break
        ids.append(token)
        text = model.decode(ids)
        # A character split over tokens decodes as U+FFFD until its last byte arrives: hold it back.
        if not text.endswith("\ufffd") and len(text) > len(sent) and text.startswith(sent):
            yield text[len(sent):]
            sent = text
    text = model.decode(ids)
    if text != sent:
        yield text[len(sent):] if text.startswith(sent) else text
