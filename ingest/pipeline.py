"""Ingestion: corpus → chunks → embeddings → index, skipping work that is unchanged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ingest.build import analysis, build_version
from ingest.catalog import is_catalog
from ingest.chunking import chunk_document
from ingest.embedding import Embedder, Vectors, embed_passages, same_vectors
from ingest.errors import CorpusError, ZhiceError
from ingest.loaders import corpus_files, load_document
from ingest.store import (
    Manifest,
    load_index,
    locked,
    read_manifest,
)
from ingest.types import Chunk, Document

if TYPE_CHECKING:
    from ingest.milvus import MilvusTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What an ingestion run did."""

    rebuilt: bool
    documents: int
    chunks: int
    embedded: int
    reused: int
    seconds: float
    path: Path
    skipped: dict[str, str] = field(default_factory=dict)  # file name -> why


def load_corpus(corpus_dir: Path) -> tuple[list[Document], dict[str, str]]:
    """Every readable report in the corpus directory, and why the others were skipped.

    A scanned PDF, a damaged or empty file is reported and left out — one bad file
    does not stop the rest from being indexed, nor is it indexed as empty.
    """
    documents, skipped = [], {}
    for path in corpus_files(corpus_dir):
        try:
            documents.append(load_document(path))
        except CorpusError as exc:
            log.warning("skipping %s: %s", path.name, exc.message)
            skipped[path.name] = exc.message
    return documents, skipped


def is_current(
    manifest: Manifest | None, documents: Sequence[Document], model: str, backend: str = "torch"
) -> bool:
    """True when the index was built from exactly these documents with this model.

    A backend whose vectors are interchangeable with the builder's (torch, fp32 ONNX)
    keeps the index; another (int8 against fp32) rebuilds it.
    """
    return (
        manifest is not None
        and manifest.model == model
        and same_vectors(manifest.backend, backend)
        and dict(manifest.chunker) == analysis()
        and dict(manifest.corpus) == {d.source: d.sha256 for d in documents}
    )


def ingest(
    corpus_dir: Path,
    index_dir: Path,
    model: str,
    embedder: Callable[[], Embedder],
    *,
    backend: str = "torch",
    batch_size: int = 16,
    force: bool = False,
    progress: bool = True,
    milvus: MilvusTarget | None = None,
) -> IngestResult:
    """Build the index for the corpus unless it is already current.

    `embedder` is called only when something must be embedded, so an unchanged
    corpus never loads the model; `backend` is the one it will use
    (ZHICE_EMBEDDING_BACKEND), recorded in the manifest. With `milvus`, chunks and
    vectors go to a new Milvus collection and the index directory keeps the catalog.
    """
    with locked(index_dir):  # never at the same time as a live update
        return _ingest(
            corpus_dir, index_dir, model, embedder, backend, batch_size, force, progress, milvus
        )


def _ingest(
    corpus_dir: Path,
    index_dir: Path,
    model: str,
    embedder: Callable[[], Embedder],
    backend: str,
    batch_size: int,
    force: bool,
    progress: bool,
    milvus: MilvusTarget | None,
) -> IngestResult:
    began = time.perf_counter()
    documents, skipped = load_corpus(corpus_dir)
    if not documents:
        raise ZhiceError(f"no readable reports found in {corpus_dir}")
    same_store = is_catalog(index_dir) == (milvus is not None)
    if not force and same_store and is_current(read_manifest(index_dir), documents, model, backend):
        log.info("index in %s is up to date; nothing to do", index_dir)
        manifest = read_manifest(index_dir)
        count = manifest.chunk_count if manifest else 0
        return IngestResult(
            rebuilt=False,
            documents=len(documents),
            chunks=count,
            embedded=0,
            reused=count,
            seconds=0.0,
            path=index_dir,
            skipped=skipped,
        )
    chunks = []
    for doc in documents:
        found = chunk_document(doc)
        if not found:
            log.warning("%s has no text to index; it will not be searchable", doc.source)
        chunks.extend(found)
    model_impl = embedder()
    if milvus is not None:
        from ingest.milvus_write import build_milvus, previous_vectors

        # Moving a local index to Milvus reuses its vectors too.
        previous = (
            previous_vectors(index_dir, milvus, model, backend)
            if is_catalog(index_dir)
            else _previous_vectors(index_dir, model, backend)
        )
        vectors, embedded = _embed(chunks, model_impl, previous, batch_size, progress)
        path = build_milvus(
            index_dir,
            milvus,
            model=model,
            documents=documents,
            chunks=chunks,
            vectors=vectors,
            began=began,
            backend=backend,
        ).path
    else:
        previous = {} if is_catalog(index_dir) else _previous_vectors(index_dir, model, backend)
        vectors, embedded = _embed(chunks, model_impl, previous, batch_size, progress)
        path = build_version(
            index_dir,
            model=model,
            documents=documents,
            chunks=chunks,
            vectors=vectors,
            began=began,
            backend=backend,
        ).path
    seconds = time.perf_counter() - began
    log.info("indexed %d chunks (%d embedded) in %.1f s", len(chunks), embedded, seconds)
    return IngestResult(
        rebuilt=True,
        documents=len(documents),
        chunks=len(chunks),
        embedded=embedded,
        reused=len(chunks) - embedded,
        seconds=seconds,
        path=path,
        skipped=skipped,
    )


def _previous_vectors(index_dir: Path, model: str, backend: str) -> dict[str, Vectors]:
    """Vectors of the current index by chunk id, to avoid re-embedding unchanged text.

    None from an index of another model or of a backend with other vectors.
    """
    try:
        old = load_index(index_dir, model, backend)
    except ZhiceError:
        return {}
    stored = old.vectors.vectors()
    return {_content_key(chunk): stored[i] for i, chunk in enumerate(old.chunks)}


def _embed(
    chunks: Sequence[Chunk],
    embedder: Embedder,
    previous: dict[str, Vectors],
    batch_size: int,
    progress: bool,
) -> tuple[Vectors, int]:
    vectors = np.zeros((len(chunks), embedder.dimension), dtype=np.float32)
    todo = []
    for i, chunk in enumerate(chunks):
        old = previous.get(_content_key(chunk))
        if old is not None and old.shape == (embedder.dimension,):
            vectors[i] = old
        else:
            todo.append(i)
    texts = [chunks[i].search_text for i in todo]
    if todo:
        vectors[todo] = embed_passages(embedder, texts, batch_size, progress=progress)
    return vectors, len(todo)


def _content_key(chunk: Chunk) -> str:
    """The content-hash part of a chunk id: equal text, equal vector."""
    return chunk.chunk_id.rsplit(":", 1)[1]
