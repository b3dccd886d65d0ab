"""The `memsvc` command line as a user meets it: --version, bare `memsvc`, every command's --help, every bench
runnable through `memsvc bench NAME`, `keys list` across tenants, and quiet long-running commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from memsvc import __version__
from memsvc.cli import bench_names, build_parser, main

MEMSVC = [sys.executable, "-m", "memsvc.cli"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSVC_")}
    return {**env, "HF_HUB_OFFLINE": "1", **extra}


def test_version_and_bare_memsvc() -> None:
    version = subprocess.run([*MEMSVC, "--version"], capture_output=True, text=True, timeout=60, env=_env())
    assert version.returncode == 0 and version.stdout.strip() == f"memsvc {__version__}"
    bare = subprocess.run(MEMSVC, capture_output=True, text=True, timeout=60, env=_env())
    assert bare.returncode == 0, bare.stderr
    assert bare.stdout.startswith("usage: memsvc") and "Traceback" not in bare.stdout + bare.stderr
    for command in ("serve", "worker", "beat", "migrate", "keys", "bench", "mcp"):
        assert f"    {command} " in bare.stdout, command


def test_every_command_has_its_own_help(capsys) -> None:  # type: ignore[no-untyped-def]
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(commands) >= {"serve", "worker", "beat", "migrate", "keys", "bench", "mcp"}
    for command in commands:
        with pytest.raises(SystemExit) as exited:
            main([command, "--help"])
        assert exited.value.code == 0, command
        out = capsys.readouterr().out
        assert out.startswith(f"usage: memsvc {command}"), out
    for command in ("serve", "worker", "beat"):  # the long-running ones can be asked to be verbose
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--verbose" in capsys.readouterr().out


_EVERY_BENCH = """
import sys
from memsvc.cli import main
failed = []
for name in sys.argv[1:]:
    try:
        main(["bench", name, "--help"])
        failed.append(f"{name}: returned without printing its help")
    except SystemExit as exc:
        if exc.code not in (0, None):
            failed.append(f"{name}: exit {exc.code}")
    except BaseException as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print("FAILED", failed)
"""


def test_every_bench_starts_through_memsvc_bench() -> None:
    names = bench_names()
    assert {"ingest", "search_latency", "consolidate", "decay", "lifecycle_locomo", "latency"} <= set(names)
    assert "harness" not in names and "corpus" not in names  # libraries of the benches, not benches
    run = subprocess.run([sys.executable, "-c", _EVERY_BENCH, *names], capture_output=True, text=True, timeout=300,
                         env=_env(), cwd="/")  # not the checkout: the benches' siblings must be found anyway
    assert "FAILED []" in run.stdout, run.stdout[-3000:] + run.stderr[-3000:]
    for name in names:
        assert f"usage: {name}.py" in run.stdout, name
    unknown = subprocess.run([*MEMSVC, "bench", "no_such_bench"], capture_output=True, text=True, timeout=60,
                             env=_env())
    assert unknown.returncode == 2 and "ingest" in unknown.stderr and "Traceback" not in unknown.stderr


def test_keys_list_shows_every_tenant_and_revoke_finds_the_key(engine, database_url) -> None:  # type: ignore[no-untyped-def]
    from memsvc import tenancy
    from memsvc.db import session_scope

    names = [f"cli-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with session_scope(engine) as session:
        key_ids = []
        for name in names:
            tenant = tenancy.create_tenant(session, name)
            key, _ = tenancy.create_key(session, tenant.id, ["read"], name=f"key of {name}")
            key_ids.append(str(key.id))
    env = _env(MEMSVC_DATABASE_URL=database_url)

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*MEMSVC, "keys", *args], capture_output=True, text=True, timeout=120, env=env)

    listed = keys("list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[0] == "TENANT"
    for name, key_id in zip(names, key_ids, strict=True):
        line = next(line for line in listed.stdout.splitlines() if key_id in line)
        assert line.split()[0] == name and "active" in line
    one = keys("list", "--tenant", names[0])
    assert key_ids[0] in one.stdout and key_ids[1] not in one.stdout
    assert keys("list", "--tenant", "no-such-tenant").returncode == 2
    revoked = keys("revoke", key_ids[1])  # no --tenant: the key's own tenant, not "default"
    assert revoked.returncode == 0, revoked.stderr
    assert "revoked" in next(line for line in keys("list").stdout.splitlines() if key_ids[1] in line)
    assert keys("revoke", str(uuid.uuid4())).returncode == 2


BROKER = "redis://127.0.0.1:6379/13"


def _start_quietly(command: str, state: Path, database_url: str, *args: str) -> subprocess.Popen[str]:
    env = _env(MEMSVC_DATABASE_URL=database_url, MEMSVC_REDIS_URL=BROKER, MEMSVC_STATE_DIR=str(state))
    return subprocess.Popen([*MEMSVC, command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def _metric(url: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        body = httpx.get(url, timeout=5).text
    except httpx.HTTPError:
        return 0.0
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_worker_and_beat_are_quiet_and_a_worker_serves_its_metrics(tmp_path, database_url, engine) -> None:  # type: ignore[no-untyped-def]
    from memsvc import jobs
    from memsvc.db import session_factory, session_scope
    from tests.lifecycle_helpers import new_tenant
    from workers.queue import CeleryJobQueue

    port = _free_port()
    worker = _start_quietly("worker", tmp_path, database_url, "--concurrency", "1", "--metrics-port", str(port))
    beat = _start_quietly("beat", tmp_path, database_url)
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        tenant = new_tenant(session_factory(engine))
        with session_scope(engine) as session:
            job, _ = jobs.create_job(session, tenant_id=tenant, kind="decay")
        CeleryJobQueue(BROKER).enqueue(job.id)
        deadline = time.time() + 180
        # Up: the worker ran the job in its pool process (its banner, if any, is printed before), and beat has
        # opened its schedule; the job's run shows on the worker's own metrics port.
        while time.time() < deadline and not (
                _metric(url, "memsvc_job_duration_seconds_count", kind="decay", outcome="succeeded") >= 1
                and list(tmp_path.glob("celerybeat-schedule*"))):
            assert worker.poll() is None and beat.poll() is None
            time.sleep(0.5)
        assert time.time() < deadline, "the worker did not run the job, or beat did not start"
    finally:
        for proc in (worker, beat):
            proc.send_signal(signal.SIGTERM)
        outputs = [proc.communicate(timeout=60)[0] for proc in (worker, beat)]
    for output in outputs:
        assert "-------------- celery@" not in output and "[tasks]" not in output, output  # the worker's banner
        assert "celery beat v" not in output, output
        assert "Traceback" not in output, output
    assert not list((tmp_path / "metrics").glob("worker-*")), "the worker's metrics files outlived it"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
