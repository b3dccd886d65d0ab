"""Limits enforced around every route, as plain ASGI middleware (Starlette's BaseHTTPMiddleware wraps every
request and response in extra streams): per-key request rate and concurrency (memsvc.ratelimit), and the
request body size, counted while it streams in.

Their refusals come in the shape of the route family (api.errors.family_error): OpenAI's for /v1/chat/,
memsvc's elsewhere.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import family_error
from memsvc.ratelimit import RATE, Limiter, key_digest


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


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return (token.strip() or None) if scheme.lower() == "bearer" else None
    return None


class KeyLimits:
    """429 with Retry-After for a key over its request rate or its cap on concurrent requests; requests
    without a key (health, the dashboard's page) are not counted. A slot is held until the response,
    a stream included, has been sent."""

    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _bearer(scope) if scope["type"] == "http" else None
        if token is None:
            await self.app(scope, receive, send)
            return
        key = key_digest(token)
        decision = await self.limiter.acquire(key)
        if not decision.allowed:
            rate = decision.reason == RATE
            code = "rate_limit_exceeded" if rate else "too_many_concurrent_requests"
            lim = self.limiter.limits
            message = (f"this API key is over its rate limit ({lim.per_second:g} requests a second, bursts of "
                       f"{lim.burst}); retry after {decision.retry_after_header} s" if rate else
                       f"this API key already has {lim.concurrent} requests in flight; retry when one finishes")
            details = {"retry_after_s": round(decision.retry_after_s, 3), "limit_per_second": lim.per_second,
                       "burst": lim.burst} if rate else {"max_concurrent": lim.concurrent}
            response = family_error(scope["path"], 429, code, message,
                                    headers={"Retry-After": decision.retry_after_header}, details=details)
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            await self.limiter.release(key, decision.ticket)


def install_limits(app: FastAPI, max_body: int, limiter: Limiter | None = None) -> None:
    async def too_large(request: Request, exc: Exception) -> JSONResponse:
        return _too_large(request.url.path, getattr(exc, "max_body", max_body))

    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_middleware(BodyLimit, max_body=max_body)
    if limiter is not None:  # added last: the outermost, so a refused request costs no body read
        app.add_middleware(KeyLimits, limiter=limiter)
