"""Shared fixtures: a real PostgreSQL 18 + pgvector (embedded, or MEMSVC_TEST_DATABASE_URL) and the API.

Registered once for the whole suite by the root conftest.py, so tests/ and clients/python/tests share
one database server."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT_KEY = "msk_test_root_key_for_the_suite_only"


@pytest.fixture(scope="session")
def state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="memsvc-test-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def database_url(state_dir: Path) -> str:
    from memsvc import migrate
    from memsvc.embedded import start_embedded_postgres

    url = os.environ.get("MEMSVC_TEST_DATABASE_URL") or start_embedded_postgres(state_dir)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def settings(database_url: str, state_dir: Path):  # type: ignore[no-untyped-def]
    from memsvc.config import Settings

    return Settings(
        database_url=database_url, state_dir=state_dir, admin_key=ROOT_KEY,
        redis_url=os.environ.get("MEMSVC_REDIS_URL"), max_content_chars=10_000,
    )


@pytest.fixture(scope="session")
def engine(settings):  # type: ignore[no-untyped-def]
    from memsvc import tenancy
    from memsvc.db import get_engine, session_scope

    engine = get_engine(settings.database_url)
    with session_scope(engine) as session:
        tenancy.bootstrap(session, ROOT_KEY)
    return engine


@pytest.fixture(scope="session")
def app(settings, engine):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(settings, engine)


@pytest.fixture(scope="session")
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(app) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture()
def make_tenant(client: TestClient):  # type: ignore[no-untyped-def]
    """Create a fresh tenant and return a key for it with the given scopes/restrictions."""

    def factory(scopes: tuple[str, ...] = ("read", "write", "admin"), **restrict: list[str]) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        tenant = client.post("/v1/admin/tenants", json={"name": name}, headers=auth(ROOT_KEY))
        assert tenant.status_code == 201, tenant.text
        key = client.post(
            "/v1/admin/keys", headers=auth(ROOT_KEY),
            json={"scopes": list(scopes), "tenant_id": tenant.json()["id"], **restrict},
        )
        assert key.status_code == 201, key.text
        return key.json()["key"]

    return factory


@pytest.fixture()
def key(make_tenant) -> str:  # type: ignore[no-untyped-def]
    return make_tenant()
