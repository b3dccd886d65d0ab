"""`memsvc` command line: serve, worker, beat, migrate, reembed, keys, bench, mcp.

The composition root: it reads the settings tree once (memsvc.config) and builds from it what each command runs,
the job queue, the API app (api/), the worker and beat (workers/); the one module of memsvc allowed to import
those shells (pyproject.toml, [tool.importlinter]). Commands import what they need when they run, so `memsvc
--help`, `--version` or `keys` do not load the web stack, Celery or the models."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from memsvc import __version__
from memsvc.config import Settings, get_settings
from memsvc.logformat import configure_logging
from memsvc.queue import JobQueue

log = logging.getLogger("memsvc")


def _database_url(settings: Settings) -> str:
    from memsvc.db import resolve_database_url
    from memsvc.startup import check_database

    if settings.database_url:  # a configured one that does not answer: a paragraph, not a traceback
        check_database(settings.database_url, settings.db_connect_timeout_s)
    return resolve_database_url(settings)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from memsvc import migrate

    url = _database_url(settings)
    if args.downgrade:
        migrate.downgrade(url, "base" if args.revision == "head" else args.revision)
    else:
        migrate.upgrade(url, args.revision, embedding_dim=settings.embedding_dim)
    print(f"schema at revision {migrate.current(url) or 'base'}")
    return 0


def cmd_reembed(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from memsvc import migrate, reembed
    from memsvc.db import get_engine
    from memsvc.embeddings import get_embedder

    url = _database_url(settings)
    migrate.upgrade(url, embedding_dim=settings.embedding_dim, fit_embeddings=False)
    embedder = get_embedder()
    if embedder.dim != settings.embedding_dim:
        print(f"memsvc reembed: {embedder.name} makes {embedder.dim}-dimensional vectors but MEMSVC_EMBEDDING_DIM is "
              f"{settings.embedding_dim}; set it to {embedder.dim}", file=sys.stderr)
        return 2
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        print(f"re-embedded {done:,} / {total:,} memories ({rate:,.0f}/s)", file=sys.stderr, flush=True)

    try:
        report = reembed.reembed_all(get_engine(url), embedder, clear_ok=args.yes, batch=args.batch,
                                     progress=progress)
    except reembed.ClearNeedsConsent as exc:
        print(f"memsvc reembed: {exc}. Run again with --yes to go ahead (search answers from full text and "
              f"learned-sparse terms meanwhile).", file=sys.stderr)
        return 2
    if report.resized is not None:
        r = report.resized
        print(f"dense column resized {r.from_dim} -> {r.to_dim} dimensions; {r.cleared} vectors cleared "
              f"({r.cleared_client} supplied by clients)")
    print(f"{report.embedded} memories re-embedded with {report.model} in {time.monotonic() - started:.1f} s")
    return 0


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _owns_state_dir(settings: Settings, start_workers: bool) -> bool:
    """A serve that starts an embedded database, an embedded broker or a beat (its schedule file) owns the state
    directory; several `serve --no-workers` on a configured database may share one."""
    return not settings.database_url or start_workers


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from memsvc.runtime import Runtime
    from memsvc.startup import check_database, lock_state_dir, reserve_port

    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    start_workers = not args.no_workers
    # Before anything starts (and before an admin key is printed): one serve per state directory, the port
    # free (kept bound from here on), a configured database that answers and has pgvector.
    lock = lock_state_dir(settings.state_path) if _owns_state_dir(settings, start_workers) else None
    sock = reserve_port(host, port)
    if start_workers:  # the workers' job and embedding metrics reach this API's /metrics (memsvc.metrics)
        from memsvc.metrics import enable_multiprocess

        enable_multiprocess(settings.state_path / "metrics")
    port = sock.getsockname()[1]  # --port 0: the one the system chose
    if settings.database_url:
        check_database(settings.database_url, settings.db_connect_timeout_s)
    # uvicorn shuts down gracefully on SIGTERM (docker stop, systemd, kill), then raises the signal again under
    # the handler it found. The default one would end the process right there, before the runtime stops the
    # workers and the embedded database; this one unwinds it, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    runtime = Runtime(settings, start_workers=start_workers, queue_factory=lambda url: _celery_queue(settings, url))
    with _preparing(settings):
        runtime.start()
    try:
        from api.app import create_app

        redis_url = runtime.settings.redis_url
        app = create_app(runtime.settings, queue=_celery_queue(settings, redis_url) if redis_url else None)
        app.state.components = runtime.components  # /readyz reports what the supervisor watches
        print(f"memsvc listening on http://{host}:{port}  (docs at /docs, dashboard at /dashboard)", flush=True)
        # log_config=None: uvicorn's records go through memsvc's handler (memsvc.logformat) with the levels set
        # there; its access log only when verbose.
        config = uvicorn.Config(app, host=host, port=port, log_config=None, log_level=None,
                                access_log=settings.verbose)
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn has shut down; now the runtime stops
            uvicorn.Server(config).run(sockets=[sock])
    finally:
        runtime.stop()
    if lock is not None:
        lock.release()  # held until everything it guards has stopped
    return 0


@contextlib.contextmanager
def _preparing(settings: Settings) -> Iterator[None]:
    """A database error while the runtime starts (a migration the user may not run, a server that went away)
    becomes one paragraph instead of a traceback."""
    from sqlalchemy.exc import DBAPIError

    from memsvc.startup import StartupError, safe_url

    try:
        yield
    except DBAPIError as exc:
        where = safe_url(settings.database_url) if settings.database_url else "the embedded database"
        reason = " ".join(str(exc.orig).split())[:400]
        raise StartupError(
            f"memsvc could not prepare {where}: {reason}. The server stopped before serving anything. If this "
            "is about permissions, the database user needs to be able to create tables and the vector extension "
            "(or have it created once by an administrator: CREATE EXTENSION vector); otherwise check the "
            "database server's log."
        ) from None


def _celery_queue(settings: Settings, broker_url: str) -> JobQueue:
    """The job queue of this deployment: the broker at broker_url, the Celery queue its workers consume."""
    from workers.queue import CeleryJobQueue

    return CeleryJobQueue(broker_url, settings.lifecycle.celery_queue)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    if args.metrics_port is None:
        from workers.app import run_worker

        return run_worker(settings, concurrency=args.concurrency, queues=args.queues)
    import shutil

    from memsvc import metrics

    # Before anything imports prometheus-client: this worker and its pool processes write under one directory.
    directory = settings.state_path / "metrics" / f"worker-{os.getpid()}"
    if metrics.enable_multiprocess(directory):
        metrics.serve_directory(directory, args.metrics_host, args.metrics_port)
    try:
        from workers.app import run_worker

        return run_worker(settings, concurrency=args.concurrency, queues=args.queues)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    from workers.app import run_beat

    return run_beat(settings)


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from memsvc import tenancy
    from memsvc.db import get_engine, session_scope
    from memsvc.errors import MemsvcError
    from memsvc.models import Tenant

    if args.action == "revoke" and not args.key_id:
        print("memsvc keys revoke: which key? give its id (see `memsvc keys list`)", file=sys.stderr)
        return 2
    with session_scope(get_engine(_database_url(settings))) as session:
        tenant_name = args.tenant or (tenancy.DEFAULT_TENANT if args.action == "create" else None)
        tenant = session.scalar(select(Tenant).where(Tenant.name == tenant_name)) if tenant_name else None
        if tenant is None and args.action == "create" and args.create_tenant:
            tenant = tenancy.create_tenant(session, tenant_name)
        if tenant is None and tenant_name is not None:
            print(f"no tenant named {tenant_name!r}" + (" (use --create-tenant)" if args.action == "create" else ""),
                  file=sys.stderr)
            return 2
        if args.action == "create":
            assert tenant is not None
            try:
                key, secret = tenancy.create_key(
                    session, tenant.id, args.scopes, name=args.name, user_ids=args.user_id or None
                )
            except MemsvcError as exc:  # e.g. a restricted key with the admin scope
                print(exc.message, file=sys.stderr)
                return 2
            print(f"{secret}\n(key id {key.id}, scopes {','.join(key.scopes)}; the secret is not stored)")
        elif args.action == "list":
            _print_keys(tenancy.keys_by_tenant(session, tenant.id if tenant is not None else None))
        else:
            from memsvc.store import parse_uuid

            try:
                key_id = parse_uuid(args.key_id, "key id")
                owner = tenant.id if tenant is not None else tenancy.key_tenant(session, key_id)
                if owner is None:
                    print(f"no API key {key_id}", file=sys.stderr)
                    return 2
                key = tenancy.revoke_key(session, owner, key_id)
            except MemsvcError as exc:  # unknown id, or the last key that can administer
                print(exc.message, file=sys.stderr)
                return 2
            print(f"revoked {key.id}")
    return 0


def _print_keys(rows: list[tuple[str, Any]]) -> None:
    table = [("TENANT", "KEY ID", "PREFIX", "SCOPES", "STATE", "RESTRICTED TO", "NAME")]
    for tenant, key in rows:
        restricted = ",".join([*(f"user:{u}" for u in key.user_ids or ()),
                               *(f"agent:{a}" for a in key.agent_ids or ())])
        table.append((tenant, str(key.id), f"{key.prefix}…", ",".join(key.scopes),
                      "revoked" if key.revoked_at else "active", restricted or "-", key.name or ""))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    if len(table) == 1:
        print("(no keys)")


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    import runpy

    script = BENCH_DIR / f"{args.name}.py"
    if args.name not in bench_names():
        print(f"no benchmark {args.name!r} in {BENCH_DIR}; there are: {', '.join(bench_names()) or 'none'}",
              file=sys.stderr)
        return 2
    # As `python bench/NAME.py` would have it: the bench folder first on the path (benches import their
    # siblings: harness, corpus, ...), then the checkout.
    for folder in (script.parent.parent, script.parent):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    sys.argv = [f"memsvc bench {args.name}", *args.rest]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM / SIGHUP in bench/harness.py: what it started is stopped
        print(f"memsvc bench {args.name}: interrupted", file=sys.stderr)
        return 130
    return 0


def cmd_mcp(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from memsvc.mcp_server import McpConfig, serve
    except ImportError as exc:  # optional: the mcp package and the SDK
        print(f"`memsvc mcp` needs {exc.name}: pip install 'mcp>=2.3' && pip install -e clients/python",
              file=sys.stderr)
        return 2
    config = McpConfig.from_env(url=args.url, api_key=args.api_key, user_id=args.user_id, agent_id=args.agent_id)
    serve(config, args.transport, host=args.host, port=args.port)
    return 0


BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"


def bench_names() -> list[str]:
    """The runnable benchmarks in bench/ (a checkout's; an installed wheel has none)."""
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if 'if __name__ == "__main__"' in p.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memsvc", description="Long-term memory service for AI agents.",
        epilog="Settings come from MEMSVC_* environment variables (see the README). `memsvc COMMAND --help` "
               "tells more about each command.")
    parser.add_argument("--version", action="version", version=f"memsvc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Long-running commands: quiet by default (warnings and memsvc's own info), everything with -v.
    loud = argparse.ArgumentParser(add_help=False)
    loud.add_argument("-v", "--verbose", action="store_true",
                      help="also libraries' info logs (uvicorn access log, Celery), banners and progress bars "
                           "(MEMSVC_VERBOSE=1)")

    serve = sub.add_parser("serve", parents=[loud], help="run the API (+ embedded database, broker and workers by "
                           "default)", description="Run the HTTP API. With no MEMSVC_DATABASE_URL / MEMSVC_REDIS_URL"
                           " it starts an embedded PostgreSQL and broker under MEMSVC_STATE_DIR, and (unless "
                           "--no-workers) a worker and a beat, all stopped again on Ctrl-C or SIGTERM.")
    serve.add_argument("--host", help="address to listen on (MEMSVC_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on, 0 for any free one (MEMSVC_PORT, default 8420)")
    serve.add_argument("--no-workers", action="store_true", help="do not start a worker and beat alongside")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", parents=[loud], help="run a Celery worker (lifecycle jobs)",
                            description="Run a Celery worker for lifecycle jobs (needs MEMSVC_DATABASE_URL and "
                            "MEMSVC_REDIS_URL).")
    worker.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    worker.add_argument("--queues", default=None, help="comma-separated queues to consume (default: memsvc's)")
    worker.add_argument("--metrics-port", type=int, default=None,
                        help="serve this worker's job and embedding metrics (Prometheus) on this port; a worker "
                        "that `memsvc serve` starts reports through the API's /metrics instead")
    worker.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)")
    worker.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", parents=[loud], help="run the Celery beat scheduler (periodic decay, "
                          "consolidation)", description="Run the Celery beat scheduler: periodic decay, "
                          "consolidation sweeps and job recovery (one per deployment).")
    beat.set_defaults(func=cmd_beat)

    mig = sub.add_parser("migrate", help="apply database migrations (default: to head)")
    mig.add_argument("revision", nargs="?", default="head")
    mig.add_argument("--downgrade", action="store_true", help="downgrade to REVISION (e.g. base)")
    mig.set_defaults(func=cmd_migrate)

    reemb = sub.add_parser("reembed", help="re-embed stored memories after a change of embedding model",
                           description="Bring every stored vector to MEMSVC_EMBEDDING_MODEL: resize the dense column "
                           "when the model's dimension differs (clears the old vectors; asks for --yes), then "
                           "embed each memory another model embedded, in batches. Safe to interrupt and run again.")
    reemb.add_argument("--yes", action="store_true", help="agree to clearing vectors of another dimension")
    reemb.add_argument("--batch", type=int, default=128, help="memories per transaction (default 128)")
    reemb.set_defaults(func=cmd_reembed)

    keys = sub.add_parser("keys", help="manage API keys", description="Create, list or revoke API keys (straight "
                          "in the database, no running server needed). `list` shows every tenant's keys unless "
                          "--tenant names one.")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="key id to revoke")
    keys.add_argument("--tenant", default=None,
                      help="tenant name (create: default 'default'; list: all tenants; revoke: the key's own)")
    keys.add_argument("--create-tenant", action="store_true")
    keys.add_argument("--name", default="")
    keys.add_argument("--scopes", nargs="+", default=["read", "write"], choices=["read", "write", "admin", "root"])
    keys.add_argument("--user-id", action="append", help="restrict the key to this user_id (repeatable)")
    keys.set_defaults(func=cmd_keys)

    bench = sub.add_parser("bench", help="run a benchmark harness from bench/",
                           description="Run bench/NAME.py with the arguments that follow; `memsvc bench NAME --help` "
                           "shows a benchmark's own options.")
    bench.add_argument("name", help="one of: " + (", ".join(bench_names()) or "(no bench/ folder here)"))
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own arguments")
    bench.set_defaults(func=cmd_bench)

    mcp = sub.add_parser("mcp", help="MCP server (tools remember, recall, get_context, forget) over a memsvc API")
    mcp.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="http = streamable HTTP")
    mcp.add_argument("--url", help="memsvc API base URL (MEMSVC_URL, default http://127.0.0.1:8420)")
    mcp.add_argument("--api-key", help="API key the tools act with (MEMSVC_API_KEY)")
    mcp.add_argument("--user-id", help="default user_id for tools called without one")
    mcp.add_argument("--agent-id", help="default agent_id for tools called without one")
    mcp.add_argument("--host", default="127.0.0.1", help="http transport: address to bind")
    mcp.add_argument("--port", type=int, default=8421, help="http transport: port (served at /mcp)")
    mcp.set_defaults(func=cmd_mcp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `memsvc`: what it can do
        parser.print_help()
        return 0
    settings = get_settings()
    if getattr(args, "verbose", False):
        settings = settings.model_copy(update={"verbose": True})
        os.environ["MEMSVC_VERBOSE"] = "1"  # the worker and beat that serve starts inherit it
    configure_logging(settings)  # one handler, text or JSON; log redaction (memsvc.logsafe) installed with it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from memsvc.startup import StartupError

    try:
        return int(args.func(args, settings) or 0)
    except StartupError as exc:  # something the operator can fix: say what, without a traceback
        print(f"memsvc {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
