"""Pydantic types shared by the core, the API and (mirrored) the SDK."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, Strict, model_validator
from pydantic_core import PydanticCustomError

from memsvc.validation import text_problem

Kind = Literal["episodic", "semantic", "procedural", "profile"]
Tier = Literal["verbatim", "summary", "gist", "archived"]
Scope = Literal["read", "write", "admin", "root"]


def _storable(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise PydanticCustomError("text_not_storable", problem)
    return value


def _iso_time(value: Any) -> Any:
    # pydantic reads a number as seconds since 1970; the document says an ISO 8601 string (a number is a mistake)
    if isinstance(value, int | float):
        raise PydanticCustomError("datetime_type", "must be an ISO 8601 date-time string, e.g. 2024-05-01T12:00:00Z")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty or whitespace")
    return value


# What the OpenAPI document says of these strings, as JSON Schema patterns (ECMA and Python regex alike), so a
# client (or a fuzzer) knows in advance what the validators below refuse. _SPACE: what str.strip() removes.
NO_NUL = r"^[^\u0000]*$"
_SPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NOT_BLANK = rf"^[^\u0000]*[^\u0000{_SPACE}][^\u0000]*$"

# A string of a request that is stored or compared in Postgres: a NUL or an unpaired surrogate is a 422 naming
# the field, for every model that uses it (rather than a 500 from the database).
Text = Annotated[str, AfterValidator(_storable), Field(json_schema_extra={"pattern": NO_NUL})]
# ...and one that must say something: user/agent/session ids (free-form, chosen by the caller), tags, content.
Word = Annotated[str, AfterValidator(_storable), AfterValidator(_not_blank),
                 Field(json_schema_extra={"pattern": NOT_BLANK})]
ScopeId = Annotated[Word, Field(min_length=1, max_length=200)]
Tag = Annotated[Word, Field(max_length=100)]
# Request times and ids arrive as JSON strings; the request models are otherwise strict (no "5" for 5, no 0 for
# false: what the document says is what is accepted).
Timestamp = Annotated[datetime, Strict(False), BeforeValidator(_iso_time)]
RequestId = Annotated[uuid.UUID, Strict(False)]

# Any JSON object; the store refuses (memsvc.validation.check_json) NUL in keys or strings, numbers that are not
# finite (JSON has none) and nesting deeper than 64 levels. The document states it with a recursive schema,
# MetadataValue (api.openapi registers it among the components).
_VALUE_REF = {"$ref": "#/components/schemas/MetadataValue"}
METADATA_VALUE: dict[str, Any] = {"anyOf": [
    {"type": "string", "pattern": NO_NUL}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
    {"type": "array", "items": _VALUE_REF},
    {"type": "object", "propertyNames": {"pattern": NO_NUL}, "additionalProperties": _VALUE_REF},
]}
_METADATA: dict[str, Any] = {"propertyNames": {"pattern": NO_NUL}, "additionalProperties": _VALUE_REF}


def _takes_int(annotation: Any) -> bool:
    return annotation is int or int in get_args(annotation)


def json_numbers(model: type[BaseModel], data: Any) -> Any:
    """JSON has one kind of number: 2.0 is the integer 2 (JSON Schema says so too), which strict validation
    would refuse for an int field. Such values of `model`'s int fields become ints; anything else is left."""
    if not isinstance(data, Mapping):
        return data
    fields = model.model_fields
    return {k: int(v) if isinstance(v, float) and v.is_integer() and k in fields and _takes_int(fields[k].annotation)
            else v for k, v in data.items()}


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _json_numbers(cls, data: Any) -> Any:
        return json_numbers(cls, data)


class MemoryCreate(RequestModel):
    content: Word = Field(description="The text to remember. Non-empty, at most MEMSVC_MAX_CONTENT_CHARS.")
    kind: Kind = "episodic"
    user_id: ScopeId | None = None
    agent_id: ScopeId | None = None
    session_id: ScopeId | None = None
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    occurred_at: Timestamp | None = Field(default=None, description="When it happened; defaults to now.")
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, json_schema_extra=_METADATA)
    tags: list[Tag] = Field(default_factory=list, max_length=50)
    embedding: list[float] | None = Field(
        default=None, description="Optional precomputed embedding; must match the server's dimension."
    )


def _no_null_defaults(schema: dict[str, Any]) -> None:
    # A field of a partial update that may be left out but not sent as null has no default to document.
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None and "anyOf" not in prop:
            del prop["default"]


class MemoryUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra=_no_null_defaults)

    # A field left out stays as it is. Only valid_from, valid_to and embedding may be null (cleared, or: embed
    # the new content here); the others have no "nothing", so their types say they cannot be null.
    content: Word = Field(default=None)  # type: ignore[assignment]
    kind: Kind = Field(default=None)  # type: ignore[assignment]
    importance: float = Field(default=None, ge=0.0, le=1.0)  # type: ignore[assignment]
    occurred_at: Timestamp = Field(default=None)  # type: ignore[assignment]
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    metadata: dict[str, Any] = Field(default=None, json_schema_extra=_METADATA)  # type: ignore[assignment]
    tags: list[Tag] = Field(default=None, max_length=50)  # type: ignore[assignment]
    embedding: list[float] | None = None


class MemoryTokenStatus(BaseModel):
    """One trained memory-token set of a memory (memsvc.memtokens)."""

    model_id: str = Field(description="name@weights-hash of the local model the vectors belong to.")
    verified: bool = Field(description="A greedy decode of the stored float16 vectors reproduced the content.")
    current: bool = Field(description="Trained on the memory's present content (false: it will not be used).")
    vectors: int
    content_tokens: int
    train_steps: int
    train_seconds: float
    trained_at: datetime
    note: str | None = Field(default=None, description="Why the set is not verified.")


class MemoryOut(BaseModel):
    id: uuid.UUID
    kind: Kind
    content: str
    summary: str | None = None
    # Who made the summary: "extractive" (offline, whole sentences of the text), the LLM model that was asked,
    # or "none" (a demoted memory under MEMSVC_SUMMARIZER=none: the text itself); "builtin": an earlier
    # release's summarizer (recomputed by the maintenance pass). No summary with "extractive": the text is its own.
    summary_by: str | None = None
    gist: str | None = None
    tier: Tier
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    importance: float
    strength: float
    access_count: int
    retention: float | None = Field(default=None, description="Forgetting-curve retention now, in [0, 1].")
    last_accessed_at: datetime
    occurred_at: datetime
    recorded_at: datetime
    updated_at: datetime
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    superseded_by: uuid.UUID | None = None
    content_hash: str
    metadata: dict[str, Any]
    tags: list[str]
    memory_tokens: list[MemoryTokenStatus] | None = Field(default=None, description=(
        "Trained memory-token sets (GET /v1/memories/{id} only; listings leave it out)."))


class MemoryPage(BaseModel):
    items: list[MemoryOut]
    next_cursor: str | None = Field(default=None, description="Pass as ?cursor= to get the next page.")


class BatchCreate(RequestModel):
    items: list[MemoryCreate] = Field(min_length=1, description="1 to MEMSVC_MAX_BATCH_ITEMS memories.")


class BatchResult(BaseModel):
    items: list[MemoryOut]
    count: int


class ScopeSelector(RequestModel):
    user_id: ScopeId | None = None
    agent_id: ScopeId | None = None
    session_id: ScopeId | None = None


class EraseRequest(ScopeSelector):
    """At least one of user_id, agent_id, session_id: POST /v1/erase never means the whole tenant."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"required": [name], "properties": {name: {"type": "string"}}} for name in ("user_id", "agent_id", "session_id")
    ]})


class DeletionReport(BaseModel):
    deleted: list[uuid.UUID] = Field(description="Memories removed at the caller's request.")
    derived_deleted: list[uuid.UUID] = Field(
        default_factory=list, description="Derived memories removed because all their sources went."
    )
    derived_orphaned: list[uuid.UUID] = Field(
        default_factory=list, description="Derived memories that lost a source but keep others (re-derive)."
    )
    links_removed: int = 0
    jobs_removed: int = 0
    memory_tokens_removed: int = Field(default=0, description="Trained memory-token sets of the removed memories.")
    idempotency_records_removed: int = Field(default=0, description=(
        "Stored Idempotency-Key responses that named a removed memory or job (a retry of those writes is new)."))


class TenantCreate(RequestModel):
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class TenantOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime


class KeyCreate(RequestModel):
    # A key restricted to some users or agents (a list, even an empty one) acts for them only: no admin or root.
    model_config = ConfigDict(json_schema_extra={"anyOf": [
        {"properties": {"user_ids": {"type": "null"}, "agent_ids": {"type": "null"}}},
        {"properties": {"scopes": {"items": {"enum": ["read", "write"]}}}},
    ]})
    name: Text = Field(default="", max_length=200)
    scopes: list[Scope] = Field(min_length=1)
    user_ids: list[ScopeId] | None = Field(default=None, description=(
        "Restrict the key to these user_ids (read and/or write scopes only)."))
    agent_ids: list[ScopeId] | None = Field(default=None, description=(
        "Restrict the key to these agent_ids (read and/or write scopes only)."))
    tenant_id: RequestId | None = Field(default=None, description="Another tenant (root keys only).")


class KeyOut(BaseModel):
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    user_ids: list[str] | None
    agent_ids: list[str] | None
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The secret. Shown once; only its hash is stored.")
