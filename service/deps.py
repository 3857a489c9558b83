"""Request dependencies: the loaded pipeline and the settings."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from ingest.errors import ZhiceError
from ingest.settings import Settings
from ingest.store import LoadedIndex, current_version, load_index
from service.errors import NotReadyError
from service.metrics import Metrics
from service.qa import QA
from service.runtime import with_index

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """What the lifespan loads; `qa` is None until the index and model are ready.

    `qa` is replaced, never changed: a request takes it once and sees one version of
    the index throughout, while an update installs the next.
    """

    settings: Settings
    metrics: Metrics
    qa: QA | None = None
    failure: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)
    _swap: threading.Lock = field(default_factory=threading.Lock)
    _following: threading.Lock = field(default_factory=threading.Lock)

    def install(self, index: LoadedIndex) -> None:
        """Serve `index` from now on, if it is still the version in force."""
        with self._swap:
            qa = self.qa
            if qa is None or current_version(self.settings.index_dir) != index.path.name:
                return  # a newer version is already current; its loader installs it
            if qa.retriever.index.path.name != index.path.name:
                self.qa = with_index(qa, index, self.settings)
                log.info("serving index %s (%d chunks)", index.path.name, len(index.chunks))

    def follow(self) -> None:
        """Load the index in force in the background if another process changed it.

        One system call a request; `zhice add` and `zhice remove` in another process
        reach the running service this way.
        """
        qa = self.qa
        if qa is None or current_version(self.settings.index_dir) in {
            None,
            qa.retriever.index.path.name,
        }:
            return
        if self._following.acquire(blocking=False):
            threading.Thread(target=self._reload, daemon=True, name="zhice-follow").start()

    def _reload(self) -> None:
        try:
            self.install(load_index(self.settings.index_dir, self.settings.embedding_model))
        except (ZhiceError, OSError, ValueError) as exc:  # e.g. a version removed mid-read
            log.warning("could not load the new index version: %s", exc)
        finally:
            self._following.release()


def get_state(request: Request) -> AppState:
    """The application's state object."""
    state: AppState = request.app.state.zhice
    return state


def get_qa(state: Annotated[AppState, Depends(get_state)]) -> QA:
    """The question-answering pipeline, or 503 while it loads."""
    qa = state.qa
    if qa is None:
        raise NotReadyError(state.failure or "the index and model are still loading")
    state.follow()
    return qa


StateDep = Annotated[AppState, Depends(get_state)]
QADep = Annotated[QA, Depends(get_qa)]
