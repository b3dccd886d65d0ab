"""The write path and plain reads: add, batch add, get, list, update, delete with cascade, erase a scope.

Every query starts from the caller's `MemoryScope`, so tenant isolation is not this module's to forget.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.orm import Session, undefer

from memsvc import deployment, idempotency, jobs, pagination
from memsvc.config import Settings, get_settings
from memsvc.embeddings import Embedder
from memsvc.errors import InvalidInput, MemsvcError, NotFound, PayloadTooLarge
from memsvc.lifecycle.retention import forgetting_starts_at, initial_strength
from memsvc.llm.summarizer import write_summary
from memsvc.memtokens import store as memtoken_store
from memsvc.models import CLIENT_EMBEDDING, Memory, MemoryLink
from memsvc.schemas import DeletionReport, MemoryCreate, MemoryUpdate, ScopeSelector
from memsvc.scoping import MemoryScope
from memsvc.sparse_encoder import SparseEncoder, encoder_for, sparsevec
from memsvc.validation import check_embedding, check_json, check_text, check_time

if TYPE_CHECKING:
    from memsvc.lifecycle.hooks import LifecycleHooks


def content_hash(text: str) -> str:
    """Hash of the whitespace-normalised text: the cheap first test for duplicates."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


def as_utc(value: datetime | None, field: str = "time") -> datetime | None:
    return None if value is None else check_time(value, field)


@dataclass(frozen=True)
class ListFilters:
    user_id: str | None = None
    agent_id: str | None = None
    session_id: str | None = None
    kind: str | None = None
    tier: str | None = None
    tag: str | None = None

    def key(self) -> str:
        return "|".join(str(v) for v in (self.user_id, self.agent_id, self.session_id, self.kind, self.tier, self.tag))


def parse_uuid(value: str, what: str = "memory id") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{value!r} is not a valid {what} (expected a UUID)", code="invalid_id") from None


class MemoryStore:
    def __init__(
        self, session: Session, scope: MemoryScope, embedder: Embedder | None = None,
        settings: Settings | None = None, hooks: LifecycleHooks | None = None,
    ) -> None:
        self.session = session
        self.scope = scope
        self.embedder = embedder
        self.settings = settings or get_settings()
        # Lifecycle reactions to writes (debounced consolidation, re-derivation of orphans), in
        # this transaction; the API passes them in with its job queue.
        self.hooks = hooks
        self._sparse: SparseEncoder | None | bool = False  # False: not looked up yet

    @property
    def sparse(self) -> SparseEncoder | None:
        """The learned-sparse encoder, loaded when a write first needs it: a request that encodes nothing (list,
        get, delete, erase) does not wait for torch and the SPLADE model after a start."""
        if self._sparse is False:
            self._sparse = encoder_for(self.settings)
        return self._sparse  # type: ignore[return-value]

    # ---- writes -------------------------------------------------------------------------------
    def add(self, item: MemoryCreate) -> Memory:
        return self.add_batch([item])[0]

    def add_batch(self, items: Sequence[MemoryCreate]) -> list[Memory]:
        """All or nothing: every item is validated before any is stored; errors name the item's index."""
        limit = self.settings.max_batch_items
        if len(items) > limit:
            raise PayloadTooLarge(f"a batch holds at most {limit} memories; got {len(items)}")
        now = datetime.now(UTC)
        rows = []
        for index, item in enumerate(items):
            try:
                rows.append(self._new_row(item, now))
            except MemsvcError as exc:
                if len(items) > 1:
                    exc.message = f"item {index}: {exc.message}; nothing was stored"
                    exc.details = {**(exc.details or {}), "index": index}
                raise
        self._embed_missing(rows, [item.embedding is None for item in items])
        self._sparse_encode(rows)
        self.session.add_all(rows)
        self.session.flush()
        if self.hooks is not None:
            self.hooks.added(self.session, self.scope, rows)
        return rows

    def _new_row(self, item: MemoryCreate, now: datetime) -> Memory:
        content = check_text(item.content, "content", max_chars=self.settings.max_content_chars)
        self._check_fields(item.user_id, item.agent_id, item.session_id, item.tags, item.metadata)
        self.scope.check_writable(item.user_id, item.agent_id)
        occurred = as_utc(item.occurred_at, "occurred_at") or now
        valid_from, valid_to = as_utc(item.valid_from, "valid_from") or occurred, as_utc(item.valid_to, "valid_to")
        if valid_to is not None and valid_to <= valid_from:
            raise InvalidInput("valid_to must be after valid_from", details={"field": "valid_to"})
        embedding = check_embedding(item.embedding, self.settings.embedding_dim) if item.embedding else None
        summary, summary_by = write_summary(content, self.settings.summarizer, self.settings.llm_model)
        return Memory(
            id=uuid.uuid4(), tenant_id=self.scope.tenant_id, user_id=item.user_id, agent_id=item.agent_id,
            session_id=item.session_id, kind=item.kind, content=content, tier="verbatim",
            # summary_by 'extractive' with no summary: it looked, and the text is its own summary; NULL: not
            # made yet (MEMSVC_SUMMARIZER=llm: the maintenance pass asks the model).
            summary=summary, summary_by=summary_by,
            importance=item.importance, strength=initial_strength(item.importance), access_count=0,
            last_accessed_at=forgetting_starts_at(now, occurred), occurred_at=occurred, recorded_at=now, updated_at=now,
            valid_from=valid_from, valid_to=valid_to, content_hash=content_hash(content),
            metadata_=item.metadata, tags=item.tags, embedding=embedding,
            embedding_model=CLIENT_EMBEDDING if embedding is not None else None,
        )

    def _check_fields(self, user_id: str | None, agent_id: str | None, session_id: str | None,
                      tags: list[str] | None, metadata: dict[str, Any] | None) -> None:
        for name, value in (("user_id", user_id), ("agent_id", agent_id), ("session_id", session_id)):
            if value is not None:
                check_text(value, name)
        for i, tag in enumerate(tags or []):
            check_text(tag, f"tags[{i}]", max_chars=100)
        if metadata is not None:
            check_json(metadata, "metadata")

    def _embed_missing(self, rows: list[Memory], missing: list[bool]) -> None:
        todo = [row for row, needs in zip(rows, missing, strict=True) if needs]
        if not todo:
            return
        if self.embedder is None:
            raise RuntimeError("MemoryStore needs an embedder to store memories without embeddings")
        vectors = self.embedder.embed([row.content for row in todo])
        for row, vector in zip(todo, vectors, strict=True):
            row.embedding = vector.tolist()
            row.embedding_model = self.embedder.name

    def _sparse_encode(self, rows: list[Memory]) -> None:
        """Learned-sparse terms of each row's text (client vectors or not: they come from the text)."""
        if self.sparse is None or not rows:
            return
        for row, terms in zip(rows, self.sparse.encode([row.content for row in rows]), strict=True):
            row.sparse_embedding = sparsevec(terms, self.sparse.dim)
            row.sparse_model = self.sparse.name

    def update(self, memory_id: uuid.UUID, patch: MemoryUpdate) -> Memory:
        memory = self.get(memory_id)
        fields = patch.model_dump(exclude_unset=True)
        if "content" in fields:
            if fields["content"] is None:
                raise InvalidInput("content cannot be null", details={"field": "content"})
            memory.content = check_text(fields.pop("content"), "content", max_chars=self.settings.max_content_chars)
            memory.content_hash = content_hash(memory.content)
            # A new text invalidates the derived representations and (unless given) the vector.
            memory.gist = None
            memory.summary, memory.summary_by = write_summary(memory.content, self.settings.summarizer,
                                                              self.settings.llm_model)
            memory.tier = "verbatim"
            # Memory tokens reproduce the old text: they die with it.
            memtoken_store.remove(self.session, self.scope.tenant_id, [memory.id])
            if "embedding" not in fields:
                self._embed_missing([memory], [True])
            self._sparse_encode([memory])
        self._check_fields(None, None, None, fields.get("tags"), fields.get("metadata"))
        if fields.get("embedding") is not None:
            memory.embedding = check_embedding(fields.pop("embedding"), self.settings.embedding_dim)
            memory.embedding_model = CLIENT_EMBEDDING
        fields.pop("embedding", None)
        for name in ("occurred_at", "valid_from", "valid_to"):
            if name in fields:
                fields[name] = as_utc(fields[name], name)
        if "metadata" in fields:
            fields["metadata_"] = fields.pop("metadata") or {}
        for name, value in fields.items():
            if value is None and name in ("kind", "importance", "occurred_at", "tags", "metadata_"):
                raise InvalidInput(f"{name} cannot be null", details={"field": name})
            setattr(memory, name, value)
        if "occurred_at" in fields and not memory.access_count:
            # Not used since it was stored: it ages from its (corrected) date, as it would have at write.
            memory.last_accessed_at = forgetting_starts_at(memory.recorded_at, memory.occurred_at)
        if memory.valid_to is not None and memory.valid_from is not None and memory.valid_to <= memory.valid_from:
            raise InvalidInput("valid_to must be after valid_from", details={"field": "valid_to"})
        memory.updated_at = datetime.now(UTC)
        self.session.flush()
        return memory

    # ---- reads --------------------------------------------------------------------------------
    def get(self, memory_id: uuid.UUID) -> Memory:
        # 404 for another tenant's id as well, so ids do not leak across tenants.
        memory = self.session.scalar(self.scope.select().where(Memory.id == memory_id))
        if memory is None:
            raise NotFound(f"memory {memory_id} not found")
        return memory

    def get_many(self, ids: Sequence[uuid.UUID], *, with_embedding: bool = False) -> list[Memory]:
        query = self.scope.select().where(Memory.id.in_(list(ids)))
        if with_embedding:
            query = query.options(undefer(Memory.embedding))
        return list(self.session.scalars(query))

    def list(self, filters: ListFilters, cursor: str | None, limit: int) -> tuple[list[Memory], str | None]:
        limit = max(1, min(limit, self.settings.max_page_size))
        query = self.scope.select()
        for column, value in (
            (Memory.user_id, filters.user_id), (Memory.agent_id, filters.agent_id),
            (Memory.session_id, filters.session_id), (Memory.kind, filters.kind), (Memory.tier, filters.tier),
        ):
            if value is not None:
                query = query.where(column == value)
        if filters.tag is not None:
            query = query.where(Memory.tags.contains([filters.tag]))
        listing, secret = filters.key(), deployment.cursor_secret(self.session, self.settings.cursor_secret)
        if cursor:
            pos = pagination.decode_cursor(secret, self.scope.tenant_id, listing, cursor)
            query = query.where(tuple_(Memory.recorded_at, Memory.id) < tuple_(pos.recorded_at, pos.id))
        rows = list(self.session.scalars(
            query.order_by(Memory.recorded_at.desc(), Memory.id.desc()).limit(limit + 1)
        ))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            last = rows[-1]
            next_cursor = pagination.encode_cursor(
                secret, self.scope.tenant_id, listing, pagination.Position(last.recorded_at, last.id)
            )
        return rows, next_cursor

    def count(self) -> int:
        return int(self.session.scalar(self.scope.select(func.count(Memory.id))) or 0)

    # ---- deletion -----------------------------------------------------------------------------
    def delete(self, memory_id: uuid.UUID) -> DeletionReport:
        self.get(memory_id)
        report = self._delete_with_cascade([memory_id])
        if self.hooks is not None:
            self.hooks.deleted(self.session, self.scope, report)
        return report

    def erase(self, selector: ScopeSelector) -> DeletionReport:
        """Delete everything of one user / agent / session (within the key's own restriction)."""
        filters = {k: v for k, v in selector.model_dump().items() if v is not None}
        if not filters:
            raise InvalidInput("name at least one of user_id, agent_id, session_id to erase")
        query = self.scope.select(Memory.id)
        for name, value in filters.items():
            query = query.where(getattr(Memory, name) == value)
        ids = list(self.session.scalars(query))
        report = self._delete_with_cascade(ids)
        if self.hooks is not None:
            self.hooks.deleted(self.session, self.scope, report)
        # Jobs about the erased scope carry its ids in their scope/result; remove them too (those this key sees).
        removed = jobs.delete_about(self.session, self.scope.tenant_id, filters, self.scope.user_ids,
                                    self.scope.agent_ids)
        report.jobs_removed = len(removed)
        report.idempotency_records_removed += idempotency.forget(self.session, self.scope.tenant_id, removed)
        return report

    def _delete_with_cascade(self, ids: list[uuid.UUID]) -> DeletionReport:
        """Delete `ids`; derived memories whose every source is gone go too (recursively).

        Derived memories that keep at least one source are reported as orphaned so the lifecycle
        can re-derive them from what is left.
        """
        doomed = set(ids)
        derived_deleted: list[uuid.UUID] = []
        orphaned: set[uuid.UUID] = set()
        frontier = set(ids)
        while frontier:
            # Only derived memories inside the caller's scope: a key restricted to some users/agents never
            # deletes (or names) another's row, even one derived from what it erases.
            children = set(self.session.scalars(
                select(MemoryLink.src_id).join(Memory, Memory.id == MemoryLink.src_id).where(
                    MemoryLink.relation == "derived_from", MemoryLink.dst_id.in_(frontier),
                    MemoryLink.tenant_id == self.scope.tenant_id, *self.scope.where(),
                )
            )) - doomed
            frontier = set()
            for child in sorted(children):
                sources = set(self.session.scalars(
                    select(MemoryLink.dst_id).where(
                        MemoryLink.src_id == child, MemoryLink.relation == "derived_from"
                    )
                ))
                if sources <= doomed:
                    doomed.add(child)
                    derived_deleted.append(child)
                    frontier.add(child)
                else:
                    orphaned.add(child)
        orphaned -= doomed
        tokens = memtoken_store.count(self.session, self.scope.tenant_id, list(doomed))  # they go by cascade
        links = self.session.scalar(
            select(func.count()).select_from(MemoryLink).where(
                (MemoryLink.src_id.in_(doomed)) | (MemoryLink.dst_id.in_(doomed))
            )
        ) or 0
        if doomed:
            self.session.execute(
                delete(Memory).where(*self.scope.where(), Memory.id.in_(doomed))
            )
        # Stored write responses that would replay a deleted memory (its content) go with it.
        forgotten = idempotency.forget(self.session, self.scope.tenant_id, doomed)
        self.session.flush()
        return DeletionReport(
            deleted=list(ids), derived_deleted=derived_deleted, derived_orphaned=sorted(orphaned),
            links_removed=int(links), memory_tokens_removed=tokens, idempotency_records_removed=forgotten,
        )
