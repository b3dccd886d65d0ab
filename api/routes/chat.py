"""POST /v1/chat/completions: OpenAI-compatible chat that remembers (the logic is memsvc.chat).

Every error here, authentication included, is OpenAI-shaped ({"error": {"message", "type", "param",
"code"}}) so OpenAI SDKs and tools report it as they would OpenAI's own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from api.deps import get_principal, get_session, get_store, raw_body
from api.openapi import error_response
from memsvc import chat, chat_policy
from memsvc.chat_params import PART_TYPES, OpenAIParams
from memsvc.errors import MemsvcError
from memsvc.schemas import NO_NUL, NOT_BLANK

router = APIRouter(prefix="/v1", tags=["chat"])
log = logging.getLogger("memsvc.chat")

def _memsvc_options() -> dict[str, Any]:
    schema = chat.MemsvcOptions.model_json_schema()
    for name in ("user_id", "agent_id", "session_id"):  # refused when blank, as everywhere (memsvc.schemas.ScopeId)
        for variant in schema["properties"][name]["anyOf"]:
            if variant.get("type") == "string":
                variant["pattern"] = NOT_BLANK
    return schema


_TEXT = {"type": "string", "pattern": NO_NUL}
# The model's allow-list, the api_bases and the recipes are this deployment's: api.openapi fills them in.
_OPENAPI_BODY = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": False,
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": 200,
                      "description": "Must match the server's allow-list (MEMSVC_CHAT_MODELS)."},
            "stream": {"type": "boolean", "default": False},
            "api_base": {"type": "string", "description": "Only a base the operator lists in MEMSVC_CHAT_API_BASES."},
            "messages": {
                "type": "array", "minItems": 1, "maxItems": 2000,
                "items": {"type": "object", "required": ["role"], "additionalProperties": True, "properties": {
                    "role": {"enum": sorted(chat.ROLES)},
                    "content": {"anyOf": [_TEXT, {"type": "null"}, {"type": "array", "items": {
                        "type": "object", "required": ["type"], "properties": {
                            "type": {"enum": list(PART_TYPES)}, "text": _TEXT},
                        "description": "A refusal part (with a refusal string) only in an assistant's message."}}]}}},
                "contains": {"type": "object", "required": ["role", "content"], "properties": {
                    "role": {"const": "user"}, "content": {"type": "string", "pattern": NOT_BLANK}}},
                "description": "At least one user message with text.",
            },
            "memsvc": _memsvc_options(),
            # Passed to the model as sent, with OpenAI's types (memsvc.chat_params; api.openapi adds their $defs).
            **OpenAIParams.model_json_schema(ref_template="#/components/schemas/{model}")["properties"],
        },
    }}}},
    "responses": {"200": {"content": {
        "application/json": {"schema": {
            "type": "object", "required": ["choices", "memsvc"], "additionalProperties": True,
            "description": "OpenAI's chat completion, plus what memsvc did (`memsvc`).",
            "properties": {"choices": {"type": "array"}, "memsvc": {"type": "object", "properties": {
                key: ({"type": "array", "items": {"type": "string"}} if key.startswith("memor") else {})
                for key in ("context_tokens", "tokenizer", "memories_used", "memories_stored",
                            "memory_tokens_used")}}}}},
        "text/event-stream": {"schema": {"type": "string"}, "description": (
            "`stream: true`: OpenAI's chunks as server-sent events; the last carries `memsvc`, then [DONE].")},
    }}},
}
_UPSTREAM = {502: error_response(502, "The model call failed upstream.", openai=True),
             504: error_response(504, "The model did not answer in time.", openai=True)}


def _error(exc: chat.ChatError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _backend(request: Request, req: chat.ChatRequest) -> chat.ChatBackend:
    # `local/<name>`: the in-process backend (memory tokens spliced in). Otherwise an app may hold its own
    # backend (tests: litellm with mock_response); litellm by default.
    if request.app.state.retrieval.local_models.serves(req.model):
        return request.app.state.local_chat
    return getattr(request.app.state, "chat_backend", None) or chat.litellm_completion


def _in_process(request: Request, model: str) -> frozenset[str]:
    # Models memsvc serves itself (`local/<name>`, no network) pass the chat policy whatever its lists say.
    local = getattr(request.app.state.retrieval, "local_models", None)
    return frozenset({model}) if local is not None and local.serves(model) else frozenset()


@router.post("/chat/completions", openapi_extra=_OPENAPI_BODY, response_model=None, responses=_UPSTREAM, description=(
    "OpenAI-compatible chat completions with long-term memory. Send the OpenAI request plus an optional "
    "`memsvc` object (user_id, agent_id, session_id, budget_tokens, remember). A context of the most "
    "relevant memories (within budget_tokens of the model's tokenizer) is added as a system message, the "
    "model is called through litellm, and the last user turn and the answer are stored as episodic memories. "
    "`stream: true` answers with server-sent events. Needs the read scope, and write unless remember=false."
))
def chat_completions(
    request: Request, body: bytes = Depends(raw_body), session: Session = Depends(get_session)
) -> Any:
    try:
        principal = get_principal(request.headers.get("authorization"), session)
        req = chat.parse_request(body)
        principal.require("write" if req.options.remember else "read")
        chat.check_target(req, chat_policy.from_settings(request.app.state.settings), _in_process(request, req.model))
        store = get_store(request, session, principal)
        chat.check_writable(store.scope, req)
        context = chat.build(request.app.state.retrieval, session, store.scope, store.embedder, req)
        session.commit()  # end the read transaction: the model call may take a while
        result = chat.complete(_backend(request, req), req, chat.with_context(req.messages, context.text),
                               context.vectors)
        if req.stream:
            return _stream(request, req, result, context)
        response = chat.dump(result)
        stored = chat.remember_turns(store, req, chat.answer_text(response))
        session.commit()
    except chat.ChatError as exc:
        return _error(exc)
    except MemsvcError as exc:
        return _error(chat.ChatError.from_memsvc(exc))
    response["memsvc"] = _report(context, stored)
    return JSONResponse(response)


def _report(context: chat.Context, stored: list[Any]) -> dict[str, Any]:
    return {"context_tokens": context.token_count, "tokenizer": context.tokenizer,
            "memories_used": [str(i) for i in context.used], "memories_stored": [str(i) for i in stored],
            "memory_tokens_used": [str(i) for i in context.vectors]}


def _stream(request: Request, req: chat.ChatRequest, result: Any, context: chat.Context) -> StreamingResponse:
    collected: list[str] = []
    chunks = chat.stream_chunks(result, collected)
    try:
        first = next(chunks, None)  # provider errors that come with the first chunk still get a status code
    except Exception as exc:
        raise chat.model_error(exc, req.model) from exc

    def event(data: dict[str, Any]) -> str:
        return f"data: {json.dumps(data)}\n\n"

    def events() -> Iterator[str]:
        # One chunk is held back: the last one goes out after the turns are stored, carrying the
        # `memsvc` report, so a client that saw the stream end knows the exchange is remembered.
        last = first
        try:
            for data in chunks:
                if last is not None:
                    yield event(last)
                last = data
        except Exception as exc:  # the status line is sent: report in-band, as OpenAI does
            log.warning("model stream failed: %s", exc)
            if last is not None:
                yield event(last)
            yield event(chat.model_error(exc, req.model).body())
            return
        # The write-back has its own session: the request's is closed once the handler has returned.
        with request.app.state.sessions() as session:
            try:
                store = get_store(request, session, get_principal(request.headers.get("authorization"), session))
                stored = chat.remember_turns(store, req, "".join(collected))
                session.commit()
            except Exception as exc:
                session.rollback()
                log.exception("storing the chat turns failed")
                error = chat.ChatError.from_memsvc(exc) if isinstance(exc, MemsvcError) else chat.ChatError(
                    500, "the answer was streamed but storing the turns failed", type="api_error",
                    code="memory_write_failed")
                if last is not None:
                    yield event(last)
                yield event(error.body())
                return
        report = {"memsvc": _report(context, stored)}
        yield event({**last, **report} if last is not None else report)
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
