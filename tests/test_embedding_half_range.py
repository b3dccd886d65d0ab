"""A stored embedding with a value beyond a 16-bit float (written before the 422 for such values existed)
made every search that found it a 500 (search reads candidates' vectors as halfvec); migration 0014 divides
such vectors by their norm, after which the memory is found again, ranked by the same cosine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import auth

MIGRATION = Path(__file__).resolve().parent.parent / "migrations" / "versions" / "0014_embeddings_in_half_range.py"


def _rescale_statement() -> str:
    spec = importlib.util.spec_from_file_location("migration_0014", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.RESCALE)


def test_a_stored_embedding_beyond_a_16_bit_float_is_rescaled_and_found(client, key, engine) -> None:  # type: ignore[no-untyped-def]
    mid = client.post("/v1/memories", headers=auth(key),
                      json={"content": "The harbour crane lifts blue containers at dawn."}).json()["id"]
    other = client.post("/v1/memories", headers=auth(key), json={"content": "Lunch is at noon."}).json()["id"]
    with engine.begin() as conn:  # as a write from before the 422 stored it: one value far beyond 65504
        stored = [float(v) for v in conn.execute(text("SELECT embedding::text FROM memories WHERE id = :id"),
                                                  {"id": mid}).scalar_one().strip("[]").split(",")]
        big = [v * 1e6 for v in stored]
        big[0] = 1e7
        conn.execute(text("UPDATE memories SET embedding = CAST(:v AS vector) WHERE id = :id"),
                     {"v": "[" + ",".join(map(str, big)) + "]", "id": mid})
    query = {"query": "harbour crane containers", "limit": 5}
    with pytest.raises(Exception, match="halfvec"):  # the 500 it was
        client.post("/v1/search", headers=auth(key), json=query)

    with engine.begin() as conn:
        repaired = conn.execute(text(_rescale_statement())).rowcount
        norm_of = text("SELECT vector_norm(embedding) FROM memories WHERE id = :id")
        norm = conn.execute(norm_of, {"id": mid}).scalar_one()
        untouched = conn.execute(norm_of, {"id": other}).scalar_one()
    assert repaired >= 1
    assert norm == pytest.approx(1.0, abs=1e-4)
    assert untouched == pytest.approx(1.0, abs=1e-3)  # a vector within range is left as it was (the model's)
    found = client.post("/v1/search", headers=auth(key), json=query)
    assert found.status_code == 200, found.text
    assert found.json()["hits"][0]["memory"]["id"] == mid
