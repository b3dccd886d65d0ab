"""/metrics: request counters and latency by route template, job runs by kind and outcome, the queue read from
the jobs table, embedding latency, the pool; loopback-only unless a token is configured; worker processes'
metrics added up through prometheus-client's multiprocess files."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from memsvc import jobs
from memsvc.db import session_factory
from memsvc.embeddings import get_embedder
from memsvc.lifecycle.runner import RunContext, run_job
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import BuiltinLLM
from memsvc.queue import RecordingQueue
from tests.fixtures import auth
from tests.lifecycle_helpers import new_tenant

LOCAL = ("127.0.0.1", 50000)


@pytest.fixture(scope="module")
def local(app) -> TestClient:  # type: ignore[no-untyped-def]
    """The suite's app, seen from this host (the default test client calls itself 'testclient')."""
    return TestClient(app, client=LOCAL)


def scrape(client: TestClient, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_request_moves_its_route_templates_counter_and_histogram(local, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    route = "/v1/memories/{memory_id}"
    before = scrape(local)
    missing = local.get(f"/v1/memories/{uuid.uuid4()}", headers=auth(key))
    assert missing.status_code == 404
    assert missing.headers["x-request-id"]
    after = scrape(local)
    labels = {"method": "GET", "route": route, "status": "404"}
    assert value(after, "memsvc_http_requests_total", **labels) == value(before, "memsvc_http_requests_total",
                                                                         **labels) + 1
    count = "memsvc_http_request_duration_seconds_count"
    assert value(after, count, method="GET", route=route) == value(before, count, method="GET", route=route) + 1
    # Paths no route matches share one label value (a scanner cannot make a series per path).
    local.get(f"/no/such/{uuid.uuid4()}")
    assert value(scrape(local), "memsvc_http_requests_total", method="GET", route="<unmatched>", status="404") >= 1


def test_a_caller_request_id_is_echoed_and_a_bad_one_replaced(local) -> None:  # type: ignore[no-untyped-def]
    assert local.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    replaced = local.get("/healthz", headers={"X-Request-ID": "no spaces\tor tabs"}).headers["x-request-id"]
    assert replaced != "no spaces\tor tabs" and len(replaced) == 32


def test_job_runs_by_kind_and_outcome_and_the_queue_from_the_jobs_table(local, engine) -> None:  # type: ignore[no-untyped-def]
    sessions = session_factory(engine)
    tenant = new_tenant(sessions)
    with sessions() as s, s.begin():
        job, _ = jobs.create_job(s, tenant_id=tenant, kind="decay", scope={}, params={})
    queued = scrape(local)
    assert value(queued, "memsvc_jobs", kind="decay", status="queued") >= 1
    assert value(queued, "memsvc_job_queue_depth") >= 1
    assert value(queued, "memsvc_job_metrics_up") == 1
    done = "memsvc_job_duration_seconds_count"
    ctx = RunContext(engine=engine, sessions=sessions, queue=RecordingQueue(), llm=lambda: BuiltinLLM(),
                     embedder=get_embedder, settings=LifecycleSettings(job_backoff_s=0))
    assert run_job(ctx, job.id) == "succeeded"
    after = scrape(local)
    assert value(after, done, kind="decay", outcome="succeeded") == value(queued, done, kind="decay",
                                                                          outcome="succeeded") + 1
    assert value(after, "memsvc_jobs", kind="decay", status="queued") == value(queued, "memsvc_jobs", kind="decay",
                                                                               status="queued") - 1


def test_embedding_latency_and_the_pool(local, make_tenant) -> None:  # type: ignore[no-untyped-def]
    key = make_tenant()
    before = scrape(local)
    assert local.post("/v1/memories", headers=auth(key), json={"content": "the pool is on the roof"}).status_code \
        in (200, 201)
    assert local.post("/v1/search", headers=auth(key), json={"query": "where is the pool"}).status_code == 200
    after = scrape(local)
    for op in ("store", "query"):
        name = "memsvc_embedding_duration_seconds_count"
        assert value(after, name, op=op) > value(before, name, op=op), op
    assert value(after, "memsvc_db_pool_limit") >= 1
    assert ("memsvc_db_pool_connections", (("state", "checked_out"),)) in after
    assert value(after, "memsvc_build_info", version=__import__("memsvc").__version__) == 1


def test_only_this_host_may_scrape_unless_a_token_is_configured(app, client, local) -> None:  # type: ignore[no-untyped-def]
    far = TestClient(app, client=("203.0.113.9", 40000))
    refused = far.get("/metrics")
    assert refused.status_code == 403 and "MEMSVC_METRICS_TOKEN" in refused.json()["error"]["message"]
    settings = app.state.settings
    app.state.settings = settings.model_copy(update={"metrics_token": "s3cret-scrape"})
    try:
        assert local.get("/metrics").status_code == 403  # with a token, loopback needs it too
        assert far.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert far.get("/metrics", headers={"Authorization": "Bearer s3cret-scrape"}).status_code == 200
    finally:
        app.state.settings = settings


_WORKER = """
import sys
from memsvc import metrics
metrics.observe_job("consolidate", "succeeded", 0.2)
metrics.observe_job("consolidate", "succeeded", 0.4)
with metrics.timed_embedding("store", 3):
    pass
"""


def test_worker_processes_metrics_add_up_in_multiprocess_mode(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """What `memsvc serve` sets up: each process writes under one directory; the API's registry reads them all."""
    from memsvc import metrics

    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {**os.environ, metrics.MULTIPROC_ENV: str(directory)}
    for _ in range(2):  # two worker processes
        subprocess.run([sys.executable, "-c", _WORKER], env=env, check=True, timeout=120)
    registry = metrics.build_registry(engine, jobs.backlog, multiprocess=directory)
    body, _ = metrics.render(registry)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert value(samples, "memsvc_job_duration_seconds_count", kind="consolidate", outcome="succeeded") == 4
    assert value(samples, "memsvc_job_duration_seconds_sum", kind="consolidate", outcome="succeeded") \
        == pytest.approx(1.2)
    assert value(samples, "memsvc_embedded_texts_total", op="store") == 6
