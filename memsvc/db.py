"""Engine and sessions. One synchronous SQLAlchemy path shared by the API and the workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

from memsvc.config import Settings, get_settings
from memsvc.logsafe import sensitive_logging

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_embedded_url: str | None = None


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` URLs and use the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def resolve_database_url(settings: Settings | None = None) -> str:
    """MEMSVC_DATABASE_URL if set, else the embedded server under the state directory (started on demand)."""
    global _embedded_url
    settings = settings or get_settings()
    if settings.database_url:
        return normalize_url(settings.database_url)
    with _lock:
        if _embedded_url is None:
            from memsvc.embedded import start_embedded_postgres

            _embedded_url = start_embedded_postgres(settings.state_path)
        return _embedded_url


def _engine_options(url: str, settings: Settings) -> dict[str, Any]:
    """Pool options that let a process ride out a database restart: every checkout pings its connection first
    (a dead one is replaced, and a disconnect seen mid-query drops the whole pool's older connections); a
    connection attempt or a wait for a free connection gives up after a bound, so a request fails fast (503)
    instead of hanging while the database is away."""
    options: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20,
                               "pool_timeout": settings.db_pool_timeout_s}
    if "connect_timeout" not in make_url(url).query:
        options["connect_args"] = {"connect_timeout": settings.db_connect_timeout_s}
    return options


def _check_client_while_waiting(dbapi_connection: Any, _record: Any) -> None:
    """Have the server look every 2 s, while a statement of ours runs or waits for a lock, whether we are still
    there. A worker killed mid-job otherwise leaves its backend waiting on, and holding, the job's advisory lock
    (memsvc.jobs: the worker's liveness) until that statement ends, and the job looks alive all the while.
    PostgreSQL 14+; older servers just go without."""
    if getattr(getattr(dbapi_connection, "info", None), "server_version", 0) >= 140000:
        with dbapi_connection.cursor() as cur:
            cur.execute("SET client_connection_check_interval = 2000")
        dbapi_connection.commit()


def get_engine(url: str | None = None) -> Engine:
    url = normalize_url(url) if url else resolve_database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            settings = get_settings()
            # SQL parameters (memory contents, search text, key hashes) stay out of error messages, and so out
            # of logs, unless debug logging is asked for (memsvc.logsafe).
            engine = create_engine(url, hide_parameters=not sensitive_logging(settings),
                                   **_engine_options(url, settings))
            event.listen(engine, "connect", _check_client_while_waiting)
            _engines[url] = engine
        return engine


def session_factory(engine: Engine | None = None) -> sessionmaker[Session]:
    return sessionmaker(bind=engine or get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = session_factory(engine)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines(*, close: bool = True) -> None:
    """Forget every engine of this process. close=False: in a forked child, whose pooled connections are the
    parent's sockets, drop them without closing them under the parent."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=close)
        _engines.clear()
