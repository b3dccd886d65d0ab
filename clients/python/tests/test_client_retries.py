"""Retries: the pure protocol step by step, a lost response after commit, and a server down mid-batch."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from memsvc_client import (
    AsyncMemsvcClient,
    MemsvcClient,
    MemsvcConnectionError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    ServiceUnavailableError,
)
from memsvc_client._protocol import Call, Send, Sleep, exchange, retry_after_seconds

from tests.live_server import LiveServer

POLICY = RetryPolicy(max_retries=3, backoff_base=0.1, backoff_max=1.0)
REQUEST = httpx.Request("POST", "http://memsvc.test/v1/memories")


def _json(response: httpx.Response) -> object:
    return response.json()


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": None}},
                          headers=headers, request=REQUEST)


def _start(call: Call[object]):  # type: ignore[no-untyped-def]
    gen = exchange(call, REQUEST, POLICY)
    assert isinstance(next(gen), Send)
    return gen


def _finish(gen, response: httpx.Response) -> object:  # type: ignore[no-untyped-def]
    with pytest.raises(StopIteration) as done:
        gen.send(response)
    return done.value.value


def test_429_waits_what_retry_after_says_then_succeeds() -> None:
    gen = _start(Call("POST", "/v1/memories", _json, idempotency_key="k"))
    assert gen.send(_error(429, "rate_limited", "slow down", {"Retry-After": "2"})) == Sleep(2.0)
    assert isinstance(gen.send(None), Send)
    assert _finish(gen, httpx.Response(201, json={"ok": True}, request=REQUEST)) == {"ok": True}


def test_retry_after_as_http_date() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    response = httpx.Response(503, headers={"Retry-After": format_datetime(now + timedelta(seconds=7), usegmt=True)})
    assert retry_after_seconds(response, now) == pytest.approx(7.0)
    assert retry_after_seconds(httpx.Response(503, headers={"Retry-After": "soon"})) is None


def test_5xx_backs_off_exponentially_then_raises_the_servers_message() -> None:
    gen = _start(Call("GET", "/v1/memories", _json))
    sleeps = []
    for _ in range(POLICY.max_retries):
        action = gen.send(_error(503, "unavailable", "database is restarting"))
        assert isinstance(action, Sleep)
        sleeps.append(action.seconds)
        assert isinstance(gen.send(None), Send)
    with pytest.raises(ServiceUnavailableError, match="database is restarting") as error:
        gen.send(_error(503, "unavailable", "database is restarting"))
    assert error.value.status == 503 and error.value.code == "unavailable"
    caps = [min(POLICY.backoff_max, POLICY.backoff_base * 2**i) for i in range(POLICY.max_retries)]
    assert all(cap / 2 <= s <= cap for s, cap in zip(sleeps, caps, strict=True))


def test_retry_after_beyond_the_limit_is_raised_not_slept() -> None:
    gen = _start(Call("GET", "/v1/memories", _json))
    with pytest.raises(RateLimitError) as error:
        gen.send(_error(429, "rate_limited", "quota exhausted", {"Retry-After": "3600"}))
    assert error.value.retry_after == 3600 and error.value.message == "quota exhausted"


def test_write_without_server_dedup_is_not_retried_once_it_may_have_arrived() -> None:
    unsafe = Call("POST", "/v1/admin/keys", _json, retry_safe=False)
    gen = _start(unsafe)
    with pytest.raises(ServerError):  # a 500 may have come after the key was made: do not make another
        gen.send(_error(500, "internal_error", "boom"))
    gen = _start(unsafe)
    with pytest.raises(MemsvcConnectionError):  # the request may have arrived: same
        gen.throw(httpx.ReadError("connection reset"))
    gen = _start(unsafe)  # connection refused: nothing was sent, so a retry cannot duplicate
    assert isinstance(gen.throw(httpx.ConnectError("refused")), Sleep)


@pytest.mark.parametrize("status, code, cls", [
    (400, "invalid_cursor", "InvalidCursorError"), (409, "idempotency_key_reused", "IdempotencyKeyReusedError"),
    (422, "embedding_dimension_mismatch", "EmbeddingDimensionError"), (422, "invalid_id", "InvalidInputError"),
    (503, "tokenizer_unavailable", "TokenizerUnavailableError"), (502, "llm_output_invalid", "ModelOutputError"),
    (418, "teapot", "APIError"), (409, "brand_new_code", "ConflictError"), (504, "whatever", "ServerError"),
])
def test_each_code_has_its_exception_and_unknown_codes_fall_back_by_status(status: int, code: str, cls: str) -> None:
    import memsvc_client
    from memsvc_client.errors import error_from_response

    error = error_from_response(_error(status, code, "the server's words"))
    assert type(error) is getattr(memsvc_client, cls)
    assert (error.status, error.code, error.message) == (status, code, "the server's words")


def test_errors_without_a_json_body_keep_status_and_text() -> None:
    gen = _start(Call("GET", "/v1/memories", _json, retries=False))
    with pytest.raises(ServerError, match="Bad Gateway: upstream died") as error:
        gen.send(httpx.Response(502, text="upstream died", request=REQUEST))
    assert error.value.code == "http_502"


class DropFirstResponse(httpx.HTTPTransport):
    """Lets the server do the work, then loses its answer once (as a connection reset after commit would)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []
        self.replayed: list[bool] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = super().handle_request(request)
        response.read()
        if len(self.sent) == 1:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        self.replayed.append(response.headers.get("Idempotent-Replayed") == "true")
        return response


def test_lost_response_after_commit_is_retried_without_storing_twice(live_server: LiveServer, tenant_key: str) -> None:
    transport = DropFirstResponse()
    with MemsvcClient(live_server.url, tenant_key, http_client=httpx.Client(transport=transport, timeout=60),
                      retry_policy=RetryPolicy(backoff_base=0.01)) as mem:
        result = mem.add_batch([{"content": f"lost answer {i}", "session_id": "lost"} for i in range(5)])
        assert result.count == 5
        assert len(transport.sent) == 2 and transport.replayed == [True]
        keys = {r.headers["Idempotency-Key"] for r in transport.sent}
        assert len(keys) == 1  # the retry carried the same key: the server answered from its record
        assert sorted(m.content for m in mem.iter_memories(session_id="lost")) == [f"lost answer {i}" for i in range(5)]


def test_server_down_during_a_batch_write_loses_and_doubles_nothing(app, tenant_key: str) -> None:  # type: ignore[no-untyped-def]
    server = LiveServer(app).start()
    batches, size = 12, 25
    done: list[int] = []
    failures: list[BaseException] = []
    # Enough patience to outlast the outage: up to 10 retries, 0.1-0.8 s apart.
    policy = RetryPolicy(max_retries=10, backoff_base=0.1, backoff_max=0.8)

    def writer() -> None:
        try:
            with MemsvcClient(server.url, tenant_key, retry_policy=policy) as mem:
                for b in range(batches):
                    mem.add_batch([{"content": f"outage b{b} i{i}", "session_id": "outage"} for i in range(size)])
                    done.append(b)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=writer)
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while len(done) < 3 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()  # mid-way: later batches hit a closed port (and stale pooled connections)
        down_at = len(done)
        time.sleep(1.0)
        server.start()  # same port
        thread.join(120)
        assert not failures, failures
        assert down_at < batches, "the outage came too late to matter; the test proved nothing"
        with MemsvcClient(server.url, tenant_key) as mem:
            contents = [m.content for m in mem.iter_memories(session_id="outage", page_size=200)]
        expected = sorted(f"outage b{b} i{i}" for b in range(batches) for i in range(size))
        assert sorted(contents) == expected  # every memory once: nothing lost, nothing doubled
    finally:
        server.stop()


def test_async_client_retries_through_the_same_protocol(live_server: LiveServer, tenant_key: str) -> None:
    import asyncio

    attempts: list[str] = []

    class FlakyAsync(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            attempts.append(request.headers.get("Idempotency-Key", ""))
            if len(attempts) == 1:
                raise httpx.ConnectError("refused", request=request)
            return await super().handle_async_request(request)

    async def main() -> str:
        async with AsyncMemsvcClient(live_server.url, tenant_key, retry_policy=RetryPolicy(backoff_base=0.01),
                                     http_client=httpx.AsyncClient(transport=FlakyAsync())) as mem:
            return (await mem.add("async retry")).content

    assert asyncio.run(main()) == "async retry"
    assert len(attempts) == 2 and attempts[0] == attempts[1] != ""
