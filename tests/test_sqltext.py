"""The SQL-text form of scope and filter clauses that the retrieval hot path runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from memsvc.db import session_factory
from memsvc.retrieval import sqltext
from memsvc.retrieval.search import SearchFilters, filter_clauses
from memsvc.scoping import MemoryScope


@pytest.fixture()
def sessions(engine):  # type: ignore[no-untyped-def]
    return session_factory(engine)


def test_where_carries_scope_and_filters_and_renames_the_table(sessions) -> None:  # type: ignore[no-untyped-def]
    tenant = uuid.uuid4()
    scope = MemoryScope(tenant, user_ids=("alice",))
    with sessions() as s:
        where = sqltext.where_of(s, [*scope.where(), *filter_clauses(SearchFilters(tags=("x",)), datetime.now(UTC))])
        values = list(where.params.values())
        assert tenant in values and "alice" in values and ["x"] in values
        assert "memories.user_id IN" in where.sql and "memories.tags &&" in where.sql
        assert "memories.tenant_id" in where.sql and "m.tenant_id" in where.on("m")
        assert "memories." not in where.on("m")
        # It runs, and with no memories of that tenant it finds none.
        assert sqltext.rows(s, f"SELECT count(*) AS n FROM memories WHERE {where.sql}", where)[0].n == 0
        assert sqltext.where_of(s, []).sql == "true"


def test_rows_read_vectors_as_bytes_and_need_distinct_names(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        row = sqltext.rows(s, "SELECT '[1,2,3]'::vector::halfvec AS v, 1 AS a, 'x' AS b")[0]
        assert isinstance(row.v, bytes) and (row.a, row.b) == (1, "x")
        s.execute(text("SELECT 1"))  # the ORM session goes on in the same transaction
