"""Logs hold no memory content and no key material (unless MEMSVC_LOG_LEVEL=DEBUG).

Real failures against the real database, logs captured: a write that Postgres refuses (a CHECK constraint,
whose DETAIL quotes the whole row, content included), a search and an authentication whose column is gone
(their SQL parameters are the search terms and the key's hash). The content, the search text, the key, its
prefix and its hash must appear in no log record, message or traceback.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from memsvc.tenancy import hash_key
from tests.conftest import auth


@pytest.fixture()
def failing_client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The app, answering 5xx instead of raising into the test."""
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@contextmanager
def _renamed(engine: Any, table: str, column: str) -> Iterator[None]:
    """A column renamed for the duration: statements that read it fail (UndefinedColumn, a 500)."""
    with engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} RENAME COLUMN {column} TO {column}_gone"))
    try:
        yield
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table} RENAME COLUMN {column}_gone TO {column}"))


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


def _assert_clean(logged: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in logged, f"{secret!r} is in the log:\n{logged[:3000]}"


def test_a_failing_write_logs_no_content_and_no_key(failing_client, engine, make_tenant, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO)
    key = make_tenant()
    content = f"zebra-{uuid.uuid4().hex} lives at 12 Acacia Avenue"
    constraint = f"test_refuse_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:  # NOT VALID: only new rows are checked; dropped again below
        conn.execute(text(f"ALTER TABLE memories ADD CONSTRAINT {constraint} "
                          f"CHECK (content NOT LIKE '%{content[:38]}%') NOT VALID"))
    try:
        response = failing_client.post("/v1/memories", headers=auth(key), json={"content": content, "user_id": "u"})
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE memories DROP CONSTRAINT {constraint}"))
    assert response.status_code >= 500, response.text
    logged = _logged(caplog)
    assert constraint in logged  # the failure is in the log, with its traceback...
    _assert_clean(logged, content[:38], "Acacia", key, key[:10], hash_key(key))  # ...but not what was written


def test_a_failing_search_and_authentication_log_no_query_and_no_key(failing_client, engine, make_tenant,  # type: ignore[no-untyped-def]
                                                                     caplog) -> None:
    caplog.set_level(logging.INFO)
    key = make_tenant()
    query = f"where does okapi{uuid.uuid4().hex[:12]} live"
    with _renamed(engine, "memories", "search_tsv"):  # the full-text statement's parameters: the query's terms
        search = failing_client.post("/v1/search", headers=auth(key), json={"query": query, "user_id": "u"})
    with _renamed(engine, "api_keys", "key_hash"):  # the authentication's parameter: the key's hash
        listed = failing_client.get("/v1/memories", headers=auth(key))
    assert search.status_code == 500 and listed.status_code == 500, (search.text, listed.text)
    logged = _logged(caplog)
    assert "search_tsv" in logged and "key_hash" in logged  # the failures are in the log...
    _assert_clean(logged, query, "okapi", key, key[:10], hash_key(key))  # ...but not the query or the key


def test_the_cleaning_itself(caplog) -> None:  # type: ignore[no-untyped-def]
    from memsvc.config import Settings
    from memsvc.logsafe import install

    install(Settings(log_level="INFO"))
    caplog.set_level(logging.INFO)
    logging.getLogger("memsvc.test").warning("sent %s with Authorization: Bearer %s", "msk_abcdef123456",
                                             "sk-live-XYZ")
    # uvicorn's access logger does not propagate to caplog: the record as the factory makes it.
    access = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/v1/search?q=secret+diary", "1.1", 200), None)
    assert access.getMessage() == '127.0.0.1:1 - "GET /v1/search?[query redacted] HTTP/1.1" 200'
    error = ValueError("boom\nDETAIL:  Failing row contains (secret diary).\n[parameters: {'c': 'secret diary'}]"
                       "\n(Background on this error at: https://sqlalche.me/e/20/gkpj)")
    try:
        raise error  # the traceback quotes this line: nothing on it to hide
    except ValueError:
        logging.getLogger("memsvc.test").exception("failed")
    logged = _logged(caplog)
    _assert_clean(logged, "abcdef123456", "sk-live-XYZ", "secret", "diary")
    assert "ValueError: boom" in logged and "DETAIL:" in logged
    install(Settings(log_level="DEBUG"))  # debug logging asked for: nothing is cleaned
    try:
        logging.getLogger("memsvc.test").warning("key %s", "msk_abcdef123456")
        assert "msk_abcdef123456" in caplog.records[-1].getMessage()
    finally:
        install(Settings(log_level="INFO"))
