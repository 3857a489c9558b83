"""Request dependencies: the loaded pipeline and the settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ingest.settings import Settings
from service.errors import NotReadyError
from service.metrics import Metrics
from service.qa import QA


@dataclass
class AppState:
    """What the lifespan loads; `qa` is None until the index and model are ready."""

    settings: Settings
    metrics: Metrics
    qa: QA | None = None
    failure: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)


def get_state(request: Request) -> AppState:
    """The application's state object."""
    state: AppState = request.app.state.zhice
    return state


def get_qa(state: Annotated[AppState, Depends(get_state)]) -> QA:
    """The question-answering pipeline, or 503 while it loads."""
    if state.qa is None:
        raise NotReadyError(state.failure or "the index and model are still loading")
    return state.qa


StateDep = Annotated[AppState, Depends(get_state)]
QADep = Annotated[QA, Depends(get_qa)]
