"""Live updates: add, replace or remove one document without rebuilding the rest.

Only the changed document is chunked, embedded and tokenised: its chunks join a small
delta segment and the chunks it had are marked dead, while the large segment's files
are shared with the previous version (see `ingest.store`); BM25 statistics are computed
at query time, so nothing else is rebuilt. An update never merges the delta into the
large segment: a merge rebuilds the ANN index, so it runs beside updates
(`ingest.merge`), started by the service after an update or by `zhice merge`. The corpus
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ingest.bm25 import Postings
from ingest.build import build_version
from ingest.chunking import chunk_document
from ingest.embedding import Embedder, Vectors, embed_passages
from ingest.errors import (
    DocumentExistsError,
    DocumentNotFoundError,
    EmptyDocumentError,
    LastDocumentError,
)
from ingest.limits import Budget
from ingest.merge import merge_due, remove_stale_merges
from ingest.store import (
    Delta,
    LoadedIndex,
    base_where,
    chunk_table,
    current_version,
    load_index,
    locked,
    open_version,
    read_delta,
    read_manifest,
    remove_stale_versions,
    stored_layout,
    write_update,
)
from ingest.tokenize import Tokenizer
from ingest.types import Chunk, Document

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

    def merge_due(self, merge_above: int) -> bool:
        """Whether the local index it left has outgrown `merge_above` (`ingest.merge`);
        never for Milvus, which has no delta segment."""
        return isinstance(self.index, LoadedIndex) and merge_due(self.index.manifest, merge_above)


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
    hook for tests that kill the process there. Live changes collect in a delta segment
    (see `_apply`; `ingest.merge.merge_due` says when to merge it). With
    `milvus`, the knowledge base lives in Milvus and only the changed document's rows are
    written (`ingest.milvus_write`).
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
        _check(old.manifest.corpus if old else {}, action, source, document)
        new_chunks: list[Chunk] = []
        fresh = np.zeros((0, embedder.dimension), np.float32)
        if document is not None:
            new_chunks = chunk_document(document, budget=budget)
            if not new_chunks:
                raise EmptyDocumentError(f"{source}: no text to index")
            texts = [c.search_text for c in new_chunks]
            fresh = embed_passages(embedder, texts, batch_size, before_batch=budget.check)
        clear_stale_uploads(corpus_dir)
        corpus = CorpusChange(corpus_dir, action, source, data, budget, crash_before_switch)

        change = _Change(source, document, new_chunks, fresh, tokenizer or Tokenizer())
        try:
            if old is None:
                assert document is not None, "the first document is an addition"
                index = build_version(
                    index_dir,
                    model=model,
                    documents=[document],
                    chunks=new_chunks,
                    vectors=fresh,
                    began=began,
                    backend=embedder.backend,
                    tokenizer=change.tokenizer,
                    before_switch=corpus.commit,
                )
            else:
                index = _apply(index_dir, old, change, began, corpus.commit)
        finally:
            corpus.discard()
    seconds = time.perf_counter() - began
    log.info(
        "%s %s: %d chunks (%d embedded) in %.2f s",
        action,
        source,
        len(index.chunks),
        len(new_chunks),
        seconds,
    )
    return UpdateResult(
        action=action,
        source=source,
        chunks=len(index.chunks),
        embedded=len(new_chunks),
        seconds=seconds,
        index=index,
    )


@dataclass(frozen=True)
class _Change:
    """One document's new state: None (removed) or its chunks and their vectors."""

    source: str
    document: Document | None
    chunks: list[Chunk]
    vectors: Vectors
    tokenizer: Tokenizer


def _apply(
    index_dir: Path,
    old: LoadedIndex,
    change: _Change,
    began: float,
    before_switch: Callable[[], None],
) -> LoadedIndex:
    """Write the version after `change`: the delta segment with its chunks appended, the
    document's previous chunks dead. Only the changed document is tokenised."""
    added = Postings.build([change.tokenizer.tokenize(c.search_text) for c in change.chunks])
    table = chunk_table(old)
    gone = table.stored(table.ids_of(change.source))
    _, stored, dead = stored_layout(old)
    dead = np.union1d(dead, gone).astype(np.int64)
    delta = read_delta(old, old.manifest.dimension)
    documents = [d for d in delta.documents if d.source != change.source]
    corpus = {s: h for s, h in old.manifest.corpus.items() if s != change.source}
    if change.document is not None:
        documents.append(change.document)
        corpus[change.document.source] = change.document.sha256
    chunks = [*delta.chunks, *change.chunks]
    manifest = replace(
        old.manifest,
        corpus=corpus,
        chunk_count=stored + len(change.chunks) - len(dead),
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        build_seconds=round(time.perf_counter() - began, 3),
        delta_chunks=len(chunks),
        dead_chunks=len(dead),
    )
    where = {s: w for s, w in base_where(old).items() if s != change.source}
    path = write_update(
        index_dir,
        manifest,
        old.path,
        where,
        Delta(
            documents,
            chunks,
            np.vstack([delta.vectors, change.vectors]).astype(np.float32),
            delta.postings.concat(added),
        ),
        dead,
        before_switch=before_switch,
    )
    return open_version(path, manifest)


def _current(index_dir: Path, model: str, backend: str, action: Action) -> LoadedIndex | None:
    """The index in force; None when the first document of a collection is added."""
    if action == "add" and read_manifest(index_dir) is None:
        return None
    return load_index(index_dir, model, backend)


def _check(
    documents: Mapping[str, str], action: Action, source: str, document: Document | None
) -> None:
    """Refuse an update the index's documents (source → content hash) do not allow."""
    exists = source in documents
    if action == "add" and exists:
        raise DocumentExistsError(f"{source} is already in the knowledge base; PUT replaces it")
    if action != "add" and not exists:
        raise DocumentNotFoundError(f"no document named {source!r}; see GET /documents")
    if action == "remove" and len(documents) == 1:
        raise LastDocumentError(f"{source} is the only document; add another first")
    if document is None:
        return
    for other, sha256 in documents.items():
        if sha256 == document.sha256 and other != source:
            raise DocumentExistsError(
                f"{source} has the same content as {other}, already in the knowledge base"
            )


class CorpusChange:
    """An update's file staged in the corpus: `commit` puts it in place (or removes the
    document's file) unless the budget calls the update off first; `discard` drops what
    was not committed."""

    def __init__(
        self,
        corpus_dir: Path,
        action: Action,
        source: str,
        data: bytes | None,
        budget: Budget,
        crash_before_switch: Callable[[], None] | None = None,
    ) -> None:
        self.target = corpus_dir / source
        self.action = action
        self.budget = budget
        self.crash_before_switch = crash_before_switch
        self.staged = stage_upload(corpus_dir, data) if data is not None else None

    def commit(self) -> None:
        """Make the corpus match the update; runs just before the index switch."""
        self.budget.check()  # the last moment an update can be called off
        if self.staged is not None:
            os.replace(self.staged, self.target)
        elif self.action == "remove":
            self.target.unlink(missing_ok=True)
        if self.crash_before_switch is not None:
            self.crash_before_switch()

    def discard(self) -> None:
        """Remove the staged file if it was not committed."""
        if self.staged is not None:
            self.staged.unlink(missing_ok=True)


def clear_stale_uploads(corpus_dir: Path) -> None:
    """Remove the staged files an interrupted update left behind."""
    for name in _remove_stale_uploads(corpus_dir):
        log.warning("removed %s, left by an interrupted update", name)


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
    """Remove what crashed writes left: staged uploads, unfinished or orphaned versions,
    the working directories of merges.

    Run at startup. Skipped (returns []) while another process holds the write lock —
    its files are not leftovers — and a merge's directory while one holds the merge
    lock. Returns the names removed.
    """
    if not index_dir.is_dir():
        return []
    with locked(index_dir, wait=False) as held:
        if not held:
            log.info("%s is being written by another process; not tidied", index_dir)
            return []
        removed = _remove_stale_uploads(corpus_dir)
        removed += remove_stale_versions(index_dir, keep=current_version(index_dir))
        removed += remove_stale_merges(index_dir)
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
