"""Faults under load: `memsvc serve` on a temporary state directory (or on the configured database and broker),
a bounded mixed load, and in turn a SIGKILL of Postgres, of the worker and of the broker while it runs.

Load: every client writes single memories and batches, searches, builds contexts, and sends some writes twice at
once with one Idempotency-Key (a client retry). A 503, 429 or a dropped connection is retried after Retry-After
with the same key, so every write acknowledged (2xx) must be stored exactly once: that is checked at the end.

Usage: python bench/faults.py [--clients 50] [--seconds 60] [--json out.json]
With MEMSVC_DATABASE_URL / MEMSVC_REDIS_URL set, serve uses them and only the worker is killed (the servers are
not ours to kill). The load runs --seconds, longer when the faults need it. Nothing is left running afterwards,
Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from harness import unwind_on_signals

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("garden", "invoice", "piano", "flight", "recipe", "budget", "lisbon", "marathon", "printer", "birthday")


# ---- the server ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`memsvc serve` in its own session; `stop()` ends it and everything it started, whatever state it is in."""

    def __init__(self, state: Path, env: dict[str, str]) -> None:
        self.state, self.port = state, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = state.parent / "serve.log"
        self.seen: set[int] = set()  # every pid it ran (killed and restarted ones included), for the clean-up
        env = {**env, "MEMSVC_STATE_DIR": str(state), "MEMSVC_PORT": str(self.port),
               "MEMSVC_LOG_LEVEL": env.get("MEMSVC_LOG_LEVEL", "WARNING")}
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "memsvc.cli", "serve"], env=env, cwd=ROOT,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memsvc serve exited:\n{self.log_path.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base + "/readyz", timeout=5).status_code == 200:
                    self.components()
                    return
            time.sleep(0.5)
        raise RuntimeError(f"memsvc serve not ready in {timeout_s} s:\n{self.log_path.read_text()[-3000:]}")

    def components(self) -> dict[str, Any]:
        body = httpx.get(self.base + "/readyz", timeout=10).json()
        found = dict(body.get("components") or {})
        self.seen.update(c["pid"] for c in found.values() if c.get("pid"))
        return found

    def admin_key(self) -> str:
        return (self.state / "admin_key.txt").read_text().strip()

    def postmaster_pid(self) -> int | None:
        pid_file = self.state / "postgres" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pid_file.read_text().split()[0])
        return None

    def stop(self) -> None:
        with contextlib.suppress(psutil.Error):
            self.seen.update(p.pid for p in psutil.Process(self.proc.pid).children(recursive=True))
        postmaster = self.postmaster_pid()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C does: serve stops what it started
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=90)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        leftovers = [pid for pid in self.seen | ({postmaster} if postmaster else set()) if psutil.pid_exists(pid)]
        for pid in leftovers:  # only what this run started: serve's children and its embedded Postgres
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    print(f"faults: stopping leftover pid {pid} ({' '.join(proc.cmdline())[:80]})", file=sys.stderr)
                    proc.send_signal(signal.SIGINT if pid == postmaster else signal.SIGKILL)
        if postmaster and psutil.pid_exists(postmaster):
            with contextlib.suppress(psutil.Error):
                psutil.Process(postmaster).wait(10)


# ---- the load -----------------------------------------------------------------------------------------------


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    acknowledged: dict[str, str] = field(default_factory=dict)  # content token -> user_id

    def record(self, endpoint: str, status: str, seconds: float) -> None:
        with self.lock:
            self.latencies[endpoint].append(seconds)
            self.statuses[endpoint][status] += 1


class Client:
    """One simulated agent: its own keep-alive connection and user_id."""

    def __init__(self, n: int, base: str, key: str, stats: Stats, stop: threading.Event, give_up: threading.Event):
        self.user = f"fault-u{n}"
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        self.stats, self.stop, self.give_up = stats, stop, give_up
        self.rng = random.Random(n)

    def send(self, endpoint: str, method: str, path: str, body: dict[str, Any],
             key: str | None = None) -> httpx.Response | None:
        """Until a final answer: 503/429/connection errors are retried after Retry-After (same Idempotency-Key)."""
        headers = {"Idempotency-Key": key} if key else {}
        while not self.give_up.is_set():
            started = time.perf_counter()
            try:
                r = self.http.request(method, path, json=body, headers=headers)
            except httpx.TimeoutException:
                self.stats.record(endpoint, "timeout", time.perf_counter() - started)
                continue
            except httpx.TransportError:
                self.stats.record(endpoint, "reset", time.perf_counter() - started)
                time.sleep(0.5)
                continue
            self.stats.record(endpoint, str(r.status_code), time.perf_counter() - started)
            if r.status_code in (429, 503):
                time.sleep(min(5.0, float(r.headers.get("retry-after") or 1)))
                continue
            return r
        return None

    def _note(self, token: str) -> dict[str, Any]:
        return {"content": f"fault-bench {token}: a note about the {self.rng.choice(WORDS)}", "user_id": self.user}

    def _acknowledge(self, r: httpx.Response | None, tokens: list[str]) -> None:
        if r is not None and r.status_code in (200, 201):
            with self.stats.lock:
                self.stats.acknowledged.update((t, self.user) for t in tokens)

    def write(self) -> None:
        token = uuid.uuid4().hex
        self._acknowledge(self.send("POST /v1/memories", "POST", "/v1/memories", self._note(token), token), [token])

    def batch(self) -> None:
        tokens = [uuid.uuid4().hex for _ in range(5)]
        body = {"items": [self._note(t) for t in tokens]}
        self._acknowledge(self.send("POST /v1/memories/batch", "POST", "/v1/memories/batch", body, tokens[0]), tokens)

    def retried_write(self, pool: ThreadPoolExecutor) -> None:
        """The same write twice at once with one key: a client that retried before the first answer came."""
        token = uuid.uuid4().hex
        body = self._note(token)
        answers = list(pool.map(lambda _: self.send("POST /v1/memories (same key x2)", "POST", "/v1/memories",
                                                    body, token), range(2)))
        for r in answers:
            self._acknowledge(r, [token])

    def search(self) -> None:
        self.send("POST /v1/search", "POST", "/v1/search",
                  {"query": f"note about the {self.rng.choice(WORDS)}", "user_id": self.user, "limit": 10})

    def context(self) -> None:
        self.send("POST /v1/context", "POST", "/v1/context",
                  {"query": f"what about the {self.rng.choice(WORDS)}?", "user_id": self.user, "budget_tokens": 512})

    def run(self) -> None:
        ops: list[tuple[Callable[..., None], int]] = [
            (self.write, 30), (self.batch, 10), (self.search, 25), (self.context, 25), (self.retried_write, 10)]
        with ThreadPoolExecutor(2) as pool:
            while not self.stop.is_set():
                op = self.rng.choices([o for o, _ in ops], weights=[w for _, w in ops])[0]
                op(pool) if op == self.retried_write else op()


# ---- faults -------------------------------------------------------------------------------------------------


@dataclass
class FaultResult:
    name: str
    at_s: float | None = None  # seconds into the run
    component_back_s: float | None = None  # readyz shows it running again (restarts + 1)
    api_ok_s: float | None = None  # a read answered 200 again
    job_done_s: float | None = None  # a job created right after the kill succeeded
    note: str = ""


def _wait(check: Callable[[], Any], timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            if check():
                return time.monotonic() - started
        time.sleep(0.2)
    return None


def inject(server: Server, name: str, key: str, run_started: float) -> FaultResult:
    result = FaultResult(name)
    before = server.components().get(name)
    if before is None:
        result.note = "not started by serve (configured mode): not killed"
        return result
    http = httpx.Client(base_url=server.base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    pid = server.postmaster_pid() if name == "postgres" else before["pid"]
    result.at_s = time.monotonic() - run_started
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    job_id: str | None = None
    if name != "postgres":
        r = http.post("/v1/consolidate", json={"user_id": "fault-probe"})
        job_id = r.json()["job_id"] if r.status_code == 202 else None
    back = _wait(lambda: (c := server.components()[name])["restarts"] > before["restarts"] and c["state"] == "running",
                 120)
    result.component_back_s = None if back is None else time.monotonic() - killed
    ok = _wait(lambda: http.get("/v1/memories", params={"limit": 1}).status_code == 200, 120)
    result.api_ok_s = None if ok is None else time.monotonic() - killed
    if job_id is None and name != "postgres":
        job_id = http.post("/v1/consolidate", json={"user_id": "fault-probe"}).json()["job_id"]
    if job_id is not None:
        done = _wait(lambda: http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded", 180)
        result.job_done_s = None if done is None else time.monotonic() - killed
    return result


# ---- checking and reporting ---------------------------------------------------------------------------------


def stored_tokens(base: str, key: str, users: set[str]) -> Counter[str]:
    http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    found: Counter[str] = Counter()
    for user in sorted(users):
        cursor = None
        while True:
            params = {"user_id": user, "kind": "episodic", "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = http.get("/v1/memories", params=params)
            page.raise_for_status()
            body = page.json()
            for m in body["items"]:
                if m["content"].startswith("fault-bench "):
                    found[m["content"].split()[1].rstrip(":")] += 1
            cursor = body.get("next_cursor")
            if not cursor:
                break
    return found


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


def report(args: argparse.Namespace, stats: Stats, faults: list[FaultResult], lost: int, duplicated: int,
           load_s: float) -> dict[str, Any]:
    rows, totals = [], Counter[str]()
    for endpoint in sorted(stats.latencies):
        counts = stats.statuses[endpoint]
        totals.update(counts)
        errors = {s: n for s, n in counts.items() if not s.startswith("2")}
        lat = stats.latencies[endpoint]
        rows.append({"endpoint": endpoint, "requests": len(lat), "ok": sum(n for s, n in counts.items()
                                                                           if s.startswith("2")),
                     "errors": errors, "p50_ms": _pct(lat, 0.5), "p95_ms": _pct(lat, 0.95), "p99_ms": _pct(lat, 0.99)})
    out = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "clients": args.clients, "seconds": load_s,
           "requests": sum(totals.values()), "by_status": dict(totals), "endpoints": rows,
           "acknowledged_writes": len(stats.acknowledged), "lost": lost, "duplicated": duplicated,
           "faults": [f.__dict__ for f in faults]}
    print(f"\nmemsvc faults: {args.clients} clients, {load_s:.0f} s of load, {out['date']}")
    print(f"{'endpoint':<34}{'requests':>9}{'2xx':>8}  {'errors by status':<28}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
    for r in rows:
        errs = ", ".join(f"{s}: {n}" for s, n in sorted(r["errors"].items())) or "-"
        print(f"{r['endpoint']:<34}{r['requests']:>9}{r['ok']:>8}  {errs:<28}{r['p50_ms']:>8.0f}{r['p95_ms']:>8.0f}"
              f"{r['p99_ms']:>8.0f}")
    errs = ", ".join(f"{s}: {n}" for s, n in sorted(totals.items()) if not s.startswith("2")) or "-"
    print(f"{'all':<34}{out['requests']:>9}{sum(n for s, n in totals.items() if s.startswith('2')):>8}  {errs}")
    print(f"acknowledged writes: {out['acknowledged_writes']}   lost: {lost}   duplicated: {duplicated}")

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    print(f"{'fault (SIGKILL)':<18}{'at s':>7}{'back s':>9}{'API 200 s':>11}{'job done s':>12}  note")
    for f in faults:
        print(f"{f.name:<18}{s(f.at_s):>7}{s(f.component_back_s):>9}{s(f.api_ok_s):>11}{s(f.job_done_s):>12}  {f.note}")
    print("(back: seconds from the kill until /readyz shows it running again; API 200: until a read succeeds; "
          "job done: until a job created right after the kill succeeded)")
    return out


# ---- main ---------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (longer if the faults need it)")
    parser.add_argument("--faults", default="postgres,worker,broker", help="which to kill, in this order")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with unwind_on_signals(), tempfile.TemporaryDirectory(prefix="memsvc-faults-") as tmp:
        server = Server(Path(tmp) / "state", env)
        try:
            return run(args, server)
        except KeyboardInterrupt:
            print("faults: interrupted; stopping everything it started", file=sys.stderr)
            return 130
        finally:
            server.stop()


def run(args: argparse.Namespace, server: Server) -> int:
    server.wait_ready()
    key = server.admin_key()
    stats, stop, give_up = Stats(), threading.Event(), threading.Event()
    clients = [Client(n, server.base, key, stats, stop, give_up) for n in range(args.clients)]
    threads = [threading.Thread(target=c.run, daemon=True, name=f"client-{n}") for n, c in enumerate(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    names = [n for n in args.faults.split(",") if n]
    faults = []
    for i, name in enumerate(names):
        due = started + args.seconds * (i + 1) / (len(names) + 1)
        while time.monotonic() < due:
            time.sleep(0.2)
        faults.append(inject(server, name, key, started))
    while time.monotonic() - started < args.seconds:
        time.sleep(0.2)
    stop.set()
    load_s = time.monotonic() - started
    for t in threads:
        t.join(timeout=120)  # each finishes its request (retrying through any outage still going on)
    give_up.set()
    found = stored_tokens(server.base, key, {c.user for c in clients})
    lost = sum(1 for token in stats.acknowledged if found[token] == 0)
    duplicated = sum(1 for n in found.values() if n > 1)
    out = report(args, stats, faults, lost, duplicated, load_s)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
