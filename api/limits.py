"""Limits enforced around every route, as plain ASGI middleware (Starlette's BaseHTTPMiddleware wraps every
request and response in extra streams): the request body size, counted while it streams in.

Their refusals come in the shape of the route family: OpenAI's for /v1/chat/, memsvc's elsewhere.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_response

OPENAI_FAMILY = ("/v1/chat/",)
_OPENAI_TYPES = {413: "invalid_request_error", 429: "rate_limit_error"}


def family_error(path: str, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 details: Any = None) -> JSONResponse:
    """An error response in the shape of the route family `path` belongs to."""
    if path.startswith(OPENAI_FAMILY):
        body = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "invalid_request_error"),
                          "param": None, "code": code}}
        return JSONResponse(body, status_code=status, headers=headers)
    response = error_response(status, code, message, details)
    response.headers.update(headers or {})
    return response


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit. An HTTPException, so that FastAPI's body parsing
    lets it through (it turns any other exception into a 400) and its handler answers 413."""

    def __init__(self, max_body: int) -> None:
        super().__init__(413, f"request body over {max_body} bytes")
        self.max_body = max_body


def _too_large(path: str, max_body: int) -> JSONResponse:
    return family_error(path, 413, "payload_too_large", f"request body over {max_body} bytes",
                        details={"max_bytes": max_body})


class BodyLimit:
    """413 for a body over `max_body` bytes: at once when Content-Length announces it, and otherwise (chunked
    uploads) as soon as the bytes received pass it, so no more than the limit is ever read into memory."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            await _too_large(scope["path"], self.max_body)(scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            # Read outside FastAPI's handlers (another middleware, a plain ASGI route): answer here if we can.
            if started:
                raise
            await _too_large(scope["path"], self.max_body)(scope, receive, send)


def install_limits(app: FastAPI, max_body: int) -> None:
    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        return _too_large(request.url.path, getattr(exc, "max_body", max_body))

    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_middleware(BodyLimit, max_body=max_body)
