"""The OpenAI-compatible chat with memory (`POST /v1/chat/completions`), without the web part.

parse_request (OpenAI body + a `memsvc` object, OpenAI-shaped errors) -> build_context (the retrieval
layer's token-budgeted builder, on the latest turns) -> with_context (one system message after the
caller's own) -> complete (the model through litellm) -> remember_turns (the last user turn and the
answer as episodic memories, and the memories the context used reinforced, in one transaction).

The model call is a `ChatBackend`: litellm by default (`litellm_completion`); the app may hold another
(tests hand in one that answers with litellm's own mock_response, so the litellm path still runs).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.orm import Session

from memsvc import chat_params, chat_policy
from memsvc.embeddings import Embedder
from memsvc.errors import MemsvcError
from memsvc.memtokens import store as memtoken_store
from memsvc.retrieval.context import TOKENS, ContextQuery
from memsvc.retrieval.search import SearchFilters
from memsvc.retrieval.service import RetrievalService, query_from_messages
from memsvc.schemas import MemoryCreate
from memsvc.scoping import MemoryScope
from memsvc.store import MemoryStore
from memsvc.tokens import counter_for_request
from memsvc.validation import check_text, parse_json

ChatBackend = Callable[..., Any]  # litellm.completion's signature: (model=, messages=, stream=, **params)

# OpenAI request fields passed to the model unchanged. Anything else is refused, as OpenAI does.
PASSTHROUGH = chat_params.PASSTHROUGH
# Where the model is: refused unless the operator lists the base (memsvc.chat_policy).
ROUTING = frozenset({"api_base"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
CONTEXT_HEADER = (
    "Long-term memory (from memsvc): what you know about this user and earlier conversations. Use it when "
    "relevant; do not mention it unless asked.\n\n"
)


class ChatError(Exception):
    """An error the endpoint answers in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @classmethod
    def from_memsvc(cls, exc: MemsvcError) -> ChatError:
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
                429: "rate_limit_error"}.get(exc.status, "invalid_request_error" if exc.status < 500 else "api_error")
        param = exc.details.get("field") if isinstance(exc.details, dict) else None
        return cls(exc.status, exc.message, type=kind, param=param, code=exc.code)


class MemsvcOptions(BaseModel):
    """The `memsvc` object of a chat request: whose memory, how much of it, and whether to write back."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, min_length=1, max_length=200)
    agent_id: str | None = Field(default=None, min_length=1, max_length=200)
    session_id: str | None = Field(default=None, min_length=1, max_length=200)
    budget_tokens: int = Field(default=1024, ge=0, le=100_000, description="Context budget; 0 = no context.")
    remember: bool = Field(default=True, description="Write the user turn and the answer back as memories.")
    context_model: str | None = Field(
        default=None, max_length=200, description="Tokenizer to budget with (default: the request's model).")
    recipe: str | None = Field(default=None, min_length=1, max_length=100,
                               description="Retrieval recipe (GET /v1/recipes); default: the tenant's policy.")


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, tool_call_id, audio... go to the model as sent

    role: str
    content: str | list[dict[str, Any]] | None = None


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[_Message] = Field(min_length=1, max_length=2000)
    stream: bool = False
    memsvc: MemsvcOptions = Field(default_factory=MemsvcOptions)


@dataclass
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    options: MemsvcOptions
    params: dict[str, Any] = field(default_factory=dict)


def message_text(content: Any) -> str:
    """The text of a message's content (a string, or the text parts of a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


_FIELDS = frozenset({"model", "messages", "stream", "memsvc", "role", "content", *MemsvcOptions.model_fields})


def _param(loc: tuple[Any, ...], keep_last: bool) -> str | None:
    """pydantic's loc as OpenAI names a parameter: messages[0].content (union branch tags dropped)."""
    parts: list[str] = []
    for i, part in enumerate(loc):
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        elif part in _FIELDS or (keep_last and i == len(loc) - 1):
            parts.append(str(part))
        else:
            break
    return ".".join(parts) or None


def parse_request(body: bytes) -> ChatRequest:
    try:
        data = parse_json(body)  # strict: finite numbers, bounded nesting (json.loads alone recursed into a 500)
    except MemsvcError as exc:
        raise ChatError(400, exc.message, code="invalid_json") from None
    except (ValueError, UnicodeDecodeError):
        raise ChatError(400, "We could not parse the JSON body of your request. (HINT: This likely means you "
                        "aren't using your HTTP library correctly.)", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ChatError(400, "the request body must be a JSON object")
    try:
        parsed = _Request.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = _param(error.get("loc", ()), error.get("type") == "extra_forbidden")
        missing = error.get("type") == "missing"
        message = f"Missing required parameter: '{param}'." if missing else f"Invalid '{param}': {error.get('msg')}."
        code = "missing_required_parameter" if missing else "invalid_value"
        raise ChatError(400, message, param=param, code=code) from None
    unknown = sorted(set(parsed.model_extra or {}) - PASSTHROUGH - ROUTING)
    if unknown:
        raise ChatError(400, f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0],
                        code="unknown_parameter")
    params = chat_params.as_sent(dict(parsed.model_extra or {}))  # checked below as it will be sent
    wrong = chat_params.problem(params)
    if wrong is not None:
        raise ChatError(400, f"Invalid '{wrong[0]}': {wrong[1]}.", param=wrong[0], code="invalid_value")
    api_base = (parsed.model_extra or {}).get("api_base")
    if api_base is not None and not (isinstance(api_base, str) and 0 < len(api_base) <= 2000):
        raise ChatError(400, "Invalid 'api_base': expected a URL string.", param="api_base", code="invalid_value")
    for i, message in enumerate(parsed.messages):
        if message.role not in ROLES:
            raise ChatError(400, f"Invalid value: '{message.role}'. Supported values are: "
                            f"{', '.join(sorted(ROLES))}.", param=f"messages[{i}].role", code="invalid_value")
        if message.content is None and message.role != "assistant":  # only an assistant's tool call may omit it
            raise ChatError(400, f"Missing required parameter: 'messages[{i}].content'.",
                            param=f"messages[{i}].content", code="missing_required_parameter")
        wrong_part = chat_params.part_problem(message.content, message.role)
        if wrong_part is not None:
            raise ChatError(400, f"Invalid 'messages[{i}].content': {wrong_part}.", param=f"messages[{i}].content",
                            code="invalid_value")
        try:
            check_text(message_text(message.content), f"messages[{i}].content", allow_empty=True)
        except MemsvcError as exc:
            raise ChatError(400, exc.message, param=f"messages[{i}].content", code="invalid_value") from None
    if not any(m.role == "user" and message_text(m.content).strip() for m in parsed.messages):
        raise ChatError(400, "messages must contain at least one user message with text", param="messages",
                        code="invalid_value")
    options = parsed.memsvc
    for name in ("user_id", "agent_id", "session_id"):
        value = getattr(options, name)
        if value is not None:
            try:
                check_text(value, name)
            except MemsvcError as exc:
                raise ChatError(400, exc.message, param=f"memsvc.{name}", code="invalid_value") from None
    return ChatRequest(
        model=parsed.model, messages=[m.model_dump(exclude_none=True) for m in parsed.messages],
        stream=parsed.stream, options=options, params=params,
    )


def check_target(req: ChatRequest, policy: chat_policy.ChatPolicy, in_process: Iterable[str] = ()) -> None:
    """Before any memory is read: refuse a model (or api_base) this server must not call, such as one that
    would send the prompt and its memory context to a local port. `in_process`: models memsvc runs itself."""
    in_process = frozenset(in_process)
    target = chat_policy.Target(req.model) if req.model in in_process else chat_policy.resolve(
        req.model, req.params.get("api_base"))
    refused = chat_policy.refusal(target, policy, in_process)
    if refused is not None:
        raise ChatError(400, refused.message, param=refused.param, code=refused.code)


def query_text(messages: list[dict[str, Any]]) -> str:
    """What to look up: the same rule as /v1/context's messages (the latest user turns)."""
    return query_from_messages((str(m.get("role")), message_text(m.get("content"))) for m in messages)


@dataclass
class Context:
    text: str = ""
    token_count: int = 0
    used: list[uuid.UUID] = field(default_factory=list)
    tokenizer: str = ""
    # Memories that went in as their memory-token vectors (local models only), by id: the backend splices them.
    vectors: dict[uuid.UUID, Any] = field(default_factory=dict)


def build(service: RetrievalService, session: Session, scope: MemoryScope, embedder: Embedder,
          req: ChatRequest) -> Context:
    """The memory context for this conversation, within the budget under the target model's tokenizer:
    the same service, recipe choice and reinforcement as /v1/context.

    Memories are looked up across the user's and agent's sessions (long-term memory), not only this one.
    """
    options = req.options
    if options.budget_tokens == 0:
        return Context()
    try:
        # Memory tokens only when the model that reads the context is the local one they were trained for.
        counter, token_model = (service.target(session, scope.tenant_id, req.model) if options.context_model is None
                                else (counter_for_request(options.context_model), None))
    except MemsvcError as exc:
        raise ChatError.from_memsvc(exc) from None
    query = ContextQuery(
        query=query_text(req.messages), budget=options.budget_tokens, counter=counter,
        filters=SearchFilters(user_id=options.user_id, agent_id=options.agent_id), token_model=token_model,
    )
    try:
        built, _ = service.context(session, scope, embedder, query, recipe=options.recipe)
    except MemsvcError as exc:
        raise ChatError.from_memsvc(exc) from None
    as_tokens = [c.piece.id for c in built.chosen if c.fidelity == TOKENS]
    vectors = memtoken_store.vectors(session, scope, token_model, as_tokens) if token_model and as_tokens else {}
    return Context(built.context, built.token_count, [c.piece.id for c in built.chosen], counter.name, vectors)


def with_context(messages: list[dict[str, Any]], context: str) -> list[dict[str, Any]]:
    """The caller's messages with the memory context as a system message after their own leading ones."""
    if not context.strip():
        return list(messages)
    at = 0
    while at < len(messages) and messages[at].get("role") in ("system", "developer"):
        at += 1
    return [*messages[:at], {"role": "system", "content": CONTEXT_HEADER + context}, *messages[at:]]


def _import_litellm() -> Any:
    from memsvc.llm.gateway import _import_litellm as load  # one place sets litellm up (offline cost map)

    return load()


def litellm_completion(**kwargs: Any) -> Any:
    """The default backend: litellm.completion, any provider litellm knows."""
    return _import_litellm().completion(**kwargs)


def complete(backend: ChatBackend, req: ChatRequest, messages: list[dict[str, Any]],
             vectors: dict[uuid.UUID, Any] | None = None) -> Any:
    """Call the model; provider failures become OpenAI-shaped errors (the caller's request vs our upstream).
    `vectors`: memory-token sets the context refers to (only the local backend is handed any)."""
    extra = {"memory_vectors": vectors} if vectors else {}
    try:
        return backend(model=req.model, messages=messages, stream=req.stream, **req.params, **extra)
    except ChatError:
        raise
    except Exception as exc:
        raise model_error(exc, req.model) from exc


def model_error(exc: Exception, model: str) -> ChatError:
    status = getattr(exc, "status_code", None)
    text = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
    if status in (400, 404, 422) or "LLM Provider NOT provided" in text:
        return ChatError(400, f"The model `{model}` could not be used: {text}", param="model",
                         code="model_not_found" if status in (404, None) or "Provider" in text else "invalid_value")
    if status is None and isinstance(exc, TypeError | ValueError | AttributeError | KeyError):
        # Raised while litellm builds the call, before any network: OpenAI's parameters go to it as sent, so
        # this is a parameter of the request it could not use (e.g. "max_tokens": {}), not the upstream failing.
        return ChatError(400, f"The model `{model}` could not be called with these parameters: {text}",
                         code="invalid_value")
    if status == 429:
        return ChatError(429, f"The model provider is rate limiting: {text}", type="rate_limit_error",
                         code="rate_limit_exceeded", headers={"Retry-After": "1"})
    if type(exc).__name__ in ("Timeout", "APITimeoutError") or status == 408:
        return ChatError(504, f"The model did not answer in time: {text}", type="api_error", code="upstream_timeout")
    # Provider auth/config failures are the server's problem, not the caller's key.
    return ChatError(502, f"The model call failed upstream: {text}", type="api_error", code="upstream_error")


def dump(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_none=False)
    return json.loads(obj.json())


def answer_text(response: dict[str, Any]) -> str:
    choices = response.get("choices") or []
    message = (choices[0].get("message") or {}) if choices else {}
    return message_text(message.get("content"))


def stream_chunks(stream: Any, collect: list[str]) -> Iterator[dict[str, Any]]:
    """The model's stream as plain dict chunks, collecting choice 0's text for the write-back."""
    for chunk in stream:
        data = dump(chunk)
        for choice in data.get("choices") or []:
            if choice.get("index", 0) == 0:
                delta = (choice.get("delta") or {}).get("content")
                if isinstance(delta, str):
                    collect.append(delta)
        yield data


def check_writable(scope: MemoryScope, req: ChatRequest) -> None:
    """Before the model is paid for: a restricted key may only write inside its restriction."""
    if req.options.remember:
        try:
            scope.check_writable(req.options.user_id, req.options.agent_id)
        except MemsvcError as exc:
            raise ChatError.from_memsvc(exc) from None


def remember_turns(store: MemoryStore, req: ChatRequest, answer: str) -> list[uuid.UUID]:
    """Store the last user turn and the answer as episodic memories. Caller commits. (What the context used
    is reinforced by the retrieval service, as for /v1/context.)"""
    stored: list[uuid.UUID] = []
    if req.options.remember:
        o = req.options
        last_user = next(m for m in reversed(req.messages) if m.get("role") == "user")
        turns: list[tuple[Literal["user", "assistant"], str]] = [("user", message_text(last_user.get("content")))]
        if answer.strip():
            turns.append(("assistant", answer))
        limit = store.settings.max_content_chars
        now = datetime.now(UTC)
        items = [
            # A microsecond apart, so that the answer sorts after the question it answers.
            MemoryCreate(content=text[:limit], kind="episodic", user_id=o.user_id, agent_id=o.agent_id,
                         session_id=o.session_id, importance=0.5 if role == "user" else 0.3,
                         occurred_at=now + timedelta(microseconds=i),
                         metadata={"source": "chat", "role": role, "model": req.model,
                                   **({"truncated": True} if len(text) > limit else {})})
            for i, (role, text) in enumerate(turns) if text.strip()
        ]
        if items:
            stored = [m.id for m in store.add_batch(items)]
    return stored
