"""Walking many memories in short transactions, for jobs that rewrite a derived column (memsvc.sparse_backfill,
memsvc.reembed).

Keyset order by id: a row the caller did not change (deleted, or rewritten meanwhile) is not read again, and
each batch commits on its own, so a long walk neither holds locks nor loses its work when interrupted; the next
run starts where this one stopped, because the rows it did no longer match the caller's condition."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session, sessionmaker

from memsvc.models import Memory


def in_batches(sessions: sessionmaker[Session], query: Select[Any], *, batch: int,
               max_rows: int | None = None) -> Iterator[tuple[Session, list[Any]]]:
    """(session, rows) of `query` (rows with an `id`), `batch` at a time in id order, up to `max_rows` (None:
    all). Each batch is one transaction, committed when the caller asks for the next."""
    done = 0
    last = None
    while max_rows is None or done < max_rows:
        size = batch if max_rows is None else min(batch, max_rows - done)
        with sessions() as session, session.begin():
            page = query if last is None else query.where(Memory.id > last)
            rows = list(session.execute(page.order_by(Memory.id).limit(size)).all())
            if not rows:
                return
            yield session, rows
            done += len(rows)
            last = rows[-1].id
