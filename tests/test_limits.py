"""Limits around every route: the body size limit holds for chunked uploads (no Content-Length).

A chunked body used to be read whole (200 MB into memory) before its 413. Now the count is kept as the body
streams in and the 413 comes as soon as it passes the limit: shown on a real socket (the answer arrives while
the client is still sending) and on the ASGI app directly (how many bytes the app pulled).
"""

from __future__ import annotations

import asyncio
import json
import math
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
        assert body["error"]["code"] == "payload_too_large"
        assert body["error"]["details"]["max_bytes"] == _limit(small_app)
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


# --- per-key rate limit and concurrency cap ---------------------------------------------------------------

REDIS_URL = "redis://127.0.0.1:6379/0"


def _limited_app(settings, engine, **update):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(settings.model_copy(update=update), engine)


def _assert_429(response: Any, code: str, openai: bool) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    error = response.json()["error"]
    if openai:
        assert set(error) == {"message", "type", "param", "code"}
        assert (error["type"], error["code"]) == ("rate_limit_error", code), error
    else:
        assert set(error) == {"code", "message", "details"} and error["code"] == code, error


@pytest.mark.parametrize("redis_url", [None, REDIS_URL], ids=["in-process", "redis"])
def test_a_key_over_its_rate_gets_429_and_others_do_not(settings, engine, make_tenant, redis_url) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from tests.conftest import auth

    # Two apps on one Redis stand for two API processes: they share the counts. In-process, one app. A token
    # every 100 s, so that no refill comes between the requests, however slow the machine.
    apps = [_limited_app(settings, engine, redis_url=redis_url, rate_limit_per_second=0.01, rate_limit_burst=3)
            for _ in range(2 if redis_url else 1)]
    first, second = make_tenant(), make_tenant()
    with TestClient(apps[0]) as one, TestClient(apps[-1]) as other:
        clients = [one, other, one]
        for i in range(3):
            assert clients[i].get("/v1/memories", headers=auth(first)).status_code == 200
        refused = other.get("/v1/memories", headers=auth(first))
        _assert_429(refused, "rate_limit_exceeded", openai=False)
        details = refused.json()["error"]["details"]
        assert details["limit_per_second"] == 0.01 and 0 < details["retry_after_s"] <= 100
        assert refused.headers["Retry-After"] == str(math.ceil(details["retry_after_s"]))
        chat = one.post("/v1/chat/completions", headers=auth(first),
                        json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        _assert_429(chat, "rate_limit_exceeded", openai=True)
        assert one.get("/v1/memories", headers=auth(second)).status_code == 200  # another key: unaffected
        assert one.get("/healthz").status_code != 429  # no key, not counted


def test_the_bucket_refills_at_the_rate(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from memsvc import ratelimit

    now = [1000.0]
    monkeypatch.setattr(ratelimit.time, "monotonic", lambda: now[0])
    limiter = ratelimit.LocalLimiter(ratelimit.Limits(per_second=2, burst=3))
    assert [limiter.acquire_now("k").allowed for _ in range(4)] == [True, True, True, False]
    assert limiter.acquire_now("k").retry_after_s == pytest.approx(0.5)
    now[0] += 0.5
    assert [limiter.acquire_now("k").allowed for _ in range(2)] == [True, False]
    now[0] += 60  # never more than the burst
    assert [limiter.acquire_now("k").allowed for _ in range(4)] == [True, True, True, False]


def test_concurrent_requests_of_one_key_are_capped(settings, engine, make_tenant) -> None:  # type: ignore[no-untyped-def]
    """Two chat requests whose model is still answering hold the key's two slots: a third gets 429 (in
    OpenAI's shape), another key does not; once they finish, the key is served again."""
    import concurrent.futures
    import threading

    import httpx

    from tests.conftest import auth

    app = _limited_app(settings, engine, max_concurrent_per_key=2)
    gate, entered = threading.Event(), threading.Semaphore(0)

    def slow_model(**kwargs: Any) -> Any:
        import litellm

        entered.release()
        gate.wait(30)
        return litellm.completion(**kwargs, mock_response="ok")

    app.state.chat_backend = slow_model
    server = LiveServer(app).start()
    key, other = make_tenant(), make_tenant()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "memsvc": {"remember": False}}

    def chat(k: str) -> httpx.Response:
        return httpx.post(f"{server.url}/v1/chat/completions", headers=auth(k), json=body, timeout=60)

    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            held = [pool.submit(chat, key) for _ in range(2)]
            assert entered.acquire(timeout=30) and entered.acquire(timeout=30)
            _assert_429(chat(key), "too_many_concurrent_requests", openai=True)
            assert httpx.get(f"{server.url}/v1/memories", headers=auth(key)).status_code == 429
            third = pool.submit(chat, other)
            assert entered.acquire(timeout=30)  # the other key got in
            gate.set()
            assert [f.result().status_code for f in [*held, third]] == [200, 200, 200]
        assert httpx.get(f"{server.url}/v1/memories", headers=auth(key)).status_code == 200
    finally:
        gate.set()
        server.stop()


def test_redis_slots_are_shared_and_freed(settings) -> None:  # type: ignore[no-untyped-def]
    import uuid

    from memsvc.ratelimit import Limits, RedisLimiter

    async def run() -> None:
        limits = Limits(concurrent=2)
        a, b = RedisLimiter(limits, REDIS_URL), RedisLimiter(limits, REDIS_URL)  # two API processes
        key = uuid.uuid4().hex
        one, two = await a.acquire(key), await b.acquire(key)
        assert one.allowed and two.allowed
        refused = await a.acquire(key)
        assert not refused.allowed and refused.reason == "concurrency"
        await b.release(key, two.ticket)
        assert (await a.acquire(key)).allowed

    asyncio.run(run())


def test_redis_away_falls_back_to_counting_in_process(caplog) -> None:  # type: ignore[no-untyped-def]
    from memsvc.ratelimit import Limits, RedisLimiter
    from tests.live_server import free_port

    async def run() -> list[bool]:
        limiter = RedisLimiter(Limits(per_second=1, burst=2), f"redis://127.0.0.1:{free_port()}/0")
        return [(await limiter.acquire("k")).allowed for _ in range(3)]

    assert asyncio.run(run()) == [True, True, False]
    assert sum("Redis unreachable" in r.getMessage() for r in caplog.records) == 1
