"""Liveness, readiness and metrics.

These are coroutines on purpose: they run on the event loop, never in the thread pool,
so a busy pool (long questions, slow clients) cannot make a probe time out.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.api.deps import StateDep
from service.api.errors import error_body
from service.api.schemas.core import Health
from service.api.schemas.errors import documented

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses=documented(503))
async def readyz(state: StateDep) -> Health | JSONResponse:
    """The index and model are loaded and questions can be answered."""
    if state.qa is None:
        message = state.failure or "loading the index and model"
        return JSONResponse(error_body("not_ready", message), status_code=503)
    return Health(status="ready", detail=str(state.qa.retriever.store.path))


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics in the text exposition format."""
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4")
