"""The admin dashboard (GET /dashboard: static HTML + JS + CSS from api/static) and the two reads it
needs that no other area provides: GET /v1/stats and GET /v1/memories/{id}/links."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Depends, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from api.deps import MemoryId, get_store, requires
from api.openapi import errors
from memsvc.errors import NotFound
from memsvc.stats import Lineage, Stats, StatsFilters, lineage, memory_stats
from memsvc.store import MemoryStore, parse_uuid
from memsvc.tenancy import Principal

router = APIRouter(tags=["dashboard"])
STATIC = Path(__file__).resolve().parent.parent / "static"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# Everything the page uses comes from this server: no CDN, no inline script, no third-party fetch.
# The browser enforces that, so a memory's content rendered by mistake as HTML could not run script.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}


@lru_cache(maxsize=1)
def _assets() -> dict[str, Path]:
    # A fixed set of names read once: the asset route never joins a request path onto the filesystem.
    return {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES}


def _file(name: str) -> FileResponse:
    path = _assets().get(name)
    if path is None:
        raise NotFound(f"no dashboard asset {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> Response:
    return _file("index.html")


@router.get("/dashboard/", include_in_schema=False)
def dashboard_slash() -> Response:
    return RedirectResponse("/dashboard", status_code=308)


@router.get("/dashboard/{name}", include_in_schema=False)
def dashboard_asset(name: str) -> Response:
    return _file(name)


@router.get("/v1/stats", response_model=Stats, description=(
    "Memory counts of the caller's scope by tier and by kind (optionally for one user, agent and/or session), "
    "and the user/agent/session ids with the most memories."
))
def stats(
    user_id: str | None = Query(default=None, min_length=1, max_length=200),
    agent_id: str | None = Query(default=None, min_length=1, max_length=200),
    session_id: str | None = Query(default=None, min_length=1, max_length=200),
    _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store),
) -> Stats:
    return memory_stats(store.session, store.scope, StatsFilters(user_id, agent_id, session_id))


@router.get("/v1/memories/{memory_id}/links", response_model=Lineage, tags=["memories"], responses=errors(404),
            description=(
    "A memory's lineage, both directions: what it was derived from / supersedes / was merged into (out), "
    "and what was derived from it / supersedes it / was merged into it (in)."
))
def memory_links(
    memory_id: MemoryId, _: Principal = Depends(requires("read")), store: MemoryStore = Depends(get_store),
) -> Lineage:
    return lineage(store.session, store.scope, parse_uuid(memory_id))
