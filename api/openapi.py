"""What the OpenAPI document says every route can answer, and which need a key.

The errors every route shares come from app-wide parts (authentication, check_params, the body and key limits,
the database-outage handler), so they are added here, for every operation at once, in the shape of its route
family (api.errors.family_error): memsvc's {"error": {"code", "message", "details"}}, or OpenAI's under
/v1/chat/. What only some routes answer (404, 409) the route declares itself with `errors(...)`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from api.errors import OPENAI_SHAPED
from memsvc.chat_params import OpenAIParams
from memsvc.schemas import METADATA_VALUE, NO_NUL
from memsvc.validation import EMBEDDING_MAX

SECURITY_SCHEME = "apiKey"
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})  # probes answer without a key (/metrics, docs: not in the document)
NO_DATABASE = frozenset({"/healthz"})  # the one route that never touches the database


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable, machine-readable (e.g. invalid_input, not_found, rate_limit_exceeded).")
    message: str = Field(description="What went wrong and what to change.")
    details: Any = Field(default=None, description="Structured context: the field, the limit, validation errors.")


class ErrorBody(BaseModel):
    """Every error of memsvc's own routes."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str
    type: str = Field(description="invalid_request_error, authentication_error, permission_error, not_found_error, "
                                  "rate_limit_error or api_error, as OpenAI's.")
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    """Every error under /v1/chat/, in OpenAI's shape."""

    model_config = ConfigDict(extra="forbid")
    error: OpenAIErrorDetail


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}

DESCRIPTIONS: dict[int, str] = {
    400: "The body is not JSON (malformed, not UTF-8, nested too deeply), or a cursor is not one this server gave.",
    401: "No API key, or not a valid one: send `Authorization: Bearer msk_...`.",
    403: "The key lacks the scope this needs, or is restricted to other users or agents.",
    404: "Nothing with this id in the key's scope.",
    409: "Conflicts with the present state (an Idempotency-Key used for another request, or still in progress).",
    413: "The body, or a text in it, is over its size limit; `details` says which limit.",
    422: "A parameter or a field of the body is invalid; the message names it and says what to change.",
    429: "The key is over its request rate or its requests in flight; retry after Retry-After.",
    503: "The database is unavailable for a moment; retry after Retry-After.",
}


def error_response(status: int, description: str | None = None, *, openai: bool = False) -> dict[str, Any]:
    """One documented error response: its description, the family's body and, for 429/503, Retry-After."""
    model = OpenAIErrorBody if openai else ErrorBody
    response: dict[str, Any] = {
        "description": description or DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }
    if status in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def errors(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """For a route's `responses=`: errors(404), errors(409, conflict="a tenant with this name exists").
    A keyword names the status by its phrase: not_found=404, conflict=409."""
    named = {"not_found": 404, "conflict": 409}
    out: dict[int | str, dict[str, Any]] = {s: error_response(s) for s in statuses}
    for name, text in descriptions.items():
        out[named[name]] = error_response(named[name], text)
    return out


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """openapi_extra for a route that reads its body itself (a policy checked field by field): the model's
    schema as the request body's, so the document says which fields there are."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    if schema.pop("$defs", None):
        raise ValueError(f"{model.__name__}: nested models would need their own components")
    return {"requestBody": {"content": {"application/json": {"schema": schema}}}}


def _components(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (ErrorBody, OpenAIErrorBody):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    # What the chat route's OpenAI parameters and memories' metadata refer to.
    schemas.update(OpenAIParams.model_json_schema(ref_template="#/components/schemas/{model}").get("$defs", {}))
    schemas["MetadataValue"] = METADATA_VALUE
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422 body, which this server never sends
        schemas.pop(unused, None)
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "msk_...",
        "description": "An API key (`memsvc keys create`, or POST /v1/admin/keys): `Authorization: Bearer msk_...`.",
    }


def _strings(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The string schemas of a property (itself, or its anyOf variants: `str | None`)."""
    return [v for v in (prop.get("anyOf") or [prop]) if v.get("type") == "string"]


def _object_schemas(schema: dict[str, Any], components: dict[str, Any], seen: set[int]) -> list[dict[str, Any]]:
    """Every object schema reachable from a request body (through $ref, anyOf, items, properties)."""
    if "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    if id(schema) in seen:
        return []
    seen.add(id(schema))
    found = [schema] if "properties" in schema else []
    children = [*schema.get("anyOf", []), *schema.get("allOf", []), *schema.get("properties", {}).values()]
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    for child in children:
        found += _object_schemas(child, components, seen)
    return found


def _glob_regex(glob: str) -> str:
    """An fnmatch pattern (the chat allow-list's) as a regular expression for the document."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob)


def _deployment(schema: dict[str, Any], app: FastAPI) -> None:
    """What this deployment accepts where a static type cannot know it: its size limits and embedding dimension,
    its recipes, and the local models it serves (for memory tokens). The document then says exactly what the
    server takes."""
    settings = app.state.settings
    retrieval = app.state.retrieval
    recipes = sorted(r.name for r in retrieval.recipes)
    local = retrieval.local_models
    local_names = sorted({*local.public_names, *local.specs})
    components = schema["components"]["schemas"]
    for path, item in schema.get("paths", {}).items():
        memory_tokens = "tokens" in path or path.endswith("/memory-tokens")
        for operation in item.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            for obj in _object_schemas(body or {}, components, set()):
                props = obj["properties"]
                for variant in _strings(props.get("recipe", {})):
                    variant["enum"] = recipes
                if memory_tokens:
                    for variant in _strings(props.get("model", {})):
                        variant["enum"] = local_names
    for name in ("MemoryCreate", "MemoryUpdate"):
        props = components.get(name, {}).get("properties", {})
        for variant in _strings(props.get("content", {})):
            variant["maxLength"] = settings.max_content_chars
        for variant in props.get("embedding", {}).get("anyOf", []):
            if variant.get("type") == "array":
                variant["minItems"] = variant["maxItems"] = settings.embedding_dim
                variant["items"] = {"type": "number", "minimum": -EMBEDDING_MAX, "maximum": EMBEDDING_MAX}
        if name == "MemoryCreate" and "embedding" in props:  # a new memory's [] counts as none (embed the text)
            props["embedding"]["anyOf"].append({"type": "array", "maxItems": 0})
    chat = schema.get("paths", {}).get("/v1/chat/completions", {}).get("post")
    if chat is not None:  # the models and bases the operator allows (memsvc.chat_policy); local/ models aside
        props = chat["requestBody"]["content"]["application/json"]["schema"]["properties"]
        props["model"]["pattern"] = "^(?:" + "|".join(_glob_regex(g) for g in settings.chat_models) + ")$"
        if settings.chat_api_bases:
            props["api_base"]["enum"] = list(settings.chat_api_bases)
        else:
            props["api_base"] = {"not": {}, "description": "No api_base is allowed here (MEMSVC_CHAT_API_BASES)."}
    batch = components.get("BatchCreate", {}).get("properties", {}).get("items")
    if batch is not None:
        batch["maxItems"] = settings.max_batch_items


def document(schema: dict[str, Any], app: FastAPI | None = None) -> dict[str, Any]:
    """Add the shared errors and the security requirement to every operation of FastAPI's document, and (given
    the app) what its deployment accepts."""
    _components(schema)
    if app is not None:
        _deployment(schema, app)
    for path, item in schema.get("paths", {}).items():
        openai = path.startswith(OPENAI_SHAPED)
        for operation in item.values():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            declared = {str(s) for s in responses}
            fastapi_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if fastapi_422.get("$ref", "").endswith("/HTTPValidationError"):  # ours, if any, below
                del responses["422"]
                declared.discard("422")
            for parameter in operation.get("parameters", []):  # check_params refuses NUL in every one
                for variant in _strings(parameter.get("schema", {})):
                    if "enum" not in variant:
                        variant.setdefault("pattern", NO_NUL)
            statuses: set[int] = set()
            if path not in PUBLIC_PATHS:
                operation["security"] = [{SECURITY_SCHEME: []}]
                statuses |= {401, 403}
            if "requestBody" in operation:
                statuses |= {400, 413, 422}
            if operation.get("parameters"):
                statuses.add(422)  # check_params, and each parameter's own type and bounds
            statuses.add(429)  # any request with a bearer token counts against that key's limits
            if path not in NO_DATABASE:
                statuses.add(503)
            for status in sorted(statuses):
                if str(status) not in declared:
                    responses[str(status)] = error_response(status, openai=openai)
    return schema


def install_openapi(app: FastAPI) -> None:
    """app.openapi() returns FastAPI's document completed by `document` (built once, on first use)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(build(), app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
