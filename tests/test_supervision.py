"""`memsvc serve` rides out the death of what it started, and refuses to start when it could not run well.

Real processes throughout: `memsvc serve` on a temporary state directory (embedded Postgres, the embedded
broker, a Celery worker and beat), killed with SIGKILL the way a crash or the OOM killer would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_serve import Served, _assert_all_gone, _free_port

EPISODES = ["I adopted a rescue cat named Luna last week.", "I work as a potter at the community center.",
            "I live in Boston."]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """One server for the fault tests (each kills one part of it). Its state is not under pytest's base temp
    directory: run as root, the embedded Postgres runs as another user, and every new pytest session (another
    one running beside this) makes that directory private to root again."""
    with tempfile.TemporaryDirectory(prefix="memsvc-supervised-") as tmp:
        server = Served(Path(tmp) / "state", _free_port())
        try:
            yield server
            started = server.stop()
        except BaseException:
            server.kill_all()
            raise
        _assert_all_gone(started)


def _client(served: Served) -> httpx.Client:
    key = (served.state / "admin_key.txt").read_text().strip()
    return httpx.Client(base_url=served.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _components(served: Served) -> dict[str, Any]:
    return httpx.get(served.base + "/readyz", timeout=30).json()["components"]


def _wait(predicate: Any, timeout_s: float, what: str, served: Served) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{served.output()[-4000:]}")


def _consolidate(client: httpx.Client, user: str) -> str:
    items = [{"content": text, "user_id": user} for text in EPISODES]
    assert client.post("/v1/memories/batch", json={"items": items}).status_code == 201
    r = client.post("/v1/consolidate", json={"user_id": user})
    assert r.status_code == 202, r.text
    return str(r.json()["job_id"])


def _job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    r = client.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_database_killed_answers_503_and_recovers_without_restart(served: Served) -> None:
    client = _client(served)  # one keep-alive connection: a reset would show as a transport error
    assert client.post("/v1/memories", json={"content": "written before the crash"}).status_code == 201
    postmaster = int((served.state / "postgres" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    killed_at, statuses, written, back_after = time.monotonic(), [], [], None
    i = 0
    while time.monotonic() - killed_at < 30:
        i += 1
        if i % 2:
            r = client.post("/v1/memories", json={"content": f"written during the outage {i}"})
        else:
            r = client.get("/v1/memories", params={"limit": 5})
        statuses.append(r.status_code)
        if r.status_code == 503:
            assert r.headers.get("retry-after", "").isdigit(), r.headers
            assert r.json()["error"]["code"] == "database_unavailable", r.text
        else:
            assert r.status_code in (200, 201), r.text
            if r.status_code == 201:
                written.append(r.json()["id"])
            if 503 in statuses:
                back_after = time.monotonic() - killed_at
                break
        time.sleep(0.05)
    assert 503 in statuses, statuses
    assert back_after is not None and back_after <= 15, (back_after, statuses[-5:], served.output()[-3000:])
    assert served.proc.poll() is None  # the same server, not a restarted one
    # The new postmaster accepts connections while its start (pg_ctl -w) is still returning to the supervisor, so
    # the API can answer a moment before the supervisor records the restart: wait for the record, a few seconds.
    deadline = time.monotonic() + 10
    postgres = _components(served)["postgres"]
    while postgres["state"] != "running" and time.monotonic() < deadline:
        time.sleep(0.1)
        postgres = _components(served)["postgres"]
    assert postgres["state"] == "running" and postgres["restarts"] >= 1 and postgres["pid"] != postmaster, postgres
    listed = client.get("/v1/memories", params={"limit": 200}).json()["items"]
    contents = {m["content"] for m in listed}
    assert "written before the crash" in contents
    assert set(written) <= {m["id"] for m in listed}


def test_worker_killed_is_restarted_and_its_running_job_completes(served: Served) -> None:
    from sqlalchemy import create_engine

    from tests.lifecycle_helpers import table_locked

    client = _client(served)
    database = create_engine(f"postgresql+psycopg://postgres@/memsvc?host={served.state / 'postgres'}")
    # The job's fact links wait on a lock this test holds: it is "running", mid-write, when its worker dies.
    with table_locked(database, "memory_links") as blocked_mid_write:
        job_id = _consolidate(client, "wanda")
        _wait(blocked_mid_write, 60, "the job to block in the middle of its write", served)
        assert _job(client, job_id)["status"] == "running"
        worker = _components(served)["worker"]
        os.kill(worker["pid"], signal.SIGKILL)  # the main process only, as a crash would: its pool is orphaned
        back = _wait(lambda: (w := _components(served)["worker"])["restarts"] >= 1 and w["state"] == "running"
                     and w, 20, "the worker to be restarted", served)
        assert back["pid"] != worker["pid"] and "SIGKILL" in back["last_exit"], back
        returned_at = time.monotonic()
        # The killed job's backend notices its client is gone although it still waits for the lock (db.py).
        _wait(lambda: not blocked_mid_write(), 15, "the dead worker's statement to be cancelled", served)
    database.dispose()
    done = _wait(lambda: (j := _job(client, job_id))["status"] in ("succeeded", "failed") and j, 60,
                 "the job left running by the killed worker", served)
    assert done["status"] == "succeeded" and done["attempts"] >= 2, done
    assert time.monotonic() - returned_at <= 60


def test_broker_killed_is_restarted_with_its_password_and_jobs_catch_up(served: Served) -> None:
    import redis

    password_file = served.state / "valkey" / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    broker = _components(served)["broker"]
    port = int(next(line.split()[1] for line in (served.state / "valkey" / "valkey.conf").read_text().splitlines()
                    if line.startswith("port ")))
    with pytest.raises(redis.AuthenticationError):  # no password, no broker
        redis.Redis(port=port, socket_timeout=5).ping()
    client = _client(served)
    os.kill(broker["pid"], signal.SIGKILL)
    job_id = _consolidate(client, "bruno")  # enqueued while the broker is down (or just back, empty)
    back = _wait(lambda: (b := _components(served)["broker"])["restarts"] >= 1 and b["state"] == "running" and b,
                 20, "the broker to be restarted", served)
    returned_at = time.monotonic()
    assert redis.Redis(port=port, password=password_file.read_text().strip(), socket_timeout=5).ping()
    done = _wait(lambda: (j := _job(client, job_id))["status"] in ("succeeded", "failed") and j, 60,
                 "the job written around the broker's death", served)
    assert done["status"] == "succeeded", done
    assert time.monotonic() - returned_at <= 60, back


def _serve(state: Path, port: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MEMSVC_")}
    clean.update(MEMSVC_STATE_DIR=str(state), MEMSVC_PORT=str(port), MEMSVC_LOG_LEVEL="WARNING", **env)
    return subprocess.run([sys.executable, "-m", "memsvc.cli", "serve"], env=clean, capture_output=True, text=True,
                          timeout=60)


def test_second_serve_on_the_same_state_dir_is_refused(served: Served) -> None:
    second = _serve(served.state, _free_port())
    output = second.stdout + second.stderr
    assert second.returncode != 0, output
    assert f"pid {served.proc.pid}" in output and str(served.state) in output, output
    assert "msk_" not in output and "Traceback" not in output and "listening" not in output, output
    assert httpx.get(served.base + "/healthz").status_code == 200  # the first one is untouched


def test_busy_port_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = _serve(tmp_path / "state", port)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert f"127.0.0.1:{port}" in output and "MEMSVC_PORT" in output, output
    assert "msk_" not in output and "Traceback" not in output and "listening" not in output, output
    assert not (tmp_path / "state" / "postgres").exists() and not (tmp_path / "state" / "admin_key.txt").exists()
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("case", ["unreachable", "no such database"])
def test_a_database_url_that_does_not_work_is_one_paragraph(case: str, served: Served, tmp_path: Path) -> None:
    if case == "unreachable":
        url = f"postgresql://memsvc:s3cret-pw@127.0.0.1:{_free_port()}/memsvc"
    else:  # the server answers, the database is not there
        url = f"postgresql://postgres:s3cret-pw@/no_such_db?host={served.state / 'postgres'}"
    result = _serve(tmp_path / "state", _free_port(), MEMSVC_DATABASE_URL=url)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "Traceback" not in output and "s3cret-pw" not in output and "msk_" not in output, output
    assert output.count("\n") == 0 and "MEMSVC_DATABASE_URL" in output, output  # one paragraph, what to do
    assert ("no_such_db" in output) if case != "unreachable" else ("127.0.0.1" in output), output


def test_requests_that_embed_nothing_do_not_wait_for_the_model(app, settings, engine, make_tenant,  # type: ignore[no-untyped-def]
                                                               monkeypatch) -> None:
    """Right after a start the models are still loading: list, erase, jobs answer at once; a write waits."""
    import threading

    from fastapi.testclient import TestClient

    import api.app
    import memsvc.store
    from tests.conftest import auth

    release = threading.Event()
    loaded_model = app.state.embedder()  # the suite's app: its model, once the new app may have it
    original_sparse = memsvc.store.encoder_for

    def slow_load():  # type: ignore[no-untyped-def]
        release.wait(60)
        return loaded_model.model() if hasattr(loaded_model, "model") else loaded_model

    def slow_sparse(*args: Any):  # type: ignore[no-untyped-def]
        release.wait(60)
        return original_sparse(*args)

    key = make_tenant()
    # Every model loader waits: the dense model, and the learned-sparse one the store encodes writes with.
    monkeypatch.setattr(api.app, "get_embedder", slow_load)
    monkeypatch.setattr(memsvc.store, "encoder_for", slow_sparse)
    fresh = api.app.create_app(settings, engine)
    with TestClient(fresh) as client:  # its lifespan starts the warm-up, which now waits on `release`

        def call(method: str, path: str, **kw: Any) -> httpx.Response:
            answered: list[Any] = []
            thread = threading.Thread(target=lambda: answered.append(client.request(method, path, **kw)), daemon=True)
            thread.start()
            thread.join(10)
            assert answered, f"{method} {path} waited for the embedding model"
            return answered[0]

        try:
            assert call("GET", "/v1/memories", headers=auth(key)).status_code == 200
            assert call("POST", "/v1/erase", headers=auth(key), json={"user_id": "nobody"}).status_code == 200
            assert call("GET", "/v1/jobs", headers=auth(key)).status_code == 200
            ready = call("GET", "/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["embedder"] == "loading", ready.text
            assert not fresh.state.embedder_loaded()
        finally:
            release.set()
        assert call("POST", "/v1/memories", headers=auth(key), json={"content": "now with a model"}).status_code == 201
        assert fresh.state.embedder_loaded()


def _postgres_without_pgvector() -> Path | None:
    """A PostgreSQL install on this machine without pgvector (a distribution's), to run a server from."""
    import glob

    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")):
        version = Path(initdb).parent.parent.name
        if not glob.glob(f"/usr/share/postgresql/{version}/extension/vector.control"):
            return Path(initdb).parent
    return None


@pytest.mark.skipif(_postgres_without_pgvector() is None, reason="no PostgreSQL without pgvector installed here")
def test_a_database_without_pgvector_is_one_paragraph(tmp_path: Path) -> None:
    import pwd

    bindir = _postgres_without_pgvector()
    assert bindir is not None
    data, port = Path(tempfile.mkdtemp(prefix="memsvc-novector-")), _free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:  # Postgres does not run as root: the embedded server's user will do
        user = "embedded_postgres"
        pwd.getpwnam(user)
        os.chown(data, pwd.getpwnam(user).pw_uid, -1)
        as_user = ["runuser", "-u", user, "--"]
    pg_ctl = [*as_user, str(bindir / "pg_ctl"), "-D", str(data / "pg"), "-w"]
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data / "pg"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*pg_ctl, "-o", f"-h 127.0.0.1 -p {port} -k {data}", "-l", str(data / "log"), "start"],
                   check=True, capture_output=True)
    try:
        result = _serve(tmp_path / "state", _free_port(),
                        MEMSVC_DATABASE_URL=f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 2, output
    assert "pgvector" in output and "Traceback" not in output and "s3cret-pw" not in output, output
    assert output.count("\n") == 0 and not (tmp_path / "state" / "admin_key.txt").exists(), output
