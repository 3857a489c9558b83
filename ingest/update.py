"""Live updates: add, replace or remove one document without rebuilding the rest.

Only the changed document is chunked and embedded; every other chunk keeps its stored
vector. The BM25 table is rebuilt from the stored chunk texts, because its term
statistics span the whole corpus (tokenising takes about 0.3 ms a chunk). The corpus
directory stays the source of truth that `zhice ingest` reads, so an update writes the
file there too, in this order, under an exclusive lock on the index directory:

1. the new file is staged beside the corpus (`.upload-<random>.tmp`), fsynced;
2. the new index version is written (nothing points at it yet);
3. the staged file replaces (or the removal deletes) the corpus file;
4. the `current` link moves to the new version — the moment readers see the change.

A process killed before 4 leaves the previous index in force: a restarted service
serves exactly the previous state (a stale staged file is ignored and later removed;
a corpus changed in 3 but not yet indexed is picked up by the next `zhice ingest`).
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ingest.build import build_version
from ingest.chunking import chunk_document
from ingest.embedding import Embedder, embed_passages
from ingest.errors import (
    DocumentExistsError,
    DocumentNotFoundError,
    EmptyDocumentError,
    LastDocumentError,
)
from ingest.limits import Budget
from ingest.store import (
    LoadedIndex,
    current_version,
    load_index,
    locked,
    read_manifest,
    remove_stale_versions,
)
from ingest.tokenize import Tokenizer
from ingest.types import Document

if TYPE_CHECKING:
    from ingest.catalog import Catalog
    from ingest.milvus import MilvusTarget

log = logging.getLogger(__name__)

Action = Literal["add", "replace", "remove"]
# Staged uploads are named by a random id, never by the document's name.
STAGED = re.compile(r"^\.upload-[0-9a-f]{32}\.tmp$")


@dataclass(frozen=True)
class UpdateResult:
    """What an update did, and the index now in force."""

    action: Action
    source: str
    chunks: int
    embedded: int
    seconds: float
    index: LoadedIndex | Catalog


def update(
    corpus_dir: Path,
    index_dir: Path,
    model: str,
    embedder: Embedder,
    action: Action,
    source: str,
    document: Document | None = None,
    data: bytes | None = None,
    *,
    tokenizer: Tokenizer | None = None,
    budget: Budget | None = None,
    batch_size: int = 16,
    crash_before_switch: Callable[[], None] | None = None,
    milvus: MilvusTarget | None = None,
) -> UpdateResult:
    """Add, replace or remove one document; return the new index, already in force.

    `corpus_dir` and `index_dir` are a collection's directories, `model` the embedding
    model's name the index must have been built with (by a backend with `embedder`'s
    vectors). `document` and `data` (the file's
    bytes, written to the corpus) are needed to add or replace. Pass the service's
    loaded `tokenizer` to save loading jieba's dictionaries (half a second). The
    `budget` limits the document's chunks, and its `stop` cancels the update at the
    next batch of `batch_size` passages, or just before the commit — never after.
    `crash_before_switch` runs between writing the new state and making it current — a
    hook for tests that kill the process there. With `milvus`, the knowledge base lives
    in Milvus and only the changed document's rows are written (`ingest.milvus_write`).
    """
    began = time.perf_counter()
    budget = budget or Budget(source)
    if milvus is not None:
        from ingest.milvus_write import update_milvus

        return update_milvus(
            corpus_dir,
            index_dir,
            milvus,
            model,
            embedder,
            action,
            source,
            document,
            data,
            tokenizer=tokenizer,
            budget=budget,
            batch_size=batch_size,
            crash_before_switch=crash_before_switch,
        )
    with locked(index_dir):
        old = _current(index_dir, model, embedder.backend, action)
        documents = {s: d for s, d in old.documents.items() if s != source} if old else {}
        _check(old.documents if old else {}, action, source, document)
        chunks = [c for c in old.chunks if c.source != source] if old else []
        if old is None:
            vectors = np.zeros((0, embedder.dimension), np.float32)
        else:
            kept = np.array([c.source != source for c in old.chunks], dtype=bool)
            vectors = old.vectors.vectors()[kept]
        embedded = 0
        if document is not None:
            new_chunks = chunk_document(document, budget=budget)
            if not new_chunks:
                raise EmptyDocumentError(f"{source}: no text to index")
            texts = [c.search_text for c in new_chunks]
            fresh = embed_passages(embedder, texts, batch_size, before_batch=budget.check)
            chunks += new_chunks
            vectors = np.vstack([vectors, fresh]).astype(np.float32)
            documents[source] = document
            embedded = len(new_chunks)
        for name in _remove_stale_uploads(corpus_dir):
            log.warning("removed %s, left by an interrupted update", name)
        staged = stage_upload(corpus_dir, data) if data is not None else None

        def commit_corpus() -> None:
            budget.check()  # the last moment an update can be called off
            target = corpus_dir / source
            if staged is not None:
                os.replace(staged, target)
            elif action == "remove":
                target.unlink(missing_ok=True)
            if crash_before_switch is not None:
                crash_before_switch()

        try:
            index = build_version(
                index_dir,
                model=model,
                documents=documents.values(),
                chunks=chunks,
                vectors=vectors,
                began=began,
                backend=embedder.backend,
                tokenizer=tokenizer,
                before_switch=commit_corpus,
            )
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
    seconds = time.perf_counter() - began
    log.info(
        "%s %s: %d chunks (%d embedded) in %.2f s", action, source, len(chunks), embedded, seconds
    )
    return UpdateResult(
        action=action,
        source=source,
        chunks=len(chunks),
        embedded=embedded,
        seconds=seconds,
        index=index,
    )


def _current(index_dir: Path, model: str, backend: str, action: Action) -> LoadedIndex | None:
    """The index in force; None when the first document of a collection is added."""
    if action == "add" and read_manifest(index_dir) is None:
        return None
    return load_index(index_dir, model, backend)


def _check(
    documents: Mapping[str, Document], action: Action, source: str, document: Document | None
) -> None:
    exists = source in documents
    if action == "add" and exists:
        raise DocumentExistsError(f"{source} is already in the knowledge base; PUT replaces it")
    if action != "add" and not exists:
        raise DocumentNotFoundError(f"no document named {source!r}; see GET /documents")
    if action == "remove" and len(documents) == 1:
        raise LastDocumentError(f"{source} is the only document; add another first")
    if document is None:
        return
    for other in documents.values():
        if other.sha256 == document.sha256 and other.source != source:
            raise DocumentExistsError(
                f"{source} has the same content as {other.source}, already in the knowledge base"
            )


def stage_upload(corpus_dir: Path, data: bytes) -> Path:
    """Write the bytes beside the corpus, durably, under a random name loaders never read."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    staged = corpus_dir / f".upload-{uuid.uuid4().hex}.tmp"
    with open(staged, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return staged


def recover(corpus_dir: Path, index_dir: Path) -> list[str]:
    """Remove what crashed writes left: staged uploads, unfinished or orphaned versions.

    Run at startup. Skipped (returns []) while another process holds the write lock —
    its files are not leftovers. Returns the names removed.
    """
    if not index_dir.is_dir():
        return []
    with locked(index_dir, wait=False) as held:
        if not held:
            log.info("%s is being written by another process; not tidied", index_dir)
            return []
        removed = _remove_stale_uploads(corpus_dir)
        removed += remove_stale_versions(index_dir, keep=current_version(index_dir))
    for name in removed:
        log.warning("removed %s, left by an interrupted write", name)
    return removed


def _remove_stale_uploads(corpus_dir: Path) -> list[str]:
    """Delete files staged by updates that a crash interrupted (we hold the lock)."""
    removed = []
    if corpus_dir.is_dir():
        for path in corpus_dir.iterdir():
            if STAGED.match(path.name):
                path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed
