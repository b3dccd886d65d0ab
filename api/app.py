"""The FastAPI application: wiring only. Routes translate HTTP; the rules live in memsvc."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine
from threadpoolctl import threadpool_limits

from api.deps import check_params
from api.errors import install_error_handlers
from api.limits import install_limits
from api.observability import Observe
from api.openapi import install_openapi
from api.routes import (
    admin,
    chat,
    context,
    dashboard,
    health,
    jobs,
    lifecycle,
    memories,
    memtokens,
    metrics,
    recipes,
    search,
    sparse,
)
from memsvc import __version__, logsafe
from memsvc.config import Settings, get_settings
from memsvc.db import get_engine, session_factory
from memsvc.embeddings import Embedder, get_embedder
from memsvc.jobs import backlog
from memsvc.lifecycle.usage import UsageRecorder
from memsvc.memtokens.chat_backend import LocalChatBackend
from memsvc.memtokens.local_models import LocalModels
from memsvc.metrics import build_registry, multiprocess_dir
from memsvc.queue import JobQueue, NullQueue
from memsvc.ratelimit import limiter_for
from memsvc.retrieval.recipes import load_book
from memsvc.retrieval.service import RetrievalService
from memsvc.sparse_encoder import encoder_for

log = logging.getLogger("memsvc.api")

ROUTERS = [health.router, memories.router, search.router, admin.router, context.router, jobs.router, lifecycle.router,
           dashboard.router, chat.router, recipes.router, sparse.router, memtokens.router, metrics.router]


class LazyEmbedder:
    """The app's embedder, loaded on first use: handing it to a request costs nothing, so requests that embed
    nothing (list, get, delete, erase, jobs, admin) never wait for the model after a start; the first that does
    embed waits for the load (which the warm-up thread has usually finished)."""

    def __init__(self, load: Callable[[], Embedder]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._model: Embedder | None = None

    def model(self) -> Embedder:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def loaded(self) -> bool:
        return self._model is not None

    @property
    def name(self) -> str:
        return self.model().name

    @property
    def dim(self) -> int:
        return self.model().dim

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model().embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.model().embed_query(text)

    def __getattr__(self, attr: str) -> Any:  # anything else a particular embedder offers
        return getattr(self.model(), attr)


def _lazy_embedder() -> tuple[Callable[[], Embedder], Callable[[], bool]]:
    lazy = LazyEmbedder(get_embedder)
    return (lambda: lazy), lazy.loaded


def _warm_up(embedder: Callable[[], Embedder], settings: Settings) -> None:
    """Load the model so the first request does not pay for it; then take everything loaded so far (the
    model, tokenizers, libraries: millions of objects) out of the garbage collector's full passes, which
    otherwise stop a request now and then for ~250 ms to re-scan them (measured at 100k memories: one full
    pass in 200 context builds, 247 ms; none with the freeze)."""
    embedder().model()  # type: ignore[attr-defined]
    try:
        encoder_for(settings)  # the learned-sparse model writes use, when there is one
    except Exception as exc:  # a bad MEMSVC_SPARSE_MODEL: the first write says so
        log.warning("learned-sparse model not loaded: %s", exc)
    gc.collect()
    gc.freeze()


def create_app(settings: Settings | None = None, engine: Engine | None = None,
               queue: JobQueue | None = None) -> FastAPI:
    """queue: where jobs go (the composition root, memsvc.cli, hands in the Celery-backed one when a broker is
    configured); none: jobs wait in Postgres, visible through /v1/jobs, until a worker's recovery runs them."""
    settings = settings or get_settings()
    embedder, embedder_loaded = _lazy_embedder()
    # The API runs many small matrix products (near-duplicates among ~200 candidates) beside Postgres on
    # the same cores; a BLAS pool per product only fights them (measured, 2 cores: /v1/context p50
    # 88 -> 70 ms with one BLAS thread). Model inference has its own pools (torch, ONNX Runtime).
    threadpool_limits(limits=1, user_api="blas")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Load the model in the background so the first write does not pay for it.
        threading.Thread(target=_warm_up, args=(embedder, settings), daemon=True, name="embedder-warmup").start()
        yield
        app.state.usage.stop()  # what contexts used and is not written yet

    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from this server (fastapi-offline's copies), not a CDN.
    app = FastAPIOffline(
        title="memsvc", version=__version__, lifespan=lifespan,
        description="Long-term memory for AI agents. Authenticate with `Authorization: Bearer <API key>`.",
        dependencies=[Depends(check_params)],  # every route: no NUL (or broken UTF-8) in a query or path parameter
    )
    app.state.settings = settings
    engine = engine or get_engine(settings.database_url)
    app.state.sessions = session_factory(engine)
    app.state.job_queue = queue or NullQueue()
    # What /metrics serves: every process's events (memsvc serve's workers too) and the state read per scrape.
    app.state.metrics_registry = build_registry(engine, backlog, multiprocess=multiprocess_dir())
    app.state.embedder = embedder
    app.state.embedder_loaded = embedder_loaded
    app.state.usage = UsageRecorder(app.state.sessions, settings.reinforce_flush_seconds)
    # One retrieval service for search, context and chat: the recipes, and reinforcement of what contexts use.
    local_models = LocalModels.from_config(settings.local_models)
    app.state.retrieval = RetrievalService(load_book(settings.recipe, settings.recipes_file), app.state.usage,
                                           local_models)
    # `local/<name>` chat models run in this process (memory tokens spliced in); no network, always allowed.
    app.state.local_chat = LocalChatBackend(local_models)
    logsafe.install(settings)  # no memory content or key material in this process's logs, unless DEBUG
    install_error_handlers(app)
    max_body = settings.max_batch_items * settings.max_content_chars * 4 + 1_000_000

    install_limits(app, max_body, limiter_for(settings))
    app.add_middleware(Observe)  # last added, outermost: requests the limits refuse are counted and get an id

    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)  # every response each route can give, and which routes need a key
    return app
