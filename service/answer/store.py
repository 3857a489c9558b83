"""The store the read path searches: one small protocol, a local and a Milvus backend.

`local` is the FAISS + BM25 index in the index directory, searched in this process;
`milvus` (`service.answer.milvus_store`) asks a Milvus server, or milvus-lite, the same
questions. Both rank chunks by the same scores, so fusion and answers do not depend on
the backend. A chunk is named by an integer key: its row in a local index, its primary
key in Milvus.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from ingest.catalog import Catalog, is_catalog
from ingest.errors import IndexIncompatibleError
from ingest.store import LoadedIndex, load_index
from ingest.tables import chunk_counts, chunks_of
from ingest.types import Chunk, Document
from service.answer.filters import Filter, FilterIndex
from service.config import Settings

# (key, score) pairs, best first.
Scored = list[tuple[int, float]]


class TermStats(Protocol):
    """Corpus term statistics the composer weighs question words by."""

    @property
    def vocabulary(self) -> Collection[str]:
        """Every indexed term."""
        ...

    def term_idf(self, term: str) -> float:
        """IDF of a term; unseen terms get the highest possible weight."""
        ...


class Store(Protocol):
    """One version of a knowledge base, searchable by dense vector and by BM25 terms."""

    @property
    def path(self) -> Path:
        """The index version's directory; its name identifies the version."""
        ...

    @property
    def documents(self) -> Mapping[str, Document]:
        """The documents, by source name."""
        ...

    @property
    def terms(self) -> TermStats:
        """BM25 term statistics."""
        ...

    def __len__(self) -> int:
        """Chunks in this version."""
        ...

    def counts(self) -> Mapping[str, int]:
        """Chunks of each document."""
        ...

    def dense(self, vector: npt.NDArray[np.float32], k: int, where: Filter | None) -> Scored:
        """Top-k chunks by inner product with `vector`, among those `where` allows."""
        ...

    def lexical(
        self, tokens: Sequence[str], boosts: Mapping[str, float], k: int, where: Filter | None
    ) -> Scored:
        """Top-k chunks by BM25 score (> 0) for query terms, among those `where` allows.

        `boosts` scales individual terms (e.g. 0.5 for added synonyms).
        """
        ...

    def get(self, keys: Sequence[int]) -> Mapping[int, Chunk]:
        """The chunks of these keys (one deleted since it was found is left out)."""
        ...

    def rows(self, where: Filter) -> list[Chunk]:
        """Every table-row chunk `where` allows, in corpus order."""
        ...

    def chunks(self, source: str | None = None) -> Iterator[Chunk]:
        """Every chunk (of one document), in corpus order."""
        ...


class LocalStore:
    """The FAISS + BM25 index in the index directory, loaded into this process."""

    def __init__(self, index: LoadedIndex) -> None:
        self.index = index
        self.filters = FilterIndex(index.chunks, index.documents)

    @property
    def path(self) -> Path:
        """The index version's directory."""
        return self.index.path

    @property
    def documents(self) -> Mapping[str, Document]:
        """The documents, by source name."""
        return self.index.documents

    @property
    def terms(self) -> TermStats:
        """The BM25 index itself."""
        return self.index.bm25

    def __len__(self) -> int:
        return len(self.index.chunks)

    def counts(self) -> Mapping[str, int]:
        """Chunks of each document (from the stored source codes, not by reading chunks)."""
        return chunk_counts(self.index.chunks)

    def dense(self, vector: npt.NDArray[np.float32], k: int, where: Filter | None) -> Scored:
        """Exact (or HNSW) FAISS search, restricted by an ID selector under a filter."""
        scores, ids = self.index.vectors.search(vector, k, self.filters.allowed(where))
        return [(int(i), float(s)) for s, i in zip(scores, ids, strict=True)]

    def lexical(
        self, tokens: Sequence[str], boosts: Mapping[str, float], k: int, where: Filter | None
    ) -> Scored:
        """BM25 over the query terms' postings only, among the ids the filter allows."""
        ids, scores = self.index.bm25.top(tokens, k, boosts, self.filters.allowed(where))
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]

    def get(self, keys: Sequence[int]) -> Mapping[int, Chunk]:
        """Rows of the chunk list."""
        return {i: self.index.chunks[i] for i in keys}

    def rows(self, where: Filter) -> list[Chunk]:
        """Table rows among the allowed ids."""
        allowed = self.filters.allowed(where)
        chunks = self.index.chunks
        ids = range(len(chunks)) if allowed is None else allowed
        return [chunks[i] for i in ids if chunks[i].kind == "table_row"]

    def chunks(self, source: str | None = None) -> Iterator[Chunk]:
        """The chunk list, in order (one document's read by its stored source codes)."""
        if source is None:
            return iter(self.index.chunks)
        return iter(chunks_of(self.index.chunks, source))


def store_of(loaded: LoadedIndex | Catalog) -> Store:
    """The store serving a just-written index version or catalog."""
    if isinstance(loaded, Catalog):
        from service.answer.milvus_store import MilvusStore

        return MilvusStore(loaded)
    return LocalStore(loaded)


def load_store(settings: Settings) -> Store:
    """The index version in force, from the configured backend (ZHICE_STORE)."""
    target = settings.milvus_target()
    index_dir, model, backend = (
        settings.index_dir,
        settings.embedding_model,
        settings.embedding_backend,
    )
    if target is not None:
        from ingest.catalog import load_catalog

        return store_of(load_catalog(index_dir, model, backend, target))
    if is_catalog(index_dir):
        raise IndexIncompatibleError(
            f"{index_dir} holds a Milvus catalog but ZHICE_STORE=local: set ZHICE_STORE=milvus "
            "(and ZHICE_MILVUS_URI), or run `zhice ingest --force` to build a local index"
        )
    return store_of(load_index(index_dir, model, backend))
