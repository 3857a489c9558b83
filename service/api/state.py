"""The application state: the pipelines served, and how a new index version is installed."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from ingest.store import current_version, read_manifest
from service.answer.build import with_index
from service.answer.qa import QA
from service.answer.store import Store, load_store
from service.api.jobs import IngestQueue, Merges
from service.api.middleware.metrics import Metrics
from service.config import DEFAULT_COLLECTION, Settings
from service.errors import NotReadyError, UnknownCollectionError, ZhiceError

log = logging.getLogger(__name__)


@dataclass
class AppState:
    """What the lifespan loads; `qa` is None until the index and model are ready.

    `qa` serves the default collection, `collections` the others by name. A pipeline is
    replaced, never changed: a request takes one once and sees one version of its index
    throughout, while an update installs the next.
    """

    settings: Settings
    metrics: Metrics
    jobs: IngestQueue
    merges: Merges = field(default_factory=Merges)
    qa: QA | None = None
    collections: dict[str, QA] = field(default_factory=dict)
    failure: str | None = None
    loaded: threading.Event = field(default_factory=threading.Event)
    _swap: threading.Lock = field(default_factory=threading.Lock)
    _following: threading.Lock = field(default_factory=threading.Lock)

    def pipeline(self, collection: str | None = None) -> QA:
        """The pipeline of a collection (None: the default), or 503 while loading."""
        qa = self.qa
        if qa is None:
            raise NotReadyError(self.failure or "the index and model are still loading")
        settings = self.settings.collection(collection)  # rejects malformed names
        self.follow(collection)
        if settings is self.settings:
            return qa
        found = self.collections.get(collection or "")
        if found is None and read_manifest(settings.index_dir) is not None:
            # Made by another process (`zhice add --collection`) since we started.
            self.install(load_store(settings), collection)
            found = self.collections.get(collection or "")
        if found is None:
            raise UnknownCollectionError(
                f"no collection named {collection!r}; see GET /collections"
            )
        return found

    def install(self, index: Store, collection: str | None = None) -> None:
        """Serve `index` for a collection from now on, if it is still the version in force."""
        settings = self.settings.collection(collection)
        with self._swap:
            if self.qa is None or current_version(settings.index_dir) != index.path.name:
                return  # a newer version is already current; its loader installs it
            serving = self._serving(collection)
            if serving is not None and serving.retriever.store.path.name == index.path.name:
                return
            qa = with_index(self.qa, index, settings)
            if settings is self.settings:
                self.qa = qa
            else:
                self.collections = {**self.collections, str(collection): qa}
            log.info("serving %s (%d chunks)", index.path, len(index))

    def follow(self, collection: str | None = None) -> None:
        """Load a collection's index in the background if another process changed it.

        One system call a request; `zhice add` and `zhice remove` in another process
        reach the running service this way.
        """
        serving = self._serving(collection)
        if serving is None:
            return
        settings = self.settings.collection(collection)
        version = current_version(settings.index_dir)
        if version in {None, serving.retriever.store.path.name}:
            return
        if self._following.acquire(blocking=False):
            threading.Thread(
                target=self._reload, args=(collection,), daemon=True, name="zhice-follow"
            ).start()

    def load_collections(self) -> None:
        """Load every collection directory's index beside the default pipeline."""
        for name in self.settings.collection_names()[1:]:
            settings = self.settings.collection(name)
            try:
                self.install(load_store(settings), name)
            except ZhiceError as exc:
                log.error("collection %s not served: %s", name, exc.message)

    def _serving(self, collection: str | None) -> QA | None:
        if collection is None or collection == DEFAULT_COLLECTION:
            return self.qa
        return self.collections.get(collection)

    def _reload(self, collection: str | None) -> None:
        settings = self.settings.collection(collection)
        try:
            self.install(load_store(settings), collection)
        except (ZhiceError, OSError, ValueError) as exc:  # e.g. a version removed mid-read
            log.warning("could not load the new index version: %s", exc)
        finally:
            self._following.release()
