"""Pagination cursors are signed with a secret of the deployment (memsvc.deployment): API processes on one
database accept each other's cursors; another deployment refuses them with a 400 saying what to do."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from api.app import create_app
from memsvc import migrate, tenancy
from memsvc.db import get_engine, normalize_url, session_factory, session_scope
from memsvc.models import DeploymentSecret, Tenant
from tests.conftest import auth
from tests.lifecycle_helpers import tenant_of_key
from tests.test_migrations import _fresh_database

VECTOR = [1.0] + [0.0] * 383  # given, so no model is needed


@pytest.fixture(scope="module")
def other_database(database_url: str) -> str:
    url = _fresh_database(database_url)
    migrate.upgrade(url)
    return url


@pytest.fixture()
def paged(client: TestClient, make_tenant: Any, engine: Any) -> Iterator[tuple[str, uuid.UUID, str]]:
    """(key, its tenant, the cursor of the first of two pages of its memories)."""
    key = make_tenant()
    for text in ("first written", "second written"):
        r = client.post("/v1/memories", json={"content": text, "embedding": VECTOR}, headers=auth(key))
        assert r.status_code == 201, r.text
    page = client.get("/v1/memories", params={"limit": 1}, headers=auth(key)).json()
    assert page["next_cursor"] and page["items"][0]["content"] == "second written"
    yield key, tenant_of_key(session_factory(engine), key), page["next_cursor"]


def _same_tenant_in(url: str, tenant_id: uuid.UUID, key: str) -> None:
    """The tenant and key of the first deployment, with the same id and secret, in another database: only the
    signing secret differs."""
    with session_scope(get_engine(url)) as session:
        session.add(Tenant(id=tenant_id, name=f"copy-{tenant_id}", policy={}))
        session.flush()
        tenancy.create_key(session, tenant_id, ["read", "write"], plaintext=key)


def _second_page(app_client: TestClient, key: str, cursor: str) -> Any:
    return app_client.get("/v1/memories", params={"limit": 1, "cursor": cursor}, headers=auth(key))


def test_processes_on_one_database_accept_each_others_cursors(settings, paged) -> None:  # type: ignore[no-untyped-def]
    key, _, cursor = paged
    # A second API process: its own app and connection pool on the same database.
    second = TestClient(create_app(settings, create_engine(normalize_url(settings.database_url))))
    r = _second_page(second, key, cursor)
    assert r.status_code == 200, r.text
    assert [m["content"] for m in r.json()["items"]] == ["first written"]


def test_another_deployment_refuses_the_cursor_with_a_clear_400(settings, engine, paged, other_database) -> None:  # type: ignore[no-untyped-def]
    key, tenant_id, cursor = paged
    _same_tenant_in(other_database, tenant_id, key)
    other = TestClient(create_app(settings.model_copy(update={"database_url": other_database}),
                                  get_engine(other_database)))
    assert other.get("/v1/memories", params={"limit": 1}, headers=auth(key)).status_code == 200
    r = _second_page(other, key, cursor)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"]["code"] == "invalid_cursor", body
    assert "not issued by this deployment" in body["error"]["message"], body
    # Each database made its own secret at random; nothing is a constant.
    secrets = []
    for url in (settings.database_url, other_database):
        with session_scope(get_engine(url)) as session:
            secrets.append(session.scalar(select(DeploymentSecret.value).where(DeploymentSecret.name == "cursor")))
    assert all(s and len(s) >= 32 for s in secrets) and secrets[0] != secrets[1]


def test_a_configured_secret_overrides_the_deployments(settings, paged, other_database) -> None:  # type: ignore[no-untyped-def]
    key, tenant_id, _ = paged
    configured = "one secret for two deployments (MEMSVC_CURSOR_SECRET)"
    first = TestClient(create_app(settings.model_copy(update={"cursor_secret": configured}),
                                  get_engine(settings.database_url)))
    cursor = first.get("/v1/memories", params={"limit": 1}, headers=auth(key)).json()["next_cursor"]
    _same_tenant_in(other_database, tenant_id, key)
    other = TestClient(create_app(settings.model_copy(update={"database_url": other_database,
                                                              "cursor_secret": configured}),
                                  get_engine(other_database)))
    r = _second_page(other, key, cursor)
    assert r.status_code == 200 and r.json()["items"] == [], r.text  # accepted; that database has no memories
