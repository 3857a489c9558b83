"""The index on disk (the one owner of faiss): a versioned directory plus a manifest.

Layout: `index_dir/current` is a symlink to `index_dir/v-<build id>/`, which holds
`manifest.json`, `documents.jsonl`, `chunks.jsonl` (row i is FAISS id i),
`vectors.faiss` and the BM25 arrays. A build writes a fresh version directory and
then swaps the symlink atomically, so readers see the old or the new index, never a
mix, and a crash mid-build leaves the previous index serving.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.bm25 import BM25
from ingest.embedding import same_vectors
from ingest.errors import IndexIncompatibleError, IndexMissingError
from ingest.types import Chunk, Document

log = logging.getLogger(__name__)
# faiss logs every CPU-feature probe at INFO; only its warnings are worth reading.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

FORMAT_VERSION = 1
# Exact search is fast enough up to here; beyond it an HNSW graph answers in
# milliseconds with recall@10 above 0.95.
EXACT_SEARCH_LIMIT = 200_000
CURRENT = "current"
LOCK_FILE = ".update.lock"


class VectorIndex:
    """Inner-product search over L2-normalised vectors (cosine similarity)."""

    def __init__(self, index: Any) -> None:
        self._index = index

    @classmethod
    def build(cls, vectors: npt.NDArray[np.float32]) -> VectorIndex:
        """Exact search for small corpora, HNSW for large ones."""
        import faiss

        dim = vectors.shape[1]
        index: Any
        if len(vectors) <= EXACT_SEARCH_LIMIT:
            index = faiss.IndexFlatIP(dim)
        else:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 80
            index.hnsw.efSearch = 128
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

    @property
    def kind(self) -> str:
        """The FAISS index class name, recorded in the manifest."""
        return type(self._index).__name__

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def vectors(self) -> npt.NDArray[np.float32]:
        """All stored vectors, row i for id i."""
        return np.asarray(self._index.reconstruct_n(0, len(self)), dtype=np.float32)

    def search(
        self, query: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, ids) for one query vector, optionally among allowed ids only."""
        import faiss

        k = min(k, len(self) if allowed is None else len(allowed))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        params: Any = None
        if allowed is not None:
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBatch(allowed)
        scores, ids = self._index.search(query.reshape(1, -1), k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep].astype(np.int64)

    def save(self, path: Path) -> None:
        """Write the FAISS index file."""
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> VectorIndex:
        """Read a FAISS index file."""
        import faiss

        return cls(faiss.read_index(str(path)))


@dataclass(frozen=True)
class Manifest:
    """What an index was built from; compared against settings to detect staleness."""

    format_version: int
    model: str
    dimension: int
    chunker: Mapping[str, Any]
    corpus: Mapping[str, str]
    chunk_count: int
    index_type: str
    built_at: str
    build_seconds: float
    # The embedding backend that built it (ZHICE_EMBEDDING_BACKEND); older indexes: torch.
    backend: str = "torch"


@dataclass(frozen=True)
class LoadedIndex:
    """Everything the read path needs, loaded once."""

    path: Path
    manifest: Manifest
    documents: Mapping[str, Document]
    chunks: Sequence[Chunk]
    vectors: VectorIndex
    bm25: BM25


@contextmanager
def locked(index_dir: Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold the index directory's write lock (across threads and processes).

    Yields True once held; with `wait=False`, yields False at once if another holds it.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / LOCK_FILE, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def current_path(index_dir: Path) -> Path:
    """The directory of the index now in force."""
    return index_dir / CURRENT


def current_version(index_dir: Path) -> str | None:
    """The name of the version in force (one system call: cheap enough per request)."""
    try:
        return os.readlink(current_path(index_dir))
    except OSError:
        return None


def read_manifest(index_dir: Path) -> Manifest | None:
    """The manifest of the index in force, or None when there is none or it is unreadable."""
    path = current_path(index_dir) / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            return None
        return Manifest(**data)
    except (OSError, ValueError, TypeError):
        return None


def write_index(
    index_dir: Path,
    manifest: Manifest,
    documents: Iterable[Document],
    chunks: Sequence[Chunk],
    vectors: VectorIndex,
    bm25: BM25,
    *,
    before_switch: Callable[[], None] | None = None,
) -> Path:
    """Write a new index version and make it current atomically.

    `before_switch` runs once the version is complete on disk, just before it becomes
    current; if it raises, the version is discarded and the old one stays in force.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    version = f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    tmp = index_dir / f".tmp-{version}"
    tmp.mkdir()
    try:
        _write_jsonl(tmp / "documents.jsonl", (asdict(d) for d in documents))
        _write_jsonl(tmp / "chunks.jsonl", (_chunk_row(c) for c in chunks))
        vectors.save(tmp / "vectors.faiss")
        bm25.save(tmp)
        # The manifest is written last: a directory without one is never loaded.
        (tmp / "manifest.json").write_text(
            json.dumps(asdict(manifest), ensure_ascii=False, indent=1), encoding="utf-8"
        )
        _fsync_dir(tmp)
        final = index_dir / version
        os.replace(tmp, final)
        tmp = final  # from here on, a failure discards the finished version
        if before_switch is not None:
            before_switch()
        link = index_dir / f".{CURRENT}-{version}"
        os.symlink(version, link)
        os.replace(link, current_path(index_dir))
        _fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    remove_stale_versions(index_dir, keep=version)
    return final


def check_index(index_dir: Path, model: str, backend: str = "torch") -> Manifest:
    """The manifest of the index in force; raise when it is missing or for another model.

    An index built by another backend is refused when its vectors differ beyond float
    rounding (int8 against fp32); torch and fp32 ONNX share one.
    """
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexMissingError(
            f"no usable index in {index_dir}: run `zhice ingest` (or `make run`) to build it"
        )
    if manifest.model != model:
        raise IndexIncompatibleError(
            f"index in {index_dir} was built with model {manifest.model!r} but "
            f"ZHICE_EMBEDDING_MODEL is {model!r}: run `zhice ingest` to rebuild it"
        )
    if not same_vectors(manifest.backend, backend):
        raise IndexIncompatibleError(
            f"index in {index_dir} was built with embedding backend {manifest.backend!r}, whose "
            f"vectors differ from those of {backend!r} (ZHICE_EMBEDDING_BACKEND): run `zhice "
            f"ingest` to rebuild it, or set ZHICE_EMBEDDING_BACKEND={manifest.backend}"
        )
    return manifest


def load_index(index_dir: Path, model: str, backend: str = "torch") -> LoadedIndex:
    """Load the index in force; refuse one missing, or built by another model or backend."""
    manifest = check_index(index_dir, model, backend)
    path = current_path(index_dir).resolve()
    documents = {row["source"]: Document(**row) for row in _read_jsonl(path / "documents.jsonl")}
    chunks = [Chunk(**row) for row in _read_jsonl(path / "chunks.jsonl")]
    vectors = VectorIndex.load(path / "vectors.faiss")
    if len(vectors) != len(chunks) or len(chunks) != manifest.chunk_count:
        raise IndexIncompatibleError(f"index in {path} is inconsistent: run `zhice ingest`")
    return LoadedIndex(
        path=path,
        manifest=manifest,
        documents=documents,
        chunks=chunks,
        vectors=vectors,
        bm25=BM25.load(path),
    )


def _chunk_row(chunk: Chunk) -> dict[str, Any]:
    row = asdict(chunk)
    row["metadata"] = dict(chunk.metadata)
    return row


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as rows:
        return [json.loads(line) for line in rows if line.strip()]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_versions(index_dir: Path, keep: str | None) -> list[str]:
    """Delete every version but `keep`, unfinished ones and stray links; call under the lock.

    Returns the names removed.
    """
    removed = []
    for entry in index_dir.iterdir():
        stale = entry.name.startswith(("v-", ".tmp-", f".{CURRENT}-")) and entry.name != keep
        if stale and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif stale:
            entry.unlink(missing_ok=True)
        if stale:
            removed.append(entry.name)
    return removed
