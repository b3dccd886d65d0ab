"""The request middleware of observability: a request id (X-Request-ID, taken from the caller when it is sane,
else made), the request's route template for log records made while serving it, and its metrics (count by
status, latency) once it is answered. The metrics and log formats themselves live in memsvc."""

from __future__ import annotations

import re
import time
import uuid

from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memsvc import metrics
from memsvc.logformat import RequestInfo, current_request

_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def route_template(scope: Scope) -> str | None:
    """The matched route's path template ("/v1/memories/{memory_id}"), not the path: bounded label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return None
    if isinstance(route, Mount):
        return f"{path}/*"  # a mount (static files): its own paths are not templates
    return str(path)


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SANE_ID.fullmatch(candidate):
                return candidate
            break
    return uuid.uuid4().hex


class Observe:
    """Outermost middleware, so what the limits refuse (413, 429) is counted and carries a request id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        status = 500  # what an exception that escapes every handler turns into
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        token = current_request.set(RequestInfo(request_id, lambda: route_template(scope)))
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request.reset(token)
            metrics.observe_request(scope["method"], route_template(scope) or metrics.UNMATCHED_ROUTE, status,
                                    time.perf_counter() - started)
