"""Keeps what `memsvc serve` started alive: a watcher thread restarts a component that died, with
backoff, logs it, and reports each component's state (for /readyz).

A component is anything with start/alive/stop: the embedded Postgres, the embedded broker, the Celery
worker and beat (child processes). The supervisor knows nothing about what they are.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

log = logging.getLogger("memsvc.supervisor")
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """In a child (before exec, or in a forked pool process): on Linux, get `sig` when the parent dies,
    even by SIGKILL, so no orphan keeps consuming jobs (or holding their locks) for a parent that is gone."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


class Component(Protocol):
    name: str

    def start(self) -> None:
        """Start (or start again after a death); raise when it cannot."""
        ...

    def alive(self) -> bool: ...

    def pid(self) -> int | None: ...

    def exit_reason(self) -> str:
        """How it ended, once `alive()` is False (e.g. 'killed by SIGKILL')."""
        ...

    def stop(self) -> None: ...


def describe_returncode(code: int | None) -> str:
    if code is None:
        return "gone"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class ChildProcess:
    """A `python -m memsvc.cli <command>` child in its own process group: when its main process dies, what
    it forked (a Celery pool) dies with it instead of running on with a job and its lock."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, list(argv), env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._kill_group()  # leftovers of a previous run (a pool whose main process was killed)
        self.proc = subprocess.Popen(self.argv, env=self.env, process_group=0, preexec_fn=die_with_parent)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def exit_reason(self) -> str:
        return describe_returncode(self.proc.returncode if self.proc is not None else None)

    def _kill_group(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Celery's warm shutdown: running tasks finish or are requeued
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", self.name, timeout_s)
        self._kill_group()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


@dataclass
class _Watch:
    component: Component
    state: str = "running"  # running | restarting | stopped (and "down" in status(): died since the last tick)
    restarts: int = 0
    failures: int = 0  # consecutive failed or short-lived starts: the backoff exponent
    last_exit: str | None = None
    last_error: str | None = None
    since: float = field(default_factory=time.time)
    next_try: float = 0.0


@dataclass(frozen=True)
class Backoff:
    first_s: float = 0.5
    max_s: float = 30.0
    stable_after_s: float = 60.0  # up this long: the next death starts the backoff over

    def delay(self, failures: int) -> float:
        return min(self.max_s, self.first_s * (2 ** max(0, failures)))


class Supervisor:
    """Watches the components it was given (or `add`ed, which starts them in that order) from a daemon thread.

    after_restart: called (from the watcher thread) once a component came back, and again on the next ticks
    until it returns without raising; `memsvc serve` hands out again there the jobs a restart may have lost.
    """

    def __init__(self, components: Sequence[Component] = (), *, interval_s: float = 0.5, backoff: Backoff | None = None,
                 after_restart: Callable[[str], None] | None = None) -> None:
        self._watches = [_Watch(c, state="running") for c in components]  # given running
        self.interval_s = interval_s
        self.backoff = backoff or Backoff()
        self.after_restart = after_restart
        self._pending_after: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, component: Component, *, started: bool = False) -> None:
        """Start one more component now (raises if it cannot start; `started`: it already runs) and watch it
        from then on."""
        if not started:
            component.start()
        watch = _Watch(component)
        with self._lock:
            self._watches.append(watch)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="memsvc-supervisor", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # the watcher must outlive anything a component throws at it
                log.exception("supervisor tick failed")

    def tick(self) -> None:
        now = time.time()
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            if self._stop.is_set():
                return
            if w.state == "running" and not w.component.alive():
                w.last_exit = w.component.exit_reason()
                if now - w.since >= self.backoff.stable_after_s:
                    w.failures = 0
                delay = self.backoff.delay(w.failures)
                w.state, w.since, w.next_try = "restarting", now, now + delay
                log.warning("%s died (%s); restarting it in %.1f s", w.component.name, w.last_exit, delay)
            if w.state == "restarting" and now >= w.next_try:
                self._restart(w)
        self._run_after_restart()

    def _restart(self, w: _Watch) -> None:
        name = w.component.name
        try:
            w.component.start()
        except Exception as exc:
            w.failures += 1
            delay = self.backoff.delay(w.failures)
            w.last_error, w.next_try = f"{type(exc).__name__}: {exc}"[:500], time.time() + delay
            log.warning("%s did not start again (%s); next try in %.1f s", name, w.last_error, delay)
            return
        w.failures += 1
        w.restarts += 1
        w.state, w.since, w.last_error = "running", time.time(), None
        log.warning("%s restarted (pid %s, restart #%d)", name, w.component.pid(), w.restarts)
        if self.after_restart is not None:
            self._pending_after.append(name)

    def _run_after_restart(self) -> None:
        if not self._pending_after or self.after_restart is None:
            return
        try:
            self.after_restart(",".join(dict.fromkeys(self._pending_after)))
        except Exception as exc:
            log.info("after-restart step not done yet (%s: %s); trying again", type(exc).__name__, exc)
            return
        self._pending_after.clear()

    def status(self) -> dict[str, dict[str, Any]]:
        """Each component: state, pid, restarts, last exit/error, and since when it is in that state."""
        with self._lock:
            watches = list(self._watches)
        out: dict[str, dict[str, Any]] = {}
        for w in watches:
            state = w.state
            if state == "running" and not w.component.alive():
                state = "down"  # died since the last tick
            out[w.component.name] = {
                "state": state, "pid": w.component.pid() if state == "running" else None, "restarts": w.restarts,
                "last_exit": w.last_exit, "last_error": w.last_error,
                "since": datetime.fromtimestamp(w.since, UTC).isoformat(timespec="seconds"),
            }
        return out

    def stop(self) -> None:
        """Stop watching, then stop the components in reverse order of start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            watches = list(self._watches)
        for w in reversed(watches):
            try:
                w.component.stop()
            except Exception:
                log.warning("stopping %s failed", w.component.name, exc_info=True)
            w.state = "stopped"
