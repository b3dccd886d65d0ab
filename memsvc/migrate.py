"""Run Alembic migrations programmatically (used by `memsvc migrate`, `memsvc serve` and the tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, pool, text

from memsvc.db import normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    if not MIGRATIONS_DIR.is_dir():
        raise RuntimeError(f"migrations not found at {MIGRATIONS_DIR}; install memsvc from its source tree")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = normalize_url(url)
    return cfg


# Several API replicas may start at once (docker-compose, Kubernetes); only one migrates at a time.
_MIGRATION_LOCK = 0x6D656D737663  # "memsvc"


def _locked(url: str, action: Callable[[Config], None]) -> None:
    engine = create_engine(normalize_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
            try:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = conn
                action(cfg)
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
                conn.commit()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head", *, embedding_dim: int | None = None, fit_embeddings: bool = True) -> None:
    """Migrate; at head, also fit the dense column to the configured embedding size (memsvc.reembed.fit_column:
    an empty one is resized, one holding vectors of another size is a StartupError naming `memsvc reembed`,
    which migrates without that check and resizes with the operator's consent)."""
    def run(cfg: Config) -> None:
        command.upgrade(cfg, revision)
        if revision == "head" and fit_embeddings:
            from memsvc.config import get_settings
            from memsvc.reembed import fit_column

            fit_column(cfg.attributes["connection"], embedding_dim or get_settings().embedding_dim)

    _locked(url, run)


def downgrade(url: str, revision: str = "base") -> None:
    _locked(url, lambda cfg: command.downgrade(cfg, revision))


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = create_engine(normalize_url(url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
