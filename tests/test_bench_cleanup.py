"""Benchmarks leave no process behind: the embedded Postgres they start (a daemon, not their child) is stopped
when they finish and when they are stopped half-way (SIGTERM here; Ctrl-C takes the same path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil


def _postgres_under(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if "postgres" in (proc.info["name"] or "") and str(folder) in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def _bench(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSVC_")}
    env.update(TMPDIR=str(tmp), HF_HUB_OFFLINE="1")  # the bench's temporary directories land in tmp
    return subprocess.Popen([sys.executable, "-m", "memsvc.cli", "bench", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _assert_nothing_left(tmp: Path, output: str) -> None:
    deadline = time.time() + 10
    while _postgres_under(tmp) and time.time() < deadline:
        time.sleep(0.2)
    left = _postgres_under(tmp)
    for proc in left:  # do not leave them to the next test either
        proc.kill()
    assert not left, output[-3000:]
    assert not [p for p in tmp.iterdir() if p.name.startswith("memsvc-")], output[-3000:]


def test_a_finished_bench_stops_its_database(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _bench(tmp_path, "decay", "--sizes", "50")
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output[-3000:]
    assert "Tier distribution" in output
    _assert_nothing_left(tmp_path, output)


def test_a_bench_stopped_half_way_stops_its_database_and_server(tmp_path) -> None:  # type: ignore[no-untyped-def]
    run = _bench(tmp_path, "ingest", "--total", "100000", "--batch-sizes", "50")
    try:
        deadline = time.time() + 180
        while not _postgres_under(tmp_path) and time.time() < deadline:
            assert run.poll() is None, run.communicate()[0][-3000:]
            time.sleep(0.2)
        assert _postgres_under(tmp_path), "the bench never started its database"
        time.sleep(3)  # well into it: migrated, the API starting or serving
    finally:
        run.send_signal(signal.SIGTERM)
    output = run.communicate(timeout=120)[0]
    assert run.returncode == 130, output[-3000:]
    assert "interrupted" in output
    _assert_nothing_left(tmp_path, output)
