"""How one API call is carried out, written once for both clients (sans-I/O).

`exchange(call, policy)` is a generator holding all the logic of a call (retries, backoff,
Retry-After, error mapping, parsing). It does no I/O itself: it yields `Send(request)` and
`Sleep(seconds)` and is sent back the response (or thrown the transport error). `run_sync` and
`run_async` are the only two places that differ, and each is a dozen lines of plain I/O.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import httpx

from memsvc_client.errors import (
    MemsvcConnectionError,
    MemsvcTimeoutError,
    RateLimitError,
    error_from_response,
)

T = TypeVar("T")

# Errors raised before a byte of the request reached the server: retrying can never duplicate.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Call(Generic[T]):
    """A description of one API call: what to send and how to read the answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] | None = None
    json: Any = None
    # Writes carry an Idempotency-Key (the server replays the first answer to a retry), which makes
    # them as safe to retry as reads. A write the server cannot deduplicate sets retry_safe=False:
    # it is retried only when the request provably never left (connection refused) or on 429.
    idempotency_key: str | None = None
    retry_safe: bool = True
    # Statuses that are an answer, not an error (readiness: 503 means "not ready").
    accept: frozenset[int] = frozenset()
    retries: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    def build(self, http: httpx.Client | httpx.AsyncClient, base_url: str, headers: dict[str, str]) -> httpx.Request:
        # Absolute URL and per-request headers: an httpx client handed in by the caller is not changed.
        headers = {**headers, **self.headers}
        if self.idempotency_key:
            headers["Idempotency-Key"] = self.idempotency_key
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return http.build_request(self.method, base_url + self.path, params=params, json=self.json, headers=headers)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; Retry-After wins when the server sends one."""

    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    # A Retry-After longer than this is not waited for: the error is raised with retry_after set.
    max_retry_after: float = 60.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})

    def backoff(self, attempt: int) -> float:
        return random.uniform(0.5, 1.0) * min(self.backoff_max, self.backoff_base * 2**attempt)


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Sleep:
    seconds: float


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


Exchange = Generator[Send | Sleep, Any, T]


def exchange(call: Call[T], request: httpx.Request, policy: RetryPolicy) -> Exchange[T]:
    attempt = 0
    while True:
        can_retry = call.retries and attempt < policy.max_retries
        try:
            response: httpx.Response = yield Send(request)
        except httpx.TransportError as exc:
            if can_retry and (call.retry_safe or isinstance(exc, _NOT_SENT)):
                yield Sleep(policy.backoff(attempt))
                attempt += 1
                continue
            cls = MemsvcTimeoutError if isinstance(exc, httpx.TimeoutException) else MemsvcConnectionError
            tries = f" after {attempt + 1} attempts" if attempt else ""
            raise cls(f"{call.method} {request.url} failed{tries}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status < 400 or status in call.accept:
            return call.parse(response)
        wait = retry_after_seconds(response)
        retryable = status in policy.retry_statuses and (call.retry_safe or status == 429)
        if can_retry and retryable and (wait is None or wait <= policy.max_retry_after):
            yield Sleep(wait if wait is not None else policy.backoff(attempt))
            attempt += 1
            continue
        error = error_from_response(response, retry_after=wait)
        if isinstance(error, RateLimitError) and error.retry_after is None:
            error.retry_after = wait
        raise error


def _drive(gen: Exchange[T], step: Callable[[Send | Sleep], Any]) -> T:
    """The sync driver: feed the exchange what `step` (the I/O) returns or raises until it finishes."""
    outcome: Any = None
    failure: BaseException | None = None
    while True:
        try:
            action = gen.throw(failure) if failure is not None else gen.send(outcome)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        outcome, failure = None, None
        try:
            outcome = step(action)
        except httpx.TransportError as exc:
            failure = exc


@dataclass(frozen=True)
class Target:
    """Where calls go: the base URL, the headers every call carries, and the retry policy."""

    base_url: str
    headers: dict[str, str]
    policy: RetryPolicy


def run_sync(call: Call[T], http: httpx.Client, target: Target) -> T:
    def step(action: Send | Sleep) -> Any:
        if isinstance(action, Sleep):
            time.sleep(action.seconds)
            return None
        return http.send(action.request)

    return _drive(exchange(call, call.build(http, target.base_url, target.headers), target.policy), step)


async def run_async(call: Call[T], http: httpx.AsyncClient, target: Target) -> T:
    gen = exchange(call, call.build(http, target.base_url, target.headers), target.policy)
    outcome: Any = None
    failure: BaseException | None = None
    while True:
        try:
            action = gen.throw(failure) if failure is not None else gen.send(outcome)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        outcome, failure = None, None
        try:
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
            else:
                outcome = await http.send(action.request)
        except httpx.TransportError as exc:
            failure = exc
