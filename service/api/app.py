"""The FastAPI application factory; the lifespan loads the index and model once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ingest.store import check_index
from ingest.update import recover
from service.answer.build import build_qa
from service.answer.qa import QA
from service.api.errors import install_error_handlers
from service.api.jobs import IngestQueue
from service.api.middleware.metrics import Metrics, MetricsMiddleware
from service.api.middleware.paths import NormalizedPathMiddleware
from service.api.middleware.ratelimit import Clock
from service.api.middleware.requestid import RequestIdMiddleware
from service.api.middleware.security import install_guards
from service.api.middleware.writes import DISABLED, WritesMiddleware
from service.api.routes import ask, chat, documents, feedback, health, jobs, widget
from service.api.schemas.errors import EVERYWHERE, documented
from service.api.state import AppState
from service.config import Settings
from service.errors import ZhiceError

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, qa: QA | None = None, clock: Clock = time.monotonic
) -> FastAPI:
    """Build the app; pass `qa` to serve an already loaded pipeline (tests, embedding).

    `clock` drives the rate limiter, so tests can move time without sleeping.
    """
    settings = settings or Settings()
    state = AppState(
        settings=settings,
        metrics=Metrics(),
        jobs=IngestQueue(settings.ingest_workers, settings.ingest_queue),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.writes_allowed():
            log.warning("%s", DISABLED)
        for name in settings.collection_names():
            collection = settings.collection(name)
            recover(collection.corpus_dir, collection.index_dir)
        if qa is not None:
            state.qa = qa
            state.load_collections()
            state.loaded.set()
        else:
            # Fail fast, with an instruction, when there is no usable index; the slow
            # part (model and index into memory) runs in the background so /healthz
            # answers at once and /readyz says 503 until it is done.
            check_index(settings.index_dir, settings.embedding_model, settings.embedding_backend)
            threading.Thread(target=_load, args=(state,), daemon=True, name="zhice-load").start()
        try:
            yield
        finally:
            state.jobs.shutdown()

    app = FastAPI(
        title="zhice 知策",
        summary="Cited answers from Chinese policy and industry reports.",
        version="0.1.0",
        lifespan=lifespan,
        responses=documented(*EVERYWHERE),
    )
    app.state.zhice = state
    install_error_handlers(app)
    # From the outside in: path normalisation, request id, metrics (so rejections are
    # counted), CORS, body size, API key, rate limit, write admission. add_middleware
    # wraps what is there, so inner goes first.
    app.add_middleware(WritesMiddleware, queue=state.jobs, allowed=settings.writes_allowed())
    install_guards(app, state.settings, clock)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(NormalizedPathMiddleware)
    for module in (ask, chat, documents, feedback, health, jobs, widget):
        app.include_router(module.router)
    widget.mount_static(app)
    return app


def _load(state: AppState) -> None:
    began = time.perf_counter()
    try:
        state.qa = build_qa(state.settings)
        state.load_collections()
        log.info("ready in %.1f s", time.perf_counter() - began)
    except ZhiceError as exc:
        state.failure = exc.message
        log.error("cannot load: %s", exc.message)
    except Exception as exc:  # a failed load must show in /readyz, not kill the thread silently
        state.failure = f"loading failed: {exc}"
        log.exception("loading failed")
    finally:
        state.loaded.set()
