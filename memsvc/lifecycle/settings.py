"""Service-wide lifecycle settings: the `lifecycle` section of memsvc.config.Settings (env `MEMSVC_<NAME>` or
`MEMSVC_LIFECYCLE__<NAME>`). Per-tenant choices live in the tenant policy (memsvc.lifecycle.policy); these are
the operator's knobs: batch sizes, schedules, timeouts."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LifecycleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMSVC_", env_file=None, extra="ignore")

    # Consolidation: a write schedules one consolidation per scope this many seconds later; further
    # writes in that window join the same job (debounce). 0 disables write-triggered consolidation.
    consolidate_debounce_s: float = Field(60.0, ge=0)
    consolidate_batch: int = Field(50, ge=1, le=1000, description="Episodes per atomic consolidation step.")
    consolidate_max_batches: int = Field(20, ge=1, description="Steps per job; the rest goes to a follow-up job.")
    # Cosine similarity at or above which a new fact is the same as an existing one.
    dedupe_similarity: float = Field(0.93, gt=0, le=1)

    # Decay pass: rows per UPDATE statement (each its own transaction) and representations
    # (summary/gist) made per LLM batch.
    decay_chunk_rows: int = Field(100_000, ge=1_000)
    representation_batch: int = Field(500, ge=1)
    # Bound on summaries/gists made in one pass (an LLM costs money); the rest waits for the next pass.
    max_representations_per_pass: int = Field(200_000, ge=0)
    # Learned-sparse vectors filled in per tenant and pass (memsvc.sparse_backfill; ~10 ms a memory on one core).
    sparse_fill_per_pass: int = Field(5_000, ge=0)

    # Periodic work (seconds) for `memsvc beat`.
    decay_interval_s: float = Field(3600.0, gt=0)
    consolidate_sweep_interval_s: float = Field(300.0, gt=0)
    recover_interval_s: float = Field(60.0, gt=0)

    # Jobs: retries of transient failures (LLM unreachable, database hiccup), with exponential backoff.
    job_max_attempts: int = Field(5, ge=1)
    job_backoff_s: float = Field(5.0, ge=0)
    job_backoff_max_s: float = Field(600.0, ge=0)
    # Recovery (beat, and each worker at start): a queued job whose time came this long ago without
    # running (its message was lost) is enqueued again; a running job whose worker is gone (its
    # advisory lock is free) is put back in the queue at once.
    job_requeue_after_s: float = Field(120.0, ge=0)
    # Celery queue the API sends jobs to and workers consume (one per deployment sharing a broker).
    celery_queue: str = Field("memsvc", min_length=1, max_length=200)
    # The broker redelivers an un-acked message after this long (acks_late); jobs outlive it safely
    # because every task checks its jobs row first.
    broker_visibility_timeout_s: int = Field(3600, ge=1)

