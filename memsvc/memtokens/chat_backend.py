"""The local LLM backend behind `POST /v1/chat/completions` for `local/<name>` models: the OpenAI request
in, an OpenAI chat completion (or its stream of chunks) out, generated in this process by
memsvc.memtokens.backend with the context's memory tokens spliced in. No network, ever.

Only what a local greedy/sampled generation can honour is accepted; other OpenAI parameters (tools,
n > 1, logprobs, ...) are a 400 naming them rather than silently ignored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from memsvc.chat import ChatError
from memsvc.memtokens.local_models import LocalModels
from memsvc.memtokens.marks import MarkedCounter

DEFAULT_MAX_TOKENS = 256
MAX_TOKENS = 2048
_ACCEPTED = frozenset({"max_tokens", "max_completion_tokens", "temperature", "seed", "stop", "user", "n",
                       "stream_options", "metadata", "store"})


def _refuse(message: str, param: str) -> ChatError:
    return ChatError(400, message, param=param, code="unsupported_parameter")


class LocalChatBackend:
    def __init__(self, models: LocalModels) -> None:
        self.models = models
        self._lock = threading.Lock()  # one generation at a time: a CPU has no spare cores for two

    def __call__(self, *, model: str, messages: list[dict[str, Any]], stream: bool = False,
                 memory_vectors: Mapping[uuid.UUID, np.ndarray] | None = None, **params: Any) -> Any:
        from memsvc.memtokens.backend import generate
        from memsvc.memtokens.model import load_local_model

        spec = self.models.get(model)
        options = _options(params)
        lm = load_local_model(spec.spec, name=spec.name)
        turns = [{"role": str(m.get("role")), "content": _text(m.get("content"))} for m in messages]
        vectors = dict(memory_vectors or {})
        prompt_tokens = MarkedCounter(lm.tokenizer, {k: v.shape[0] for k, v in vectors.items()}).count(
            lm.render_chat(turns))
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())

        def pieces() -> Iterator[str]:
            with self._lock:
                yield from _until_stop(generate(lm, turns, vectors, max_new_tokens=options["max_tokens"],
                                                temperature=options["temperature"]), options["stop"])

        if stream:
            return _chunks(ident, created, model, pieces(), options["max_tokens"], lm)
        text = "".join(pieces())
        completion = lm.count_tokens(text)
        return {
            "id": ident, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "length" if completion >= options["max_tokens"] else "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion},
        }


def _options(params: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(params) - _ACCEPTED)
    if unknown:
        raise _refuse(f"the local backend does not support: {', '.join(unknown)}", unknown[0])
    if params.get("n", 1) != 1:
        raise _refuse("the local backend answers one choice (n = 1)", "n")
    max_tokens = params.get("max_completion_tokens", params.get("max_tokens")) or DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS:
        raise _refuse(f"max_tokens must be an integer from 1 to {MAX_TOKENS}", "max_tokens")
    temperature = params.get("temperature", 0.0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
        raise _refuse("temperature must be a number from 0 to 2", "temperature")
    stop = params.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise _refuse("stop must be a string or up to 4 non-empty strings", "stop")
    return {"max_tokens": max_tokens, "temperature": float(temperature), "stop": stop}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts: the text ones
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _until_stop(pieces: Iterator[str], stop: list[str]) -> Iterator[str]:
    """The pieces up to (not including) the first stop sequence."""
    if not stop:
        yield from pieces
        return
    held = ""
    longest = max(len(s) for s in stop)
    for piece in pieces:
        held += piece
        hits = [held.find(s) for s in stop if s in held]
        if hits:
            yield held[:min(hits)]
            return
        if len(held) >= longest:  # keep back what could start a stop sequence
            yield held[:len(held) - longest + 1]
            held = held[len(held) - longest + 1:]
    yield held


def _chunks(ident: str, created: int, model: str, pieces: Iterator[str], max_tokens: int,
            lm: Any) -> Iterator[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    text = []
    for piece in pieces:
        if piece:
            text.append(piece)
            yield chunk({"content": piece})
    yield chunk({}, "length" if lm.count_tokens("".join(text)) >= max_tokens else "stop")
