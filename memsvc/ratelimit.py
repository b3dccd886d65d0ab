"""Per-key request limits: a token bucket (sustained rate + burst) and a cap on concurrent requests.

Keys are told apart by a digest of the bearer token (computed before, and whatever, authentication says;
never the token itself). With Redis configured the counts live there, shared by every API process (one Lua
script per request: refill, take a token, claim a concurrency slot, against Redis's clock); without it, or
while Redis cannot be reached, they live in this process (the embedded single-process mode).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memsvc.config import Settings

log = logging.getLogger(__name__)
RATE, CONCURRENCY = "rate", "concurrency"


@dataclass(frozen=True)
class Limits:
    per_second: float = 0.0  # sustained requests a second per key; 0 = no rate limit
    burst: int = 1  # requests a key may make at once above the rate (the bucket's size)
    concurrent: int = 0  # requests of one key in flight at once; 0 = no cap
    stale_s: int = 600  # a slot not released by then (a process that died mid-request) is freed

    @property
    def active(self) -> bool:
        return self.per_second > 0 or self.concurrent > 0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""  # RATE or CONCURRENCY when refused
    retry_after_s: float = 0.0
    ticket: str = ""  # hand back to release()

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


def limits_from(settings: Settings) -> Limits:
    return Limits(settings.rate_limit_per_second, max(1, settings.rate_limit_burst), settings.max_concurrent_per_key)


def key_digest(token: str) -> str:
    """What a key's counts are filed under: not the token, nor the hash the database stores for it."""
    return hashlib.sha256(b"memsvc-ratelimit\0" + token.encode()).hexdigest()[:32]


class LocalLimiter:
    """The counts in this process. At most `max_keys` buckets are kept (least recently used dropped, which
    only ever forgets in a key's favour), so random tokens cannot grow it without bound."""

    def __init__(self, limits: Limits, max_keys: int = 100_000) -> None:
        self.limits = limits
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._active: dict[str, int] = {}

    def acquire_now(self, key: str) -> Decision:
        lim, now = self.limits, time.monotonic()
        with self._lock:
            if lim.per_second > 0:
                tokens, at = self._buckets.pop(key, (float(lim.burst), now))
                tokens = min(float(lim.burst), tokens + (now - at) * lim.per_second)
                if tokens < 1:
                    self._remember(key, tokens, now)
                    return Decision(False, RATE, (1 - tokens) / lim.per_second)
                self._remember(key, tokens - 1, now)
            if lim.concurrent > 0:
                if self._active.get(key, 0) >= lim.concurrent:
                    return Decision(False, CONCURRENCY, 1.0)
                self._active[key] = self._active.get(key, 0) + 1
        return Decision(True, ticket="local")

    def release_now(self, key: str) -> None:
        if self.limits.concurrent > 0:
            with self._lock:
                left = self._active.get(key, 0) - 1
                if left > 0:
                    self._active[key] = left
                else:
                    self._active.pop(key, None)

    def _remember(self, key: str, tokens: float, at: float) -> None:
        self._buckets[key] = (tokens, at)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    async def acquire(self, key: str) -> Decision:
        return self.acquire_now(key)

    async def release(self, key: str, ticket: str) -> None:
        self.release_now(key)


# KEYS: bucket, slots. ARGV: per_second, burst, concurrent, ticket, stale_s. Returns {allowed 0/1/2, wait}:
# 0 = over the rate, 2 = over the concurrency cap. Numbers go back as strings (Redis truncates Lua numbers).
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if rate > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens = tonumber(b[1]) or burst
  local at = tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
  if tokens < 1 then
    return {0, tostring((1 - tokens) / rate)}
  end
  redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'at', now)
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
end
if cap > 0 then
  local stale = tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - stale)
  if redis.call('ZCARD', KEYS[2]) >= cap then
    return {2, '1'}
  end
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('EXPIRE', KEYS[2], stale)
end
return {1, '0'}
"""


class RedisLimiter:
    """The counts in Redis, shared by every API process; this process's own counts while Redis is away
    (checked again every `retry_s`), so a broker outage neither stalls nor refuses requests."""

    def __init__(self, limits: Limits, url: str, *, prefix: str = "memsvc:limit:", retry_s: float = 5.0) -> None:
        self.limits = limits
        self.url = url
        self.prefix = prefix
        self.retry_s = retry_s
        self.fallback = LocalLimiter(limits)
        self._down_until = 0.0
        # redis.asyncio clients belong to the event loop they were made on (a test client and a server each
        # run their own).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _script(self) -> Any:
        loop = asyncio.get_running_loop()
        script = self._clients.get(loop)
        if script is None:
            import redis.asyncio as aioredis

            client = aioredis.Redis.from_url(self.url, socket_connect_timeout=0.5, socket_timeout=0.5)
            script = self._clients[loop] = client.register_script(_SCRIPT)
        return script

    def _keys(self, key: str) -> list[str]:
        return [f"{self.prefix}rate:{key}", f"{self.prefix}slots:{key}"]

    def _failed(self, exc: Exception) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("rate limits: Redis unreachable (%s); counting in this process for %.0f s",
                        type(exc).__name__, self.retry_s)
        self._down_until = time.monotonic() + self.retry_s

    async def acquire(self, key: str) -> Decision:
        if time.monotonic() < self._down_until:
            return self.fallback.acquire_now(key)
        lim, ticket = self.limits, uuid.uuid4().hex
        try:
            allowed, wait = await self._script()(
                keys=self._keys(key), args=[lim.per_second, lim.burst, lim.concurrent, ticket, lim.stale_s])
        except Exception as exc:  # redis errors, timeouts, OSError: never fail a request over its limits
            self._failed(exc)
            return self.fallback.acquire_now(key)
        if int(allowed) == 1:
            return Decision(True, ticket=ticket)
        return Decision(False, RATE if int(allowed) == 0 else CONCURRENCY, float(wait))

    async def release(self, key: str, ticket: str) -> None:
        if ticket == "local":
            self.fallback.release_now(key)
            return
        if self.limits.concurrent > 0:
            try:
                await self._script().registered_client.zrem(self._keys(key)[1], ticket)
            except Exception as exc:  # the slot goes stale and is freed after stale_s
                self._failed(exc)


Limiter = LocalLimiter | RedisLimiter


def limiter_for(settings: Settings) -> Limiter | None:
    limits = limits_from(settings)
    if not limits.active:
        return None
    return RedisLimiter(limits, settings.redis_url) if settings.redis_url else LocalLimiter(limits)
