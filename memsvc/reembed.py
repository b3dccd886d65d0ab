"""Changing the embedding model: stored vectors follow through a re-embed, never silently.

The dense column holds vectors of one dimension (pgvector's HNSW index needs a fixed one), so the model behind
`MEMSVC_EMBEDDING_MODEL` and the column must agree. After every migration `fit_column` checks: an empty column
takes the configured dimension at once; one that holds vectors of another size stops the start with the command
to run. `memsvc reembed` (memsvc.cli) then resizes the column when the size changes (the old vectors cannot be
compared with the new model's, so they are cleared: the count is reported) and embeds every memory whose vector
another model made, in short transactions keyed by id: interrupted, it starts again where it stopped, and a
memory rewritten meanwhile (its new vector already the new model's) is left alone.

While it runs, search still answers from full text and learned-sparse terms; a memory waiting for its new
vector is missing only from the dense list. Vectors a client supplied (`embedding_model` 'client') are kept
unless the size changes, since the service cannot remake them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import Connection, Engine, and_, bindparam, case, cast, func, null, or_, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from memsvc.batches import in_batches
from memsvc.db import session_factory
from memsvc.models import CLIENT_EMBEDDING, Memory
from memsvc.startup import StartupError

if TYPE_CHECKING:
    from memsvc.embeddings import Embedder


class EmbeddingColumnMismatch(StartupError):
    def __init__(self, stored: int, column_dim: int, wanted: int) -> None:
        super().__init__(
            f"the database holds {stored} vectors of {column_dim} dimensions but the embedding model is configured "
            f"for {wanted} (MEMSVC_EMBEDDING_MODEL / MEMSVC_EMBEDDING_DIM); run `memsvc reembed` to re-embed the "
            f"memories with the new model, or configure the model that made them")


@dataclass(frozen=True)
class Resized:
    from_dim: int
    to_dim: int
    cleared: int  # vectors removed (full and half precision rows alike)
    cleared_client: int  # of them, vectors a client had supplied (the service re-embeds those memories too)


def column_dim(conn: Connection) -> int:
    """The dense column's dimension (pgvector keeps it as the type modifier)."""
    return int(conn.scalar(text(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'memories'::regclass AND attname = 'embedding'")))


def stored_vectors(conn: Connection) -> tuple[int, int]:
    """How many memories hold a vector (hot or archived), and how many of those a client supplied."""
    row = conn.execute(text(
        "SELECT count(*) AS n, count(*) FILTER (WHERE embedding_model = :client) AS c FROM memories "
        "WHERE embedding IS NOT NULL OR embedding_half IS NOT NULL"), {"client": CLIENT_EMBEDDING}).one()
    return int(row.n), int(row.c)


def resize(conn: Connection, dim: int) -> Resized:
    """Give the dense columns `dim` dimensions, clearing the vectors they held, and rebuild their indexes.
    The caller commits: one transaction, so a failure leaves the old column and its vectors as they were."""
    if not 1 <= dim <= 16000:
        raise ValueError(f"an embedding dimension must be 1..16000, not {dim}")
    before = column_dim(conn)
    cleared, client = stored_vectors(conn)
    conn.execute(text("DROP INDEX IF EXISTS ix_memories_embedding"))
    conn.execute(text("DROP INDEX IF EXISTS ix_memories_embedding_bq"))
    conn.execute(text(
        f"ALTER TABLE memories ALTER COLUMN embedding TYPE vector({dim}) USING NULL, "
        f"ALTER COLUMN embedding_half TYPE halfvec({dim}) USING NULL"))
    conn.execute(text("UPDATE memories SET embedding_model = NULL WHERE embedding_model IS NOT NULL"))
    # The same indexes as migrations 0001 and 0002 build, at the new size.
    conn.execute(text("CREATE INDEX ix_memories_embedding ON memories USING hnsw (embedding vector_cosine_ops) "
                      "WITH (m = 16, ef_construction = 64)"))
    conn.execute(text(f"CREATE INDEX ix_memories_embedding_bq ON memories USING hnsw "
                      f"((binary_quantize(embedding_half)::bit({dim})) bit_hamming_ops) "
                      f"WITH (m = 8, ef_construction = 32)"))
    return Resized(before, dim, cleared, client)


def fit_column(conn: Connection, dim: int) -> Resized | None:
    """After migrations: an empty column takes `dim`; one holding vectors of another size is an error."""
    have = column_dim(conn)
    if have == dim:
        return None
    stored, _ = stored_vectors(conn)
    if stored:
        raise EmbeddingColumnMismatch(stored, have, dim)
    return resize(conn, dim)


def _needs(model_name: str) -> object:
    """Memories whose vector the current model did not make (none, another model's; a client's stays)."""
    return or_(Memory.embedding_model.is_(None),
               and_(Memory.embedding_model != model_name, Memory.embedding_model != CLIENT_EMBEDDING))


def pending(session: Session, model_name: str) -> int:
    """How many memories, across tenants, still wait for the current model's vector."""
    return int(session.scalar(select(func.count()).select_from(Memory).where(_needs(model_name))) or 0)


def fill_embeddings(sessions: sessionmaker[Session], embedder: Embedder, *, batch: int = 128,
                    progress: Callable[[int], None] | None = None) -> int:
    """Embed every memory that needs the current model's vector, `batch` a transaction; returns how many.
    An archived memory's vector goes to its half-precision column, as archiving would have put it."""
    need = _needs(embedder.name)
    table = Memory.__table__
    archived = table.c.tier == "archived"
    vector = cast(bindparam("b_vec", type_=table.c.embedding.type), Vector())
    statement = (
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.content_hash == bindparam("b_hash"), need)
        .values(embedding=case((archived, null()), else_=vector),
                embedding_half=case((archived, cast(vector, HALFVEC())), else_=null()),
                embedding_model=embedder.name)
    )
    done = 0
    for session, rows in in_batches(sessions, select(Memory.id, Memory.content, Memory.content_hash).where(need),
                                    batch=batch):
        vectors = embedder.embed([r.content for r in rows])
        session.execute(statement, [{"b_id": r.id, "b_hash": r.content_hash, "b_vec": v.tolist()}
                                    for r, v in zip(rows, vectors, strict=True)])
        done += len(rows)
        if progress is not None:
            progress(done)
    return done


class ClearNeedsConsent(Exception):
    """A resize would clear stored vectors and the caller did not agree to it."""

    def __init__(self, resized_from: int, to: int, stored: int, client: int) -> None:
        super().__init__(f"the dense column has {resized_from} dimensions and the model makes {to}: resizing it "
                         f"clears {stored} stored vectors ({client} of them supplied by clients, which cannot be "
                         f"remade and are replaced by the model's), then re-embeds every memory")


@dataclass(frozen=True)
class Reembedded:
    resized: Resized | None
    embedded: int
    model: str


def reembed_all(engine: Engine, embedder: Embedder, *, clear_ok: bool = False, batch: int = 128,
                progress: Callable[[int, int], None] | None = None) -> Reembedded:
    """Bring every stored vector to `embedder`'s model: resize the column if its size differs (only with
    `clear_ok` when vectors would be cleared), then fill. `progress(done, total)` after each batch."""
    resized = None
    with engine.begin() as conn:
        have = column_dim(conn)
        if have != embedder.dim:
            stored, client = stored_vectors(conn)
            if stored and not clear_ok:
                raise ClearNeedsConsent(have, embedder.dim, stored, client)
            resized = resize(conn, embedder.dim)
    sessions = session_factory(engine)
    with sessions() as session:
        total = pending(session, embedder.name)
    done = fill_embeddings(sessions, embedder, batch=batch,
                           progress=None if progress is None else lambda n: progress(n, total))
    return Reembedded(resized, done, embedder.name)
