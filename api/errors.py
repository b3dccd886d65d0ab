"""Every error leaves the API in its route family's shape with the right status: {"error": {"code", "message",
"details"}}, or OpenAI's {"error": {"message", "type", "param", "code"}} under /v1/chat/ (OpenAI SDKs and tools
report those as they would OpenAI's own). `family_error` is the one place that picks the shape."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from memsvc.chat import ChatError
from memsvc.errors import MemsvcError
from memsvc.validation import unreadable_body

log = logging.getLogger("memsvc.api")

# Seconds a client is asked to wait before retrying while the database is away (memsvc serve restarts
# an embedded one within a few seconds; a pool reconnects on the next request after that).
RETRY_AFTER_S = 2
# Route families that answer errors in another shape than {"error": {"code", "message", "details"}}.
OPENAI_SHAPED = ("/v1/chat/",)


def error_response(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status)


def family_error(path: str, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 details: Any = None) -> JSONResponse:
    """An error response in the shape of the route family `path` belongs to."""
    if path.startswith(OPENAI_SHAPED):
        error = MemsvcError(message, details=details, code=code)
        error.status = status
        return JSONResponse(ChatError.from_memsvc(error).body(), status_code=status, headers=headers)
    response = error_response(status, code, message, details)
    response.headers.update(headers or {})
    return response


def _describe(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    details = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(p for p in first["loc"] if p not in ("body",)) or "request"
    return f"{where}: {first['msg']}", details


def database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached or is restarting (connection refused, dropped, pool wait exhausted,
    a server shutting down or in recovery): worth a retry, unlike a bad statement or a constraint."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
    return False


class _Throttled:
    """One log line per interval for a storm of the same condition (an outage answers thousands of requests)."""

    def __init__(self, interval_s: float = 5.0) -> None:
        self.interval_s, self.last, self.count = interval_s, 0.0, 0

    def note(self, message: str) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.last >= self.interval_s:
            log.warning("%s (%d request(s) answered 503 since the last such line)", message, self.count)
            self.last, self.count = now, 0


_db_outage_log = _Throttled()


def unavailable_response(request: Request, message: str, code: str = "database_unavailable") -> JSONResponse:
    """503 with Retry-After, in the shape of the route family the request went to."""
    return family_error(request.url.path, 503, code, message, headers={"Retry-After": str(RETRY_AFTER_S)})


def _allowed_methods(request: Request, named: str) -> str:
    """A 405's Allow: every method of the path. Starlette names only the first matching route's (`named`), and
    GET and POST /v1/memories are two routes: the methods come from the OpenAPI document's paths as well."""
    methods = {m.strip().upper() for m in named.split(",") if m.strip()}
    for template, operations in request.app.openapi().get("paths", {}).items():
        # A path parameter documented as a UUID matches only one: /v1/memories/batch is not /v1/memories/{id}.
        uuids = {p["name"] for op in operations.values() for p in op.get("parameters", [])
                 if p.get("in") == "path" and p.get("schema", {}).get("format") == "uuid"}
        typed = template
        for name in uuids:
            typed = typed.replace(f"{{{name}}}", f"{{{name}:uuid}}")
        if compile_path(typed)[0].match(request.url.path):
            methods |= {m.upper() for m in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    # A handler for these exact classes runs in Starlette's ExceptionMiddleware, which answers and keeps the
    # connection; the catch-all `Exception` handler below runs outside it, and the server then closes the
    # keep-alive connection (the client's next request on it is reset).
    @app.exception_handler(sa_exc.DBAPIError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            return await _unexpected(request, exc)
        orig = getattr(exc, "orig", None) or exc  # never the statement or its parameters: they hold memory content
        first_line = (str(orig).strip().splitlines() or [""])[0][:200]
        _db_outage_log.note(f"database unavailable ({type(orig).__name__}: {first_line})")
        return unavailable_response(request, "the database is unavailable right now; retry shortly")

    @app.exception_handler(MemsvcError)
    async def _domain(request: Request, exc: MemsvcError) -> JSONResponse:
        return family_error(request.url.path, exc.status, exc.code, exc.message, details=exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return family_error(request.url.path, 400, "invalid_json", "the request body is not valid JSON",
                                details=_describe(errors)[1])
        message, details = _describe(errors)
        loc = tuple(errors[0].get("loc", ())) if errors else ()
        if loc[:2] == ("body", "items") and len(loc) > 2 and isinstance(loc[2], int):
            # A batch names the item, as the store's own checks do (all or nothing: nothing was stored).
            where = ".".join(str(p) for p in loc[3:]) or "item"
            return family_error(request.url.path, 422, "invalid_input",
                                f"item {loc[2]}: {where}: {errors[0].get('msg', '')}; nothing was stored",
                                details={"index": loc[2], "errors": details})
        return family_error(request.url.path, 422, "invalid_input", message, details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers a body its JSON reader gave up on (nested past the recursion limit, not UTF-8) with a
        # bare 400 "There was an error parsing the body", the reason in __cause__: say what to fix instead.
        unreadable = unreadable_body(exc.__cause__) if exc.status_code == 400 else None
        if unreadable is not None:
            return await _domain(request, unreadable)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request, headers.get("Allow", ""))
        return family_error(request.url.path, exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return family_error(request.url.path, 500, "internal_error", "internal error; the server log has the details")
