"""`memsvc serve` as a newcomer runs it: embedded Postgres + broker + worker + beat, admin key printed once,
data kept across restarts, and Ctrl-C or SIGTERM stops every process it started."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, state_dir: Path, port: int, **extra_env: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEMSVC_")}
        env.update(MEMSVC_STATE_DIR=str(state_dir), MEMSVC_PORT=str(port), MEMSVC_LOG_LEVEL="WARNING", **extra_env)
        self.log = state_dir.parent / f"serve-{time.time_ns()}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "memsvc.cli", "serve"], env=env, stdout=self.log.open("w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{port}"
        self.state = state_dir
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.kill_all()
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.base + "/readyz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.kill_all()
        raise AssertionError(f"serve not ready in time:\n{self.log.read_text()}")

    def kill_all(self) -> None:
        """After a failure: nothing this test started may outlive it."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self, how: signal.Signals = signal.SIGINT) -> list[psutil.Process]:
        """Stop it (SIGINT: what Ctrl-C does; SIGTERM: docker stop, systemd, kill) and return every process
        it had started, the daemonised Postgres included (found by its pid file, as it is not a child)."""
        started = psutil.Process(self.proc.pid).children(recursive=True)
        pid_file = self.state / "postgres" / "postmaster.pid"
        assert pid_file.exists(), "the embedded Postgres should be running"
        started.append(psutil.Process(int(pid_file.read_text().split()[0])))
        self.proc.send_signal(how)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == 0, self.output()
        return started


def test_serve_embedded_default_end_to_end(tmp_path):
    state, port = tmp_path / "state", _free_port()
    first = Served(state, port)
    try:
        printed = re.findall(r"(msk_[A-Za-z0-9_\-]{20,})", first.output())
        assert len(printed) == 1, first.output()
        key = printed[0]
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(first.base + "/v1/memories", headers=headers, json={"content": "kept across restarts"})
        assert created.status_code == 201, created.text
        commands = [" ".join(p.cmdline()) for p in psutil.Process(first.proc.pid).children(recursive=True)]
        for part in ("memsvc.cli worker", "memsvc.cli beat", "valkey-server"):
            assert any(part in c for c in commands), (part, commands)
        started = first.stop()
    except BaseException:
        first.kill_all()
        raise
    _assert_all_gone(started)
    assert (state / "admin_key.txt").read_text().strip() == key

    second = Served(state, port)
    try:
        assert "msk_" not in second.output()  # the key is shown once, on first start only
        headers = {"Authorization": f"Bearer {key}"}
        listed = httpx.get(second.base + "/v1/memories", headers=headers).json()["items"]
        assert [m["content"] for m in listed] == ["kept across restarts"]
        started = second.stop(signal.SIGTERM)  # a process manager's stop leaves nothing behind either
    except BaseException:
        second.kill_all()
        raise
    _assert_all_gone(started)


def _assert_all_gone(started: list[psutil.Process]) -> None:
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, [p.cmdline() for p in alive]
