"""Prometheus metrics: what is measured, where, and how `/metrics` reads it.

Two sources, each where the truth lives:
- Events, observed where they happen, in whichever process that is: HTTP requests (API), embedding calls (API
  and workers), job runs by kind and outcome with their duration (workers; decay and consolidation are kinds).
- State, read from the database when /metrics is scraped: jobs queued and running by kind, how many queued
  jobs are due and how long the oldest has waited (the jobs table is the queue's truth, whichever worker or host
  runs them), and the API process's connection pool.

Workers are other processes (Celery prefork children of `memsvc worker`). When `memsvc serve` starts them it
points every process at one directory (prometheus-client's multiprocess mode, `enable_multiprocess`), and the
API's /metrics adds up all of them. prometheus-client picks its mode when it is first imported, so this
module imports it only on first use, and `enable_multiprocess` must run before that.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.core import Metric
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED_ROUTE = "<unmatched>"  # 404s and the like: one label value, so a scanner cannot blow up the series
# Requests: most answer in milliseconds, a context build or a batch write in up to seconds.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Jobs: a decay pass over a small tenant takes milliseconds, a consolidation with an LLM minutes.
_JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
_EMBED_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


# ---- process setup -------------------------------------------------------------------------------


def enable_multiprocess(directory: Path) -> bool:
    """Make this process and the children it starts from now on write their metrics under `directory`, emptied
    first (the caller owns it: `memsvc serve` holds the state directory's lock). False, with a warning, when
    prometheus-client was already imported in this process: then only this process's own metrics are served."""
    if "prometheus_client" in sys.modules and not _multiprocess_active():
        log.warning("metrics of worker processes will not be aggregated: prometheus_client was imported before "
                    "the metrics directory was set")
        return False
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # a previous run's counters: they would add up with this run's
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    return True


def serve_directory(directory: Path, host: str, port: int) -> None:
    """Serve, from a thread of this process, what every process writing under `directory` observed: a `memsvc
    worker` run apart from the API (its own host or container) shows its prefork children's job and embedding
    metrics this way. Unauthenticated: bind it where only the scraper reaches (it holds no tenant data)."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    start_http_server(port, addr=host, registry=registry)


def multiprocess_dir() -> Path | None:
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path and Path(path).is_dir() else None


def _multiprocess_active() -> bool:
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


# ---- events ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Metrics:
    requests: Any
    request_seconds: Histogram
    job_seconds: Histogram
    embed_seconds: Histogram
    embedded_texts: Any


@lru_cache(maxsize=1)
def _metrics() -> _Metrics:
    from prometheus_client import Counter, Histogram, disable_created_metrics

    disable_created_metrics()  # the *_created series double what a scrape carries, for no use here
    return _Metrics(
        requests=Counter("memsvc_http_requests", "HTTP requests answered, by method, route template and status.",
                         ["method", "route", "status"]),
        request_seconds=Histogram("memsvc_http_request_duration_seconds",
                                  "Time to answer an HTTP request, by method and route template.",
                                  ["method", "route"], buckets=_HTTP_BUCKETS),
        job_seconds=Histogram("memsvc_job_duration_seconds",
                              "Time one job attempt ran, by kind and outcome (succeeded, failed, retry).",
                              ["kind", "outcome"], buckets=_JOB_BUCKETS),
        embed_seconds=Histogram("memsvc_embedding_duration_seconds",
                                "Time of one embedding call, by operation (store / query: the dense model; "
                                "sparse_store / sparse_query: the learned-sparse model).",
                                ["op"], buckets=_EMBED_BUCKETS),
        embedded_texts=Counter("memsvc_embedded_texts", "Texts embedded, by operation.", ["op"]),
    )


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    m = _metrics()
    m.requests.labels(method, route, str(status)).inc()
    m.request_seconds.labels(method, route).observe(seconds)


def observe_job(kind: str, outcome: str, seconds: float) -> None:
    _metrics().job_seconds.labels(kind, outcome).observe(seconds)


@contextmanager
def timed_embedding(op: str, texts: int) -> Iterator[None]:
    """Time an embedding call (only those that return: a failed call is the caller's error, not a latency)."""
    start = time.perf_counter()
    yield
    m = _metrics()
    m.embed_seconds.labels(op).observe(time.perf_counter() - start)
    m.embedded_texts.labels(op).inc(texts)


# ---- state, read at scrape time ---------------------------------------------------------------------------


class _StateCollector:
    """Jobs waiting and running (from the jobs table) and the pool of the API process's engine."""

    def __init__(self, engine: Engine, backlog: Callable[[Engine], Any]) -> None:
        self.engine = engine
        self.backlog = backlog

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        pool = self.engine.pool
        checked_out = GaugeMetricFamily("memsvc_db_pool_connections",
                                        "This API process's database connections, by state.", labels=["state"])
        if hasattr(pool, "checkedout"):
            checked_out.add_metric(["checked_out"], pool.checkedout())
            checked_out.add_metric(["idle"], pool.checkedin())
            yield checked_out
            limit = pool.size() + max(0, getattr(pool, "_max_overflow", 0))
            yield GaugeMetricFamily("memsvc_db_pool_limit", "Connections this API process's pool may open at most.",
                                    value=limit)
        up = GaugeMetricFamily("memsvc_job_metrics_up", "1 when the job gauges below could be read from the "
                               "database at this scrape, else 0.")
        try:
            backlog = self.backlog(self.engine)
        except Exception as exc:  # a scrape must answer while the database is away: say so instead
            log.warning("job metrics unavailable: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("memsvc_jobs", "Jobs queued or running now, by kind and status.",
                                 labels=["kind", "status"])
        for (kind, status), count in sorted(backlog.counts.items()):
            jobs.add_metric([kind, status], count)
        yield jobs
        yield GaugeMetricFamily("memsvc_job_queue_depth", "Queued jobs whose time has come, waiting for a worker.",
                                value=backlog.due)
        yield GaugeMetricFamily("memsvc_job_queue_oldest_seconds",
                                "How long the oldest due queued job has waited (0 when none).",
                                value=backlog.oldest_due_s)


class _Forward:
    """Serves another registry's metrics from this one (the process's default registry in one-process mode)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        yield from self.source.collect()


def build_registry(engine: Engine, backlog: Callable[[Engine], Any], *,
                   multiprocess: Path | None = None) -> CollectorRegistry:
    """The registry /metrics serves: every process's events (multiprocess: the files under that directory;
    otherwise this process's, with its runtime metrics), plus the state read at scrape time."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    from memsvc import __version__

    _metrics()  # defined (and so listed, at zero) before the first event
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess is not None:
        MultiProcessCollector(registry, path=str(multiprocess))
    else:
        registry.register(_Forward(REGISTRY))  # type: ignore[arg-type]
    registry.register(_StateCollector(engine, backlog))  # type: ignore[arg-type]
    registry.register(_Info(__version__))  # type: ignore[arg-type]
    return registry


class _Info:
    def __init__(self, version: str) -> None:
        self.version = version

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily("memsvc_build_info", "The memsvc version serving these metrics.", labels=["version"])
        info.add_metric([self.version], 1)
        yield info


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST


# ---- who may scrape ----------------------------------------------------------------------------------------


def scrape_refusal(client_host: str | None, authorization: str | None, token: str | None) -> str | None:
    """Why a scrape is refused, or None. With a configured token, only `Authorization: Bearer <token>` may read,
    from anywhere; without one, only clients on this host (loopback) may: the counts say how busy each route is
    and which job kinds run, which is nobody else's business by default."""
    if token:
        scheme, _, presented = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return None
        return "/metrics needs `Authorization: Bearer <MEMSVC_METRICS_TOKEN>`"
    if _is_loopback(client_host):
        return None
    return ("/metrics answers only clients on this host unless MEMSVC_METRICS_TOKEN is set; set it and scrape "
            "with `Authorization: Bearer <token>`")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
