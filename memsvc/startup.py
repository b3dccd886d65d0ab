"""Checks `memsvc serve` makes before it starts anything: one serve per state directory, the port free, and a
configured database that answers and has pgvector. Each failure is a StartupError whose text is one paragraph
(what, why, what to do), printed as is instead of a traceback."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy.engine import make_url


class StartupError(Exception):
    """A start-up failure the operator can fix; str() is the paragraph to show them."""


@dataclass
class StateLock:
    path: Path
    file: IO[str]

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()


def lock_state_dir(state_dir: Path) -> StateLock:
    """An exclusive flock on state_dir/serve.lock for as long as this process lives (the kernel drops it when
    the process dies, however it dies). The file holds the owner's pid, for the message a second serve shows."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "serve.lock"
    f = open(path, "a+")  # noqa: SIM115 - held for the life of the process
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise StartupError(
            f"Another `memsvc serve` (pid {holder}) is already running on the state directory {state_dir}. "
            "Two servers on one state directory would share its embedded database and take each other's jobs, "
            f"so this one stops here. Use that server, stop it first (kill {holder}), or give this one its own "
            "directory with MEMSVC_STATE_DIR."
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return StateLock(path, f)


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind host:port now, before anything starts, and hand the socket to the server later. It does not listen
    yet, so a client that comes early is refused instead of waiting for a server still starting."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP,
    # and accepted connections inherit this one's. With Nagle on, a response written as headers then body waits
    # for the client's delayed ACK of the headers: ~40 ms on every request after the first on a kept-alive
    # connection (GET /healthz 44 ms instead of ~2; bench/latency.py, docs/benchmarks.md).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"memsvc cannot listen on {host}:{port}: {exc.strerror or exc}. Another program (perhaps another "
            "memsvc) already uses that address, so nothing was started. Stop that program, or choose another "
            "port with --port or MEMSVC_PORT (and another address with --host or MEMSVC_HOST)."
        ) from None
    sock.set_inheritable(False)
    return sock


def safe_url(url: str) -> str:
    """The URL without its password, fit for a message or a log."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def check_database(url: str, timeout_s: float = 5.0) -> None:
    """Connect to the configured database and make sure pgvector can be used there."""
    import psycopg

    shown = safe_url(url)
    try:
        parsed = make_url(url)
        conninfo = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    except Exception as exc:
        raise StartupError(
            f"MEMSVC_DATABASE_URL ({shown}) is not a database URL memsvc can read ({exc}). It should look like "
            "postgresql://user:password@host:5432/dbname. Fix the variable, or unset it to use the embedded "
            "database under MEMSVC_STATE_DIR."
        ) from None
    try:
        with psycopg.connect(conninfo, connect_timeout=max(1, round(timeout_s))) as conn:
            available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone()
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split())[:400]
        raise StartupError(
            f"memsvc cannot connect to the database at {shown}: {reason}. Nothing was started. Check that the "
            "server runs and is reachable from here, and that the user, password and database name in "
            "MEMSVC_DATABASE_URL are right (the database must exist); or unset MEMSVC_DATABASE_URL to use the "
            "embedded database under MEMSVC_STATE_DIR."
        ) from None
    if not available:
        raise StartupError(
            f"The database at {shown} answers, but its server has no pgvector extension, which memsvc stores its "
            "vectors with. Nothing was started. Install pgvector on that server (the postgresql-NN-pgvector "
            "package, or an image such as pgvector/pgvector:pg17), or point MEMSVC_DATABASE_URL at a server that "
            "has it; memsvc runs CREATE EXTENSION vector itself when it migrates."
        )
