"""Running one job: lock, mark running, dispatch by kind, record the outcome. Celery-free, so a Celery
task, a test or a CLI command run jobs the same way (workers/tasks.py is a thin shell over `run_job`).

Failure policy:
- LLMOutputError (the model kept answering garbage after the gateway's own retries), InvalidInput
  and other domain errors: the job fails at once, with the reason in `error`; nothing was written
  because every handler writes only after the LLM answered.
- Anything else (LLM unreachable, database restarting, a bug): retried with exponential backoff up
  to `job_max_attempts`, the last error kept on the row; then it fails.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from memsvc import jobs, metrics
from memsvc.config import get_settings
from memsvc.db import session_factory
from memsvc.embeddings import Embedder, get_embedder
from memsvc.errors import MemsvcError
from memsvc.idempotency import purge_expired
from memsvc.lifecycle.consolidate import consolidate, rederive
from memsvc.lifecycle.decay import fill_builtin_summaries, run_decay
from memsvc.lifecycle.hooks import schedule_consolidation, schedule_rederive
from memsvc.lifecycle.scope import ConsolidationScope
from memsvc.lifecycle.settings import LifecycleSettings
from memsvc.llm import LLM, LLMCallError, LLMOutputError, get_llm
from memsvc.memtokens import service as memtokens
from memsvc.memtokens.local_models import LocalModels
from memsvc.memtokens.policy import get_policy
from memsvc.models import Job, Tenant
from memsvc.queue import JobQueue
from memsvc.retrieval.fulltext import refresh_text_stats
from memsvc.retrieval.language import realign
from memsvc.scoping import MemoryScope
from memsvc.sparse_backfill import fill_sparse
from memsvc.sparse_encoder import get_sparse_encoder

log = logging.getLogger(__name__)


@dataclass
class RunContext:
    engine: Engine
    sessions: sessionmaker[Session]
    queue: JobQueue
    llm: Callable[[], LLM]
    embedder: Callable[[], Embedder]
    settings: LifecycleSettings
    worker: str | None = None  # recorded on each job this context runs (result.worker)

    @classmethod
    def default(cls, engine: Engine, queue: JobQueue, settings: LifecycleSettings | None = None,
                worker: str | None = None) -> RunContext:
        """settings: the lifecycle section of the settings tree (default: this process's)."""
        return cls(engine=engine, sessions=session_factory(engine), queue=queue,
                   llm=lambda: get_llm(get_settings().llm_model), embedder=get_embedder,
                   settings=settings or get_settings().lifecycle, worker=worker)


@dataclass(frozen=True)
class JobView:
    """What a handler needs of its row (a plain snapshot; the row itself changes under it)."""

    id: uuid.UUID
    tenant_id: uuid.UUID | None
    kind: str
    scope: dict[str, Any]
    params: dict[str, Any]
    attempts: int


Handler = Callable[[RunContext, JobView], dict[str, Any]]
HANDLERS: dict[str, Handler] = {}


def handler(kind: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return register


def run_job(ctx: RunContext, job_id: uuid.UUID) -> str:
    """Run the job if it still needs running. Returns succeeded | failed | retry | skipped | busy | missing."""
    retry_in: float | None = None
    with jobs.job_lock(ctx.engine, job_id) as got:
        if not got:
            return "busy"  # another live worker runs it; this delivery is a duplicate
        with ctx.sessions() as session, session.begin():
            row = jobs.mark_running(session, job_id, ctx.worker)
            if row is None:
                exists = session.scalar(select(Job.status).where(Job.id == job_id))
                return "skipped" if exists else "missing"
            job = JobView(row.id, row.tenant_id, row.kind, dict(row.scope or {}), dict(row.params or {}),
                          row.attempts)
        log.info("job %s (%s) attempt %d", job.id, job.kind, job.attempts)
        started = time.perf_counter()
        try:
            fn = HANDLERS.get(job.kind)
            if fn is None:
                raise MemsvcError(f"unknown job kind {job.kind!r}")
            result = fn(ctx, job)
        except (LLMOutputError, MemsvcError) as exc:
            transient = isinstance(exc, LLMCallError) and exc.retryable
            if not transient or job.attempts >= ctx.settings.job_max_attempts:
                _finish_failed(ctx, job, exc)
                metrics.observe_job(job.kind, "failed", time.perf_counter() - started)
                return "failed"
            retry_in = _retry(ctx, job, exc)
        except Exception as exc:
            log.exception("job %s (%s) failed on attempt %d", job.id, job.kind, job.attempts)
            if job.attempts >= ctx.settings.job_max_attempts:
                _finish_failed(ctx, job, exc)
                metrics.observe_job(job.kind, "failed", time.perf_counter() - started)
                return "failed"
            retry_in = _retry(ctx, job, exc)
        else:
            with ctx.sessions() as session, session.begin():
                jobs.mark_succeeded(session, job.id, result)
            metrics.observe_job(job.kind, "succeeded", time.perf_counter() - started)
            return "succeeded"
        metrics.observe_job(job.kind, "retry", time.perf_counter() - started)
    # Enqueued only once our lock is released, so the next delivery is not turned away as "busy".
    ctx.queue.enqueue(job_id, delay_s=retry_in)
    return "retry"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"


def _finish_failed(ctx: RunContext, job: JobView, exc: BaseException) -> None:
    details = getattr(exc, "details", None)
    with ctx.sessions() as session, session.begin():
        jobs.mark_failed(session, job.id, _describe(exc), {"error_details": details} if details else None)
    log.warning("job %s (%s) failed: %s", job.id, job.kind, _describe(exc))


def _retry(ctx: RunContext, job: JobView, exc: BaseException) -> float:
    delay = jobs.backoff_s(job.attempts, ctx.settings.job_backoff_s, ctx.settings.job_backoff_max_s)
    with ctx.sessions() as session, session.begin():
        jobs.mark_retry(session, job.id, _describe(exc), datetime.now(UTC) + timedelta(seconds=delay))
    return delay


def _now(params: dict[str, Any]) -> datetime:
    """A job may carry an explicit clock (tests, simulations); otherwise it is now."""
    raw = params.get("now")
    return datetime.fromisoformat(raw) if raw else datetime.now(UTC)


# ---- handlers -----------------------------------------------------------------------------------


@handler("consolidate")
def _consolidate(ctx: RunContext, job: JobView) -> dict[str, Any]:
    assert job.tenant_id is not None
    scope = ConsolidationScope(job.tenant_id, job.scope.get("user_id"), job.scope.get("agent_id"),
                               job.scope.get("session_id"))

    def checkpoint(stage: str) -> None:
        with ctx.sessions() as session, session.begin():
            jobs.merge_result(session, job.id, {"stage": stage})

    report = consolidate(ctx.sessions, scope, llm=ctx.llm(), embedder=ctx.embedder(), settings=ctx.settings,
                         reprocess=bool(job.params.get("reprocess")), now=_now(job.params) if "now" in job.params
                         else None, checkpoint=checkpoint)
    if report.more_waiting:
        with ctx.sessions() as session, session.begin():
            schedule_consolidation(session, ctx.queue, scope, delay_s=0.0)
    return {"stage": "done", **report.as_dict()}


@handler("decay")
def _decay(ctx: RunContext, job: JobView) -> dict[str, Any]:
    assert job.tenant_id is not None
    tenant_id = job.tenant_id
    report = run_decay(ctx.sessions, tenant_id, _now(job.params), llm=ctx.llm(), settings=ctx.settings,
                       on_orphans=lambda s, ids: schedule_rederive(s, ctx.queue, tenant_id, ids))
    summarized = fill_builtin_summaries(ctx.sessions, tenant_id)
    # The same periodic pass re-parses memories still in another full-text language than the tenant's
    # (stragglers of a language change) and recounts the tenant's full-text statistics (BM25 document
    # frequencies of large scopes come from them instead of a count over the scope per query).
    return {**report.as_dict(), **_reindex_fulltext(ctx, tenant_id), "builtin_summaries_filled": summarized,
            "idempotency_records_expired": _purge_idempotency(ctx, tenant_id),
            **_fill_sparse(ctx, tenant_id, max_rows=ctx.settings.sparse_fill_per_pass),
            **_schedule_memory_tokens(ctx, tenant_id)}


def _purge_idempotency(ctx: RunContext, tenant_id: uuid.UUID) -> int:
    """Stored Idempotency-Key responses past MEMSVC_IDEMPOTENCY_TTL_SECONDS (lookups already ignore them)."""
    with ctx.sessions() as session, session.begin():
        return purge_expired(session, tenant_id, get_settings().idempotency_ttl_seconds)


def _fill_sparse(ctx: RunContext, tenant_id: uuid.UUID, *, max_rows: int | None = None, reencode: bool = False,
                 job_id: uuid.UUID | None = None) -> dict[str, Any]:
    """Learned-sparse vectors for memories without one (memsvc.sparse_backfill); nothing when the channel is off."""
    encoder = get_sparse_encoder()
    if encoder is None:
        return {"sparse_encoded": 0}

    def progress(done: int) -> None:
        if job_id is not None:
            with ctx.sessions() as session, session.begin():
                jobs.merge_result(session, job_id, {"sparse_encoded": done})

    done = fill_sparse(ctx.sessions, tenant_id, encoder, max_rows=max_rows, reencode=reencode, progress=progress)
    return {"sparse_encoded": done, "sparse_model": encoder.name}


@handler("sparse_backfill")
def _sparse_backfill(ctx: RunContext, job: JobView) -> dict[str, Any]:
    """Every memory of the tenant without a learned-sparse vector (or, with params.reencode, another model's)."""
    assert job.tenant_id is not None
    return _fill_sparse(ctx, job.tenant_id, reencode=bool(job.params.get("reencode")), job_id=job.id)


def _reindex_fulltext(ctx: RunContext, tenant_id: uuid.UUID) -> dict[str, Any]:
    with ctx.sessions() as session, session.begin():
        reparsed = realign(session, tenant_id)
    with ctx.sessions() as session, session.begin():
        text_stats = refresh_text_stats(session, tenant_id)
    return {"fulltext_reparsed": reparsed, "text_stats": text_stats}


@handler("reindex_fulltext")
def _reindex(ctx: RunContext, job: JobView) -> dict[str, Any]:
    """After a tenant changed its language: its memories re-parsed, its statistics recounted (idempotent:
    a second run finds nothing to re-parse)."""
    assert job.tenant_id is not None
    return _reindex_fulltext(ctx, job.tenant_id)


@handler("rederive")
def _rederive(ctx: RunContext, job: JobView) -> dict[str, Any]:
    assert job.tenant_id is not None
    ids = [uuid.UUID(i) for i in job.params.get("ids", [])]
    return rederive(ctx.sessions, job.tenant_id, ids, llm=ctx.llm(), embedder=ctx.embedder()).as_dict()


@handler("train_memory_tokens")
def _train_memory_tokens(ctx: RunContext, job: JobView) -> dict[str, Any]:
    """Memory tokens for the memories the request selected (memsvc.memtokens.service)."""
    assert job.tenant_id is not None
    with ctx.sessions() as session:
        policy = get_policy(session, job.tenant_id)
    settings = get_settings()
    spec = LocalModels.from_config(settings.local_models).get(job.params.get("model") or policy.model)
    restriction = job.params.get("restriction") or {}
    scope = MemoryScope(job.tenant_id, _tuple(restriction.get("user_ids")), _tuple(restriction.get("agent_ids")))
    selection = memtokens.Selection.from_params({**job.scope, **job.params})

    def progress(done: dict[str, Any]) -> None:
        with ctx.sessions() as session, session.begin():
            jobs.merge_result(session, job.id, done)

    report = memtokens.train(ctx.sessions, scope, selection, policy, spec, expected=job.params.get("model_id"),
                           batch_size=settings.memtokens_batch_size, per_job=settings.memtokens_per_job,
                           progress=progress)
    if report.remaining:  # the rest in a job of its own: other kinds of job get the worker in between
        with ctx.sessions() as session, session.begin():
            report.next_job = str(memtokens.schedule(session, ctx.queue, scope, selection, spec).id)
    return report.as_dict()


def _schedule_memory_tokens(ctx: RunContext, tenant_id: uuid.UUID) -> dict[str, Any]:
    """With the tenant's memory-token policy enabled, a training job for what qualifies and has no set yet
    (the job skips what is trained; a job still queued is not doubled)."""
    with ctx.sessions() as session, session.begin():
        policy = get_policy(session, tenant_id)
        if not policy.enabled:
            return {}
        try:
            spec = LocalModels.from_config(get_settings().local_models).get(policy.model)
            job = memtokens.schedule(session, ctx.queue, MemoryScope(tenant_id), memtokens.Selection(), spec)
        except MemsvcError as exc:  # the policy's model is not served here (any more): say so, decay goes on
            return {"memory_tokens_not_scheduled": exc.message}
    return {"memory_tokens_job": str(job.id)}


def _tuple(values: list[str] | None) -> tuple[str, ...] | None:
    return tuple(values) if values is not None else None


def schedule_decay(session: Session, queue: JobQueue, now: datetime, interval_s: float) -> list[uuid.UUID]:
    """One decay job per tenant per interval (the idempotency key makes beat's repeats harmless)."""
    bucket = int(now.timestamp() // max(1.0, interval_s))
    created = []
    for tenant_id in session.scalars(select(Tenant.id)):
        job, new = jobs.create_job(session, tenant_id=tenant_id, kind="decay", idempotency_key=f"decay:{bucket}",
                                   queue=queue)
        if new:
            created.append(job.id)
    return created
