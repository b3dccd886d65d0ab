"""Two versions of memsvc, one database, interleaved: is a change faster, on a machine this noisy?

Usage: python bench/latency_ab.py BASE [NEW] --state-dir DIR [--endpoint context|search] [--requests 400]
                                  [--block 25] [--env-a KEY=VALUE ...] [--env-b KEY=VALUE ...] [--json OUT]

BASE and NEW are git revisions or source trees (NEW defaults to this tree). --env-a / --env-b set
environment variables for one side's server, so one version can be compared with itself under two
configurations (`python bench/latency_ab.py . --env-a MEMSVC_EMBEDDING_QUERY_RUNTIME=onnx ...`). DIR is a state that
`bench/latency.py --levels 100k --state-dir DIR` built (the queried tenant is lat-100k). Both versions
run as `memsvc serve` processes against that one database, warmed up, and get fresh queries in
alternating blocks (ABAB...): run to run this 2-core machine moves a p95 by ±10 ms, far more than most
changes, but within one run both sides see the same drift. Blocks rather than single requests, so work a
version does after its responses (background tasks) falls on its own next requests, as in real use.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402
from harness import bench_database_url, percentiles, print_table, serve_process  # noqa: E402
from latency import QUERIED, Corpus, prewarm  # noqa: E402


@contextmanager
def source_tree(spec: str) -> Iterator[Path]:
    """A directory as it is, or a git revision checked out into a temporary worktree."""
    if Path(spec).is_dir():
        yield Path(spec).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="memsvc-ab-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(tree), spec], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)


def _setting(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise SystemExit(f"--env-a / --env-b take KEY=VALUE, got {item!r}")
    return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base")
    parser.add_argument("new", nargs="?", default=str(ROOT))
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--endpoint", choices=("context", "search"), default="context")
    parser.add_argument("--requests", type=int, default=400, help="timed requests per version")
    parser.add_argument("--block", type=int, default=25)
    parser.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE", help="for side A's server")
    parser.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE", help="for side B's server")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    envs = {side: dict(_setting(item) for item in items) for side, items in (("A", args.env_a), ("B", args.env_b))}

    with bench_database_url(Path(args.state_dir)) as url:  # stopped on the way out, Ctrl-C and SIGTERM too
        compare(args, envs, url)


def compare(args: argparse.Namespace, envs: dict[str, dict[str, str]], url: str) -> None:
    from memsvc import tenancy
    from memsvc.db import get_engine, session_scope
    from memsvc.models import Tenant

    prewarm(url)
    with session_scope(get_engine(url)) as session:
        tenant = session.query(Tenant).filter(Tenant.name == QUERIED["100k"]).one()
        _, key = tenancy.create_key(session, tenant.id, ["read"], name="latency a/b")
    corpus = Corpus(seed=31)
    path = f"/v1/{args.endpoint}"

    def body() -> dict[str, object]:
        if args.endpoint == "context":
            return {"query": corpus.query(), "budget_tokens": 1024, "model": "cl100k_base"}
        return {"query": corpus.query(), "limit": 10}

    names = {side: spec + "".join(f" {k}={v}" for k, v in envs[side].items())
             for side, spec in (("A", args.base), ("B", args.new))}
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="memsvc-ab-state-") as server_state:
        clients = {}
        for side, spec in (("A", args.base), ("B", args.new)):
            base = stack.enter_context(serve_process(url, server_state, tree=stack.enter_context(source_tree(spec)),
                                                     env=envs[side]))
            clients[side] = stack.enter_context(httpx.Client(base_url=base, timeout=60,
                                                             headers={"Authorization": f"Bearer {key}"}))
        for client in clients.values():  # warm-up
            for _ in range(20):
                client.post(path, json=body()).raise_for_status()
        times: dict[str, list[float]] = {side: [] for side in clients}
        server_ms: dict[str, list[float]] = {side: [] for side in clients}
        for i in range(max(1, args.requests // args.block)):
            for side in ("A", "B") if i % 2 == 0 else ("B", "A"):
                for _ in range(args.block):
                    started = time.perf_counter()
                    response = clients[side].post(path, json=body())
                    times[side].append((time.perf_counter() - started) * 1e3)
                    response.raise_for_status()
                    server_ms[side].append(float(response.json().get("timings_ms", {}).get("total_ms", 0.0)))
    rows, results = [], {}
    for side, spec in names.items():
        p = percentiles(times[side])
        results[side] = {"version": spec, **p, "server_total_median_ms": statistics.median(server_ms[side])}
        rows.append([side, spec, len(times[side]), p["p50"], p["p95"], p["p99"],
                     round(statistics.median(server_ms[side]), 1)])
    print_table(f"{path} over HTTP, versions interleaved in blocks of {args.block} (ms)",
                ["side", "version", "requests", "p50", "p95", "p99", "server total (median)"], rows)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
