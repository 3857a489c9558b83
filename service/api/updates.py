"""What one document update does, on an ingestion thread: read, index, install; and
the merge of the delta segment it may start on a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ingest.limits import Budget
from ingest.loaders import load_bytes, with_stated
from ingest.merge import merge
from ingest.update import Action, update
from service.answer.store import store_of
from service.api.schemas.core import DocumentUpdate
from service.api.state import AppState


@dataclass(frozen=True)
class UpdateRequest:
    """An upload, replacement or removal as the HTTP layer received it.

    `data` is the uploaded file (None for a removal); `stated` the metadata form fields.
    """

    collection: str | None
    action: Action
    source: str
    data: bytes | None = None
    stated: Mapping[str, str | None] | None = None


def apply_update(state: AppState, request: UpdateRequest, stop: threading.Event) -> DocumentUpdate:
    """Read the upload, index it, and serve the new index version; raises ZhiceErrors.

    The document is refused as soon as it passes the per-document limits, and the work
    stops at its next check once `stop` is set (until the commit).
    """
    if request.action != "add":
        state.pipeline(request.collection)  # the collection must exist
    settings = state.settings.collection(request.collection)
    budget = Budget(request.source, settings.limits(), stop)
    loaded = state.pipeline().retriever  # one model and tokeniser serve every collection
    document = None
    if request.data is not None:
        read = load_bytes(request.source, request.data, budget)
        document = with_stated(read, request.stated or {})
    result = update(
        settings.corpus_dir,
        settings.index_dir,
        settings.embedding_model,
        loaded.embedder,
        request.action,
        request.source,
        document,
        request.data,
        tokenizer=loaded.tokenizer,
        budget=budget,
        batch_size=settings.batch_size,
        milvus=settings.milvus_target(),
    )
    state.install(store_of(result.index), request.collection)
    if result.merge_due(settings.merge_above):
        start_merge(state, request.collection)
    return DocumentUpdate(
        action=request.action,
        source=request.source,
        title=document.title if document else None,
        chunks=result.embedded,  # every chunk of the new document is embedded
        embedded=result.embedded,
        documents=len(result.index.documents),
        seconds=round(result.seconds, 3),
    )


def start_merge(state: AppState, collection: str | None) -> None:
    """Merge a collection's delta segment in the background, then serve the result.

    Updates go on meanwhile; the merge rebases onto them (`ingest.merge`). Nothing
    starts while a merge of that index runs already.
    """
    settings = state.settings.collection(collection)

    def work(before_rebase: Callable[[], None] | None) -> None:
        merged = merge(
            settings.index_dir,
            settings.embedding_model,
            settings.embedding_backend,
            before_rebase=before_rebase,
        )
        if merged is not None:
            state.install(store_of(merged), collection)

    state.merges.start(str(settings.index_dir), work)
