"""The retrieval hot path's statements run as SQL text, with the caller's scope and filters rendered in.

Why not SQLAlchemy Core here: building a Core statement and computing its cache key costs 1 to 8 ms of
Python per statement (measured on the neighbour lookup of 60 hits: 10.3 ms as Core, 1.8 ms as text),
and a context request runs about ten of them. The scope and filter clauses are still built in one place
(`MemoryScope.where`, `search.filter_clauses`) and only compiled here, once per request, so tenant
scoping has not moved: every statement of this path takes its `Where`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import and_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from memsvc.models import Memory

_QUALIFIED = re.compile(r"\bmemories\.")


@dataclass(frozen=True)
class Where:
    """Scope + filter clauses as SQL over the `memories` table, with their bind parameters.

    The compiled names (tenant_id_1, kind_1_1, ...) never start with "p_": statements name their own
    parameters p_... so the two sets cannot collide."""

    sql: str
    params: Mapping[str, Any]

    def on(self, alias: str) -> str:
        """The same clause for `memories` under another name (a self-join's second copy)."""
        return _QUALIFIED.sub(alias + ".", self.sql)


def where_of(session: Session, clauses: Iterable[ColumnElement[bool]]) -> Where:
    clauses = list(clauses)
    if not clauses:
        return Where("true", {})
    compiled = and_(*clauses).compile(dialect=session.get_bind().dialect,
                                      compile_kwargs={"render_postcompile": True})
    return Where(str(compiled), dict(compiled.params))


def rows(session: Session, sql: str, where: Where | None = None, **params: Any) -> list[Any]:
    """Run `sql` (pyformat placeholders: %(p_name)s) on the session's connection and transaction; rows
    as named tuples, read in the binary protocol (no text parsing of ids, times and vectors; a vector
    column arrives as the bytes of its `*_send` form). Every result column needs a distinct name."""
    bound = {**where.params, **params} if where is not None else params
    connection = session.connection().connection.driver_connection
    with connection.cursor(binary=True, row_factory=namedtuple_row) as cursor:  # type: ignore[union-attr]
        cursor.execute(sql, bound)
        return cursor.fetchall()


Statement = tuple[str, "Where | None", Mapping[str, Any]]


def pipelined(session: Session, statements: Sequence[Statement]) -> list[list[Any]]:
    """Several statements that do not need each other's results, sent in one round trip (psycopg's pipeline
    mode), each one's rows in order; otherwise as `rows`. On a loaded 2-core machine a round trip is 2-3 ms
    of waiting to be scheduled, whatever the statement: the planner switches around the nearest-neighbour
    scans cost as much as the scans. An error in any of them is raised here (the transaction is then
    aborted, as with `rows`)."""
    connection = session.connection().connection.driver_connection
    cursors = []
    try:
        with connection.pipeline():  # type: ignore[union-attr]
            for sql, where, params in statements:
                cursor = connection.cursor(binary=True, row_factory=namedtuple_row)  # type: ignore[union-attr]
                cursors.append(cursor)
                cursor.execute(sql, {**where.params, **params} if where is not None else dict(params))
        return [cursor.fetchall() for cursor in cursors]  # leaving the block waited for every result
    finally:
        for cursor in cursors:
            cursor.close()


def vector_text(vector: Sequence[float]) -> str:
    """pgvector's text form; the statement casts it (%(p_vec)s::vector)."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


def column(attribute: str) -> str:
    """ORM attribute name -> table column name (`metadata_` is stored as "metadata")."""
    return Memory.__mapper__.attrs[attribute].columns[0].name  # type: ignore[union-attr,no-any-return]


# Labels the writer keeps in a memory's metadata, selected like columns: who said it, and in what role.
METADATA_LABELS = frozenset({"speaker", "role"})


def select_list(alias: str, attributes: Sequence[str]) -> str:
    """`alias.column AS attribute, ...` for ORM attribute names (rows come back under those names); a name of
    METADATA_LABELS is that metadata key's text."""
    return ", ".join(f"{alias}.metadata->>'{a}' AS {a}" if a in METADATA_LABELS else f"{alias}.{column(a)} AS {a}"
                     for a in attributes)
