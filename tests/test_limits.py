"""Limits around every route: the body size limit holds for chunked uploads (no Content-Length).

A chunked body used to be read whole (200 MB into memory) before its 413. Now the count is kept as the body
streams in and the 413 comes as soon as it passes the limit: shown on a real socket (the answer arrives while
the client is still sending) and on the ASGI app directly (how many bytes the app pulled).
"""

from __future__ import annotations

import asyncio
import json
import select
import socket
from typing import Any

import pytest

from tests.conftest import ROOT_KEY
from tests.live_server import LiveServer

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def small_app(settings, engine):  # type: ignore[no-untyped-def]
    """The app with a body limit of ~1 MB (the limit derives from the batch and content limits)."""
    from api.app import create_app

    app = create_app(settings.model_copy(update={"max_batch_items": 1, "max_content_chars": 1_000}), engine)
    return app


def _limit(app: Any) -> int:
    s = app.state.settings
    return int(s.max_batch_items * s.max_content_chars * 4 + 1_000_000)


def _chunked_upload(port: int, path: str, total: int) -> tuple[int, bytes]:
    """Send `total` bytes as a chunked body; stop as soon as a response arrives. Returns (bytes sent, response)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ROOT_KEY}\r\n"
                 "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
    sent = 0
    try:
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered before the body was complete
            sock.sendall(chunk)
            sent += CHUNK
        else:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed while we were still sending
    response = b""
    sock.settimeout(30)
    try:
        while b"\r\n\r\n" not in response or not response.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    return sent, response


@pytest.mark.parametrize("path", ["/v1/memories", "/v1/chat/completions"])
def test_chunked_upload_is_cut_off_at_the_limit(small_app, path: str) -> None:  # type: ignore[no-untyped-def]
    server = LiveServer(small_app).start()
    try:
        total = 200 * 1024 * 1024
        sent, response = _chunked_upload(server.port, path, total)
    finally:
        server.stop()
    assert response.startswith(b"HTTP/1.1 413"), response[:300]
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    if path.startswith("/v1/chat/"):
        assert body["error"]["code"] == "payload_too_large" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["code"] == "payload_too_large" and body["error"]["details"]["max_bytes"] == _limit(small_app)
    # The answer came while the client was still sending: far less than the 200 MB went out (the rest of what
    # went out beyond the limit sat in the socket buffers, unread).
    assert sent < 32 * 1024 * 1024, sent


def test_the_app_pulls_no_more_than_the_limit(small_app) -> None:  # type: ignore[no-untyped-def]
    limit = _limit(small_app)
    pulled = 0

    async def run(path: str) -> list[dict[str, Any]]:
        nonlocal pulled
        pulled = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal pulled
            if pulled >= 50 * limit:  # a finite stream, so the old behaviour ends too (having read it all)
                return {"type": "http.request", "body": b"", "more_body": False}
            pulled += CHUNK
            return {"type": "http.request", "body": b"x" * CHUNK, "more_body": True}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
                 "headers": [(b"authorization", f"Bearer {ROOT_KEY}".encode()),
                             (b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        await small_app(scope, receive, send)
        return sent

    for path in ("/v1/memories", "/v1/memories/batch", "/v1/search", "/v1/chat/completions", "/no/such/route"):
        sent = asyncio.run(run(path))
        statuses = [m["status"] for m in sent if m["type"] == "http.response.start"]
        if path == "/no/such/route":  # nothing reads the body of an unknown route: it is not pulled at all
            assert statuses == [404] and pulled == 0
            continue
        assert statuses == [413], (path, statuses)
        assert pulled <= limit + CHUNK, (path, pulled, limit)
