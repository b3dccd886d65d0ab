"""Memory tokens as a service: which memories to train, training them in batches, storing what came out,
and decoding a stored set back to text. Called by the `train_memory_tokens` job (memsvc.lifecycle.runner)
and the API; the model and trainer are memsvc.memtokens.model / .trainer (torch, the `local-llm` extra).

Idempotent: a memory that already has a set for this model and its present content is skipped (unless
`retrain`), so a retried or repeated job trains only what is missing. Results are stored per batch, each
batch in its own transaction, so a job killed half-way keeps what it finished. A set is stored only if its
memory still has the content it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlalchemy.orm import Session, sessionmaker

from memsvc import jobs
from memsvc.errors import InvalidInput, NotFound
from memsvc.memtokens import store
from memsvc.memtokens.local_models import LocalModelSpec, ModelIdentity
from memsvc.memtokens.policy import MemoryTokenPolicy, refusal, vectors_for
from memsvc.models import Job, Memory
from memsvc.queue import JobQueue
from memsvc.schemas import MemoryTokenStatus
from memsvc.scoping import MemoryScope

KIND = "train_memory_tokens"
MAX_SELECTED = 5_000  # memories one job considers; the next job (or maintenance pass) takes the rest


@dataclass(frozen=True)
class Selection:
    """What to train: memory ids, or everything qualifying under user/agent/session (the key's scope)."""

    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    memory_ids: tuple[uuid.UUID, ...] = ()
    retrain: bool = False

    def as_params(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "agent_id": self.agent_id, "session_id": self.session_id,
                "memory_ids": [str(i) for i in self.memory_ids], "retrain": self.retrain}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Selection:
        return cls(params.get("user_id"), params.get("agent_id"), params.get("session_id"),
                   tuple(uuid.UUID(i) for i in params.get("memory_ids") or ()), bool(params.get("retrain")))


@dataclass(frozen=True)
class Todo:
    id: uuid.UUID
    content: str
    content_hash: str
    n_tokens: int
    k: int


@dataclass
class TrainReport:
    model_id: str
    selected: int = 0
    trained: int = 0
    verified: int = 0
    not_verified: int = 0
    already_trained: int = 0
    gone: int = 0  # deleted or edited while training: nothing stored
    remaining: int = 0  # qualifying but left for the next job (a job trains at most `per_job`)
    next_job: str | None = None  # the job that trains them
    stale_removed: int = 0  # sets of the same model name on other weights
    skipped: list[dict[str, str]] = field(default_factory=list)  # {id, reason}, the first 100
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # per memory trained, the first 200
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def schedule(session: Session, queue: JobQueue | None, scope: MemoryScope, selection: Selection,
             spec: LocalModelSpec) -> Job:
    """A `train_memory_tokens` job for the selection, run by a worker. The same request while its job is
    still queued gets that job. The job trains for the weights seen now (it fails, saying so, if they change)
    and within the asking key's restriction."""
    if selection.memory_ids:
        found = set(session.scalars(scope.select(Memory.id).where(Memory.id.in_(selection.memory_ids))))
        missing = [i for i in selection.memory_ids if i not in found]
        if missing:
            raise NotFound(f"memory {missing[0]} not found", details={"field": "memory_ids"})
    params = {**selection.as_params(), "model": spec.name, "model_id": spec.identity().model_id,
              "restriction": {"user_ids": _listed(scope.user_ids), "agent_ids": _listed(scope.agent_ids)}}
    job_scope = {k: params.pop(k) for k in ("user_id", "agent_id", "session_id") if params[k] is not None}
    for k in ("user_id", "agent_id", "session_id"):
        params.pop(k, None)
    digest = hashlib.sha256(json.dumps([job_scope, params], sort_keys=True).encode()).hexdigest()[:32]
    job, _ = jobs.create_job(session, tenant_id=scope.tenant_id, kind=KIND, scope=job_scope, params=params,
                             debounce_key=f"{KIND}:{digest}", queue=queue)
    return job


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return list(values) if values is not None else None


def select_memories(session: Session, scope: MemoryScope, selection: Selection, policy: MemoryTokenPolicy,
                    spec: LocalModelSpec, model_id: str) -> tuple[list[Todo], list[dict[str, str]], int]:
    """The memories to train (qualifying, not yet trained), the ones named but refused (with why), and how
    many were already trained."""
    query = scope.select(Memory.id, Memory.content, Memory.content_hash, Memory.kind, Memory.importance,
                         Memory.tier)
    if selection.memory_ids:
        query = query.where(Memory.id.in_(selection.memory_ids))
    else:
        query = query.where(Memory.kind.in_(policy.kinds), Memory.importance >= policy.min_importance,
                            Memory.tier == "verbatim", Memory.superseded_by.is_(None),
                            # a cheap bound before counting: a token rarely spans 16 characters
                            func.length(Memory.content) <= policy.max_tokens * 16)
        for name in ("user_id", "agent_id", "session_id"):
            if getattr(selection, name) is not None:
                query = query.where(getattr(Memory, name) == getattr(selection, name))
    rows = list(session.execute(query.order_by(Memory.importance.desc(), Memory.id).limit(MAX_SELECTED)))
    skipped = [{"id": str(i), "reason": "deleted since the request"}
               for i in sorted(set(selection.memory_ids) - {r.id for r in rows})]
    done = set() if selection.retrain else store.trained(session, scope, model_id, [r.id for r in rows])
    counter = spec.counter()
    todo: list[Todo] = []
    for row in rows:
        if row.id in done:
            continue
        n = counter.count(row.content)
        why = refusal(row.kind, row.importance, row.tier, n, policy)
        if why is None:
            todo.append(Todo(row.id, row.content, row.content_hash, n, vectors_for(n, policy)))
        elif selection.memory_ids:
            skipped.append({"id": str(row.id), "reason": why})
    return todo, skipped, len(done)


def train(sessions: sessionmaker[Session], scope: MemoryScope, selection: Selection, policy: MemoryTokenPolicy,
          spec: LocalModelSpec, *, expected: str | None = None, batch_size: int = 16, per_job: int = 64,
          progress: Callable[[dict[str, Any]], None] | None = None) -> TrainReport:
    """Train the selection's memories for `spec`'s model, at most `per_job` of them (`remaining` says how many
    wait: the caller schedules the next job, so a worker is never held for hours). `expected`: the model_id
    the request saw; if the weights changed since, nothing is trained (the caller asked about other weights)."""
    from memsvc.memtokens.model import load_local_model
    from memsvc.memtokens.trainer import TrainSettings, train_memory_tokens

    t0 = time.perf_counter()
    identity: ModelIdentity = spec.identity()
    if expected is not None and expected != identity.model_id:
        raise InvalidInput(f"the weights of local model {spec.name!r} changed since the request "
                           f"({expected} -> {identity.model_id}); ask again to train for the new weights",
                           code="model_changed")
    report = TrainReport(model_id=identity.model_id)
    with sessions() as session, session.begin():
        report.stale_removed = store.remove_other_weights(session, scope.tenant_id, spec.name, identity.model_id)
        todo, report.skipped, report.already_trained = select_memories(
            session, scope, selection, policy, spec, identity.model_id)
    report.skipped = report.skipped[:100]
    todo, report.remaining = todo[:per_job], max(0, len(todo) - per_job)
    report.selected = len(todo)
    if not todo:
        report.seconds = round(time.perf_counter() - t0, 3)
        return report
    model = load_local_model(spec.spec, name=spec.name)
    if model.identity.weights_hash != identity.weights_hash:  # replaced between hashing and loading
        raise InvalidInput(f"the weights of local model {spec.name!r} changed while loading; ask again",
                           code="model_changed")
    todo.sort(key=lambda t: -t.n_tokens)  # similar lengths train together: little padding
    for at in range(0, len(todo), batch_size):
        batch = todo[at:at + batch_size]
        results = train_memory_tokens(model, [t.content for t in batch], TrainSettings(batch_size=len(batch)),
                                      ks=[t.k for t in batch])
        with sessions() as session, session.begin():
            for item, result in zip(batch, results, strict=True):
                kept = store.save(session, scope, item.id, identity.model_id, item.content_hash,
                                  vectors=result.vectors, verified=result.verified, steps=result.steps,
                                  seconds=result.seconds, n_tokens=item.n_tokens,
                                  note=None if result.verified else (result.reason or "did not decode exactly"))
                report.trained += kept
                report.gone += not kept
                report.verified += kept and result.verified
                report.not_verified += kept and not result.verified
                if len(report.outcomes) < 200:
                    report.outcomes.append({"id": str(item.id), "tokens": item.n_tokens, "vectors": item.k,
                                            "verified": result.verified, "steps": result.steps,
                                            "seconds": round(result.seconds, 3), "stored": kept})
        if progress is not None:
            progress({"trained": report.trained, "verified": report.verified, "selected": report.selected})
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def token_statuses(session: Session, scope: MemoryScope, memory_id: uuid.UUID) -> list[MemoryTokenStatus]:
    """The memory's token sets as its record shows them."""
    return [MemoryTokenStatus(model_id=s.model_id, verified=s.verified, current=s.current, vectors=s.n_vectors,
                              content_tokens=s.n_tokens, train_steps=s.train_steps,
                              train_seconds=round(s.train_seconds, 3), trained_at=s.trained_at, note=s.note)
            for s in store.statuses(session, scope, [memory_id]).get(memory_id, [])]


@dataclass(frozen=True)
class Decoded:
    memory_id: uuid.UUID
    model_id: str
    text: str
    exact: bool  # the decode equals the memory's content
    verified: bool


def decode(session: Session, scope: MemoryScope, memory_id: uuid.UUID, spec: LocalModelSpec) -> Decoded:
    """A stored set decoded back to text by greedy decoding, for anyone to check it against the content."""
    from memsvc.memtokens.decode import decode_tokens
    from memsvc.memtokens.model import load_local_model

    identity = spec.identity()
    content = session.scalar(scope.select(Memory.content).where(Memory.id == memory_id))
    if content is None:
        raise NotFound(f"memory {memory_id} not found")
    found = store.vectors(session, scope, identity.model_id, [memory_id], verified_only=False)
    if memory_id not in found:
        others = [s.model_id for s in store.statuses(session, scope, [memory_id]).get(memory_id, [])]
        hint = f" (it has sets for {', '.join(others)}: other weights or an older content)" if others else ""
        raise InvalidInput(f"memory {memory_id} has no token set for {identity.model_id}{hint}; train it first "
                           "(POST /v1/memory-tokens/train)", code="no_token_set", details={"field": "model"})
    if found[memory_id].shape[0] == 0:
        note = next(s.note for s in store.statuses(session, scope, [memory_id])[memory_id]
                    if s.model_id == identity.model_id)
        raise InvalidInput(f"memory {memory_id} was not trained for {identity.model_id}: {note}",
                           code="no_token_set", details={"field": "model"})
    verified = bool(store.verified_sets(session, scope, identity.model_id, [memory_id]))
    model = load_local_model(spec.spec, name=spec.name)
    n_tokens = spec.counter().count(content)
    text = decode_tokens(model, found[memory_id], max_new_tokens=n_tokens + 8)
    return Decoded(memory_id, identity.model_id, text, text == content, verified)
