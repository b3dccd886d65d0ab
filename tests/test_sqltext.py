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


def test_pipelined_statements_run_in_order_in_one_transaction_and_raise_errors(sessions) -> None:  # type: ignore[no-untyped-def]
    import psycopg

    with sessions() as s:
        before = sqltext.rows(s, "SELECT current_setting('enable_seqscan') AS v")[0].v
        switched, seen, restored = sqltext.pipelined(s, [
            ("SELECT set_config('enable_seqscan', 'off', true) AS v", None, {}),
            ("SELECT current_setting('enable_seqscan') AS v, %(p_x)s::int AS x", None, {"p_x": 7}),
            ("SELECT set_config('enable_seqscan', %(p_v)s, true) AS v", None, {"p_v": before}),
        ])
        assert switched[0].v == "off" and (seen[0].v, seen[0].x) == ("off", 7) and restored[0].v == before
        assert sqltext.rows(s, "SELECT current_setting('enable_seqscan') AS v")[0].v == before
        with pytest.raises(psycopg.errors.DivisionByZero):
            sqltext.pipelined(s, [("SELECT 1 AS a", None, {}), ("SELECT 1 / 0 AS b", None, {})])
        s.rollback()
        assert sqltext.rows(s, "SELECT 2 AS a")[0].a == 2  # the connection left pipeline mode
