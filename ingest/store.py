"""The index on disk (the one owner of faiss): a versioned directory plus a manifest.

Layout: `index_dir/current` is a symlink to `index_dir/v-<build id>/`, which holds
`manifest.json`, `documents.json` (where each document lies) and a segment: chunks and
documents (`ingest.tables`), `vectors.npy` (row i is chunk i), for a large corpus an
HNSW index `vectors.faiss`, and BM25 postings (`ingest.bm25`). A live update adds a
second, small segment `delta/` and `dead.npy` (stored ids no longer served), and shares
the first segment's files with the previous version by hard links, so it writes only
what changed. Every write makes a fresh version directory and then swaps the symlink
atomically, so readers see the old or the new index, never a mix, and a crash
mid-write leaves the previous index serving. Everything loads memory-mapped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.bm25 import BM25, Postings
from ingest.bm25 import FILES as BM25_FILES
from ingest.embedding import same_vectors
from ingest.errors import IndexIncompatibleError, IndexMissingError
from ingest.tables import (
    SEGMENT_FILES,
    ChunkSegment,
    ChunkTable,
    DocumentTable,
    mapped,
    write_segment,
)
from ingest.types import Chunk, Document

log = logging.getLogger(__name__)
# faiss logs every CPU-feature probe at INFO; only its warnings are worth reading.
logging.getLogger("faiss.loader").setLevel(logging.WARNING)

FORMAT_VERSION = 2
# Exact search is fast enough up to here (about 5 ms); beyond it an HNSW graph.
EXACT_SEARCH_LIMIT = 50_000
# The most candidates a filtered HNSW search keeps (efSearch grows as a filter narrows).
MAX_EF_SEARCH = 1024
# A filter allowing at most this many chunks is searched exactly, row by row.
EXACT_FILTER_LIMIT = 20_000
CURRENT = "current"
LOCK_FILE = ".update.lock"
DELTA = "delta"
DEAD = "dead.npy"
DOCUMENTS = "documents.json"
VECTORS = "vectors.npy"
ANN = "vectors.faiss"
# The files of a version's first segment, shared by hard links with the versions after it.
BASE_FILES = (*SEGMENT_FILES, VECTORS, ANN, *BM25_FILES)


def ann_params(count: int) -> dict[str, int]:
    """The ANN index for `count` chunks: none (exact) up to EXACT_SEARCH_LIMIT, else HNSW.

    HNSW with 32 links a node, built with 40 candidates and searched with 128 up to
    250k chunks, 256 up to two million, 512 beyond: at a million chunks efSearch 64
    gave recall@10 0.88, 128 0.94, 256 0.975 in 2.2 ms (`make bench-scale`). Its
    vectors are memory-mapped; a filter widens the search (efSearch ÷ the share of
    chunks it allows), and one allowing few chunks is searched exactly instead (see
    `VectorIndex.search`).
    """
    if count <= EXACT_SEARCH_LIMIT:
        return {}
    ef = 128 if count <= 250_000 else 256 if count <= 2_000_000 else 512
    return {"M": 32, "efConstruction": 40, "efSearch": ef}


class VectorIndex:
    """Inner-product search over L2-normalised vectors (cosine similarity).

    Vectors lie in segments laid end to end (a large one, maybe with an HNSW graph, and a
    small one of live additions, searched exactly); `alive` flags the stored rows still
    served (None: all), and id i is the i-th alive row.
    """

    def __init__(
        self,
        segments: Sequence[npt.NDArray[np.float32]],
        ann: Any = None,
        params: Mapping[str, int] | None = None,
        alive: npt.NDArray[np.bool_] | None = None,
    ) -> None:
        self._segments = list(segments)
        self._ann = ann
        self.params = dict(params or {})
        self._base = len(self._segments[0]) if self._segments else 0
        self._ids = None if alive is None or alive.all() else np.flatnonzero(alive)
        self._alive_bitmap: npt.NDArray[np.uint8] | None = None
        if self._ids is not None and alive is not None and not alive[: self._base].all():
            self._alive_bitmap = np.packbits(alive[: self._base], bitorder="little")

    @classmethod
    def build(
        cls, vectors: npt.NDArray[np.float32], params: Mapping[str, int] | None = None
    ) -> VectorIndex:
        """Exact search for small corpora, HNSW for large ones (`params`: `ann_params`)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        params = ann_params(len(vectors)) if params is None else params
        return cls([vectors], _build_hnsw(vectors, params) if params else None, params)

    @property
    def kind(self) -> str:
        """The ANN index, recorded in the manifest: `flat` (exact) or the FAISS class."""
        return "flat" if self._ann is None else type(self._ann).__name__

    def __len__(self) -> int:
        return sum(len(s) for s in self._segments) if self._ids is None else len(self._ids)

    def vectors(self) -> npt.NDArray[np.float32]:
        """All vectors served, row i for id i."""
        rows = np.concatenate(self._segments) if self._segments else np.zeros((0, 0), np.float32)
        return np.asarray(rows if self._ids is None else rows[self._ids], dtype=np.float32)

    def search(
        self, query: npt.NDArray[np.float32], k: int, allowed: npt.NDArray[np.int64] | None = None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Top-k (scores, ids) for one query vector, optionally among allowed ids only.

        A filter allowing few chunks is searched exactly over their rows; otherwise HNSW
        keeps more candidates the fewer chunks a filter allows, so recall holds.
        """
        k = min(k, len(self) if allowed is None else len(allowed))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        rows = None if allowed is None else self._stored(allowed)
        exact = self._ann is None or (rows is not None and len(rows) <= EXACT_FILTER_LIMIT)
        if exact:
            if rows is None:
                rows = np.arange(len(self), dtype=np.int64) if self._ids is None else self._ids
            scores, ids = self._exact(query, rows), rows
        else:
            in_base = None if rows is None else rows[rows < self._base]
            scores, ids = self._search_ann(query, k, in_base)
            later = self._later_rows() if rows is None else rows[rows >= self._base]
            scores = np.concatenate([scores, self._exact(query, later)])
            ids = np.concatenate([ids, later])
        top = _top(scores, k)
        found = ids[top]
        if self._ids is not None:
            found = np.searchsorted(self._ids, found)
        return scores[top].astype(np.float32), found.astype(np.int64)

    def _stored(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return ids if self._ids is None else self._ids[ids]

    def _later_rows(self) -> npt.NDArray[np.int64]:
        """Stored ids of the alive rows after the first segment."""
        if self._ids is None:
            return np.arange(self._base, len(self), dtype=np.int64)
        return self._ids[self._ids >= self._base]

    def _exact(self, query: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]) -> Any:
        """Inner products of the query with stored rows (ascending stored ids)."""
        parts, start = [], 0
        for segment in self._segments:
            lo, hi = np.searchsorted(rows, [start, start + len(segment)])
            # einsum runs on this thread: BLAS's threads lose time on a busy machine.
            if hi - lo == len(segment):
                parts.append(np.einsum("ij,j->i", segment, query))
            elif hi > lo:
                parts.append(np.einsum("ij,j->i", segment[rows[lo:hi] - start], query))
            start += len(segment)
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def _search_ann(
        self, query: npt.NDArray[np.float32], k: int, rows: npt.NDArray[np.int64] | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        import faiss

        bitmap, share = self._alive_bitmap, 1.0
        if rows is not None:
            mask = np.zeros(self._base, dtype=bool)
            mask[rows] = True
            bitmap, share = np.packbits(mask, bitorder="little"), len(rows) / max(self._base, 1)
        if share == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        params = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # not in stubs
        params.efSearch = min(MAX_EF_SEARCH, math.ceil(self.params["efSearch"] / share))
        if bitmap is not None:
            params.sel = faiss.IDSelectorBitmap(self._base, faiss.swig_ptr(bitmap))
        scores, ids = self._ann.search(query.reshape(1, -1), k, params=params)
        keep = ids[0] >= 0
        return scores[0][keep], ids[0][keep].astype(np.int64)

    def save(self, directory: Path) -> None:
        """Write a one-segment index: its vectors (`vectors.npy`) and HNSW (`vectors.faiss`)."""
        import faiss

        assert len(self._segments) == 1 and self._ids is None, "save a built index"
        np.save(directory / VECTORS, self._segments[0])
        if self._ann is not None:
            faiss.write_index(self._ann, str(directory / ANN))

    @classmethod
    def load(
        cls,
        directories: Sequence[Path],
        params: Mapping[str, int],
        alive: npt.NDArray[np.bool_] | None = None,
    ) -> VectorIndex:
        """Read segments written by `save` (later ones without HNSW), memory-mapped."""
        import faiss

        segments = [mapped(d / VECTORS) for d in directories]
        ann = None
        if params:
            flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY  # vectors mapped
            ann = faiss.read_index(str(directories[0] / ANN), flags)
        return cls(segments, ann, params, alive)


def _build_hnsw(vectors: npt.NDArray[np.float32], params: Mapping[str, int]) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], params["M"], faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = params["efConstruction"]
    index.add(vectors)
    return index


def _top(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Positions of the k highest scores, best first."""
    k = min(k, len(scores))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return top[np.argsort(-scores[top], kind="stable")].astype(np.int64)


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
    # The ANN index's parameters, chosen by corpus size (see `ann_params`); {} when exact.
    ann: Mapping[str, int] = field(default_factory=dict)
    # Chunks in the delta segment of live updates (alive or not) and chunks deleted.
    delta_chunks: int = 0
    dead_chunks: int = 0


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
def locked(index_dir: Path, *, wait: bool = True, name: str = LOCK_FILE) -> Iterator[bool]:
    """Hold the index directory's write lock (across threads and processes).

    Yields True once held; with `wait=False`, yields False at once if another holds it.
    `name` picks another lock file (the merge's, `ingest.merge`).
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / name, "a") as handle:
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
    postings: Postings,
    *,
    before_switch: Callable[[], None] | None = None,
) -> Path:
    """Write a new index version of one segment and make it current atomically.

    `before_switch` runs once the version is complete on disk, just before it becomes
    current; if it raises, the version is discarded and the old one stays in force.
    """

    def fill(tmp: Path) -> dict[str, tuple[int, int]]:
        offsets = write_base(tmp, documents, chunks, vectors, postings)
        return {source: (0, offset) for source, offset in offsets.items()}

    return _commit(index_dir, manifest, fill, before_switch)


def write_base(
    directory: Path,
    documents: Iterable[Document],
    chunks: Sequence[Chunk],
    vectors: VectorIndex,
    postings: Postings,
) -> dict[str, int]:
    """Write the files of a first segment (`BASE_FILES`); return each document's offset."""
    offsets = write_segment(directory, documents, chunks)
    vectors.save(directory)
    postings.save(directory)
    return offsets


def write_update(
    index_dir: Path,
    manifest: Manifest,
    base: Path,
    where: Mapping[str, tuple[int, int]],
    delta: Delta,
    dead: npt.NDArray[np.int64],
    *,
    before_switch: Callable[[], None] | None = None,
) -> Path:
    """Write a version sharing the segment of version `base` and make it current.

    The large segment's files are hard links (no byte copied); `delta` becomes the
    second segment, `dead` lists the stored ids no longer served, and `where` places the
    documents of the first segment (segment 0) — the delta's are added. `base` may also
    be a directory of `write_base`'s files (a merge's). An empty delta or dead list is
    not written.
    """

    def fill(tmp: Path) -> dict[str, tuple[int, int]]:
        for name in BASE_FILES:
            if (base / name).exists():
                os.link(base / name, tmp / name)
        if len(dead):
            np.save(tmp / DEAD, np.unique(dead).astype(np.int64))
        if not delta.chunks:
            return dict(where)
        (tmp / DELTA).mkdir()
        offsets = write_segment(tmp / DELTA, delta.documents, delta.chunks)
        np.save(tmp / DELTA / VECTORS, np.ascontiguousarray(delta.vectors, dtype=np.float32))
        delta.postings.save(tmp / DELTA)
        _fsync_dir(tmp / DELTA)
        return {**where, **{source: (1, offset) for source, offset in offsets.items()}}

    return _commit(index_dir, manifest, fill, before_switch)


@dataclass(frozen=True)
class Delta:
    """The second segment: documents added live, their chunks, vectors and postings.

    Row i of `chunks`, `vectors` and `postings` is one chunk; chunks of documents since
    replaced or removed stay (their stored ids are in `dead.npy`) until the next merge.
    """

    documents: Sequence[Document]
    chunks: Sequence[Chunk]
    vectors: npt.NDArray[np.float32]
    postings: Postings


def read_delta(index: LoadedIndex, dimension: int) -> Delta:
    """The delta segment of a loaded version (empty when it has none)."""
    directory = index.path / DELTA
    if not directory.is_dir():
        return Delta([], [], np.zeros((0, dimension), np.float32), Postings.empty())
    segment = ChunkSegment(directory)
    later = [s for s, (number, _) in _where(index).items() if number == 1]
    return Delta(
        [index.documents[s] for s in later],
        [segment.chunk(i) for i in range(len(segment))],
        np.load(directory / VECTORS),
        Postings.load(directory),
    )


def _where(index: LoadedIndex) -> Mapping[str, tuple[int, int]]:
    documents = index.documents
    assert isinstance(documents, DocumentTable), "a loaded index's documents"
    return documents.where


def chunk_table(index: LoadedIndex) -> ChunkTable:
    """The chunks of an index loaded from disk, with their stored ids and sources."""
    chunks = index.chunks
    assert isinstance(chunks, ChunkTable), "a loaded index's chunks"
    return chunks


def stored_layout(index: LoadedIndex) -> tuple[int, int, npt.NDArray[np.int64]]:
    """(chunks in the first segment, chunks stored, stored ids dead) of a loaded version."""
    chunks = chunk_table(index)
    dead = np.load(index.path / DEAD) if (index.path / DEAD).exists() else np.zeros(0, np.int64)
    return chunks.segment_sizes[0], sum(chunks.segment_sizes), dead.astype(np.int64)


def base_where(index: LoadedIndex) -> dict[str, tuple[int, int]]:
    """Where the documents of a loaded version's first segment lie."""
    return {s: w for s, w in _where(index).items() if w[0] == 0}


def _commit(
    index_dir: Path,
    manifest: Manifest,
    fill: Callable[[Path], Mapping[str, tuple[int, int]]],
    before_switch: Callable[[], None] | None,
) -> Path:
    """A local index version: `fill` writes its segments and says where each document
    is; the documents' places are written beside them."""

    def write(tmp: Path) -> None:
        where = fill(tmp)
        ordered = {s: list(where[s]) for s in sorted(where)}
        (tmp / DOCUMENTS).write_text(json.dumps(ordered, ensure_ascii=False), encoding="utf-8")

    return commit_version(index_dir, manifest, write, before_switch=before_switch)


def new_version(suffix_chars: int = 6) -> str:
    """A fresh version name: the time and `suffix_chars` random hex characters."""
    return f"v-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:suffix_chars]}"


def commit_version(
    index_dir: Path,
    manifest: Manifest,
    write: Callable[[Path], None],
    *,
    version: str | None = None,
    before_switch: Callable[[], None] | None = None,
) -> Path:
    """Fill a fresh version directory (`write`, then the manifest), then swap the
    `current` link to it; the local index and the Milvus catalog are both written so.

    `before_switch` runs once the version is complete on disk, just before it becomes
    current; if it raises, the version is discarded and the old one stays in force.
    """
    index_dir.mkdir(parents=True, exist_ok=True)
    version = version or new_version()
    tmp = index_dir / f".tmp-{version}"
    tmp.mkdir()
    try:
        write(tmp)
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
    """Load the index in force; refuse one missing, or built by another model or backend.

    Files are memory-mapped and chunks parsed when read, so this takes about as long for
    a million chunks as for a hundred.
    """
    manifest = check_index(index_dir, model, backend)
    return open_version(current_path(index_dir).resolve(), manifest)


def open_version(path: Path, manifest: Manifest) -> LoadedIndex:
    """Open one version directory (memory-mapped)."""
    directories = [path, *([path / DELTA] if (path / DELTA).is_dir() else [])]
    try:
        segments = [ChunkSegment(d) for d in directories]
        alive = None
        if (path / DEAD).exists():
            alive = np.ones(sum(len(s) for s in segments), dtype=bool)
            alive[np.load(path / DEAD)] = False
        where = json.loads((path / DOCUMENTS).read_text(encoding="utf-8"))
        index = LoadedIndex(
            path=path,
            manifest=manifest,
            documents=DocumentTable(directories, {s: (w[0], w[1]) for s, w in where.items()}),
            chunks=ChunkTable(segments, alive),
            vectors=VectorIndex.load(directories, manifest.ann, alive),
            bm25=BM25([Postings.load(d) for d in directories], alive),
        )
    except (OSError, ValueError, KeyError, IndexError) as exc:
        raise IndexIncompatibleError(
            f"index in {path} is unreadable ({exc}): run `zhice ingest`"
        ) from exc
    if not len(index.vectors) == len(index.chunks) == index.bm25.n_docs == manifest.chunk_count:
        raise IndexIncompatibleError(f"index in {path} is inconsistent: run `zhice ingest`")
    return index


def link_version(path: Path, target: Path) -> None:
    """Hard-link every file of version directory `path` into `target` (a snapshot that
    outlives the version's removal; no byte copied)."""
    for source in sorted(path.rglob("*")):
        copy = target / source.relative_to(path)
        if source.is_dir():
            copy.mkdir(parents=True, exist_ok=True)
        else:
            copy.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, copy)


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
