"""Merging the delta segment into the large one, beside live updates instead of inside one.

Live updates append chunks to a version's delta segment and mark stored ids dead
(`ingest.update`); once the two outgrow `merge_due`'s bound, they are merged into one
segment. That rebuilds the ANN index — about 15 minutes at a million chunks — so a merge
holds the index lock only for two short moments and updates keep landing meanwhile:

1. under the lock, a snapshot of the version V in force: hard links to its files in a
   working directory `.merge-<random>/` that updates and their clean-up never touch;
2. without the lock, the merged segment M built from V's alive chunks in stored order
   (vectors, HNSW, postings merged as arrays, chunks, documents) in that directory;
3. under the lock again, a rebase onto the version C now in force. Between merges stored
   ids only grow (updates append to the delta) and dead ids only accumulate, so C is V's
   stored ids [0, S_V) plus later ones [S_V, S_C): the new version is M, then C's later
   chunks as its delta, with dead the ids of M that C killed since V and the later ones C
   killed. If C no longer shares V's large segment (`zhice ingest` rebuilt it meanwhile)
   M is discarded.

One merge runs per index directory at a time (a second lock file, `.merge.lock`). A
crash before the `current` link moves leaves C serving; `remove_stale_merges` (run by
`ingest.update.recover` at startup) deletes the working directory it left.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ingest.bm25 import Postings
from ingest.store import (
    Delta,
    LoadedIndex,
    Manifest,
    VectorIndex,
    chunk_table,
    link_version,
    load_index,
    locked,
    open_version,
    read_delta,
    stored_layout,
    write_base,
    write_update,
)

log = logging.getLogger(__name__)

# A merge is due once the delta and the dead ids number more than this (ZHICE_MERGE_ABOVE)
# and a fiftieth of the large segment: searching the delta row by row and rewriting it at
# each update then start to cost more than a rebuild saves.
MERGE_ABOVE = 10_000
MERGE_LOCK = ".merge.lock"
WORKDIR_PREFIX = ".merge-"


def merge_due(manifest: Manifest, merge_above: int = MERGE_ABOVE) -> bool:
    """Whether a version's delta and dead ids have outgrown `merge_above` and a fiftieth
    of its large segment."""
    changed = manifest.delta_chunks + manifest.dead_chunks
    base = manifest.chunk_count + manifest.dead_chunks - manifest.delta_chunks
    return changed > 0 and changed > max(merge_above, base // 50)


@dataclass(frozen=True)
class _Merged:
    """Version V's snapshot and the merged segment M built from it.

    `kept` holds V's stored ids alive (M's id i is `kept[i]`), `where` each document's
    offset in M's documents.
    """

    source: LoadedIndex
    directory: Path
    kept: npt.NDArray[np.int64]
    where: dict[str, int]
    vectors: VectorIndex


def merge(
    index_dir: Path,
    model: str,
    backend: str = "torch",
    *,
    before_rebase: Callable[[], None] | None = None,
    before_switch: Callable[[], None] | None = None,
) -> LoadedIndex | None:
    """Merge the version in force's delta segment into its large one; return the new
    version, already in force.

    Returns None, changing nothing, when another merge of `index_dir` is running, the
    version has nothing to merge, or the index was rebuilt while the merge ran. Hooks for
    tests: `before_rebase` runs once M is built, before the lock is taken again;
    `before_switch` once the new version is on disk, before it becomes current.
    """
    began = time.perf_counter()
    with locked(index_dir, wait=False, name=MERGE_LOCK) as held:
        if not held:
            log.info("%s is being merged by another thread or process", index_dir)
            return None
        work = index_dir / f"{WORKDIR_PREFIX}{uuid.uuid4().hex}"
        try:
            merged = _build(index_dir, model, backend, work)
            if merged is None:
                return None
            if before_rebase is not None:
                before_rebase()
            with locked(index_dir):
                current = load_index(index_dir, model, backend)
                if not os.path.samefile(
                    current.path / "chunks_offsets.npy", merged.source.path / "chunks_offsets.npy"
                ):
                    log.warning("%s was rebuilt during the merge; merge discarded", index_dir)
                    return None
                index = _rebase(index_dir, merged, current, began, before_switch)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log.info(
        "merged %s: %d chunks, %d since in a delta, in %.1f s",
        index_dir,
        index.manifest.chunk_count,
        index.manifest.delta_chunks,
        time.perf_counter() - began,
    )
    return index


def _build(index_dir: Path, model: str, backend: str, work: Path) -> _Merged | None:
    """Snapshot the version in force (under the lock) and build M from it (without)."""
    with locked(index_dir):
        version = load_index(index_dir, model, backend)
        if not version.manifest.delta_chunks and not version.manifest.dead_chunks:
            return None
        link_version(version.path, work / "from")
    source = open_version(work / "from", version.manifest)
    _, stored, dead = stored_layout(source)
    alive = np.ones(stored, dtype=bool)
    alive[dead] = False
    segments = source.bm25.segments
    later = segments[1] if len(segments) > 1 else Postings.empty()
    vectors = VectorIndex.build(source.vectors.vectors())  # the slow part: HNSW
    (work / "merged").mkdir()
    where = write_base(
        work / "merged",
        [source.documents[s] for s in sorted(source.documents)],
        list(source.chunks),
        vectors,
        segments[0].concat(later, keep=alive),
    )
    return _Merged(source, work / "merged", np.flatnonzero(alive), where, vectors)


def _rebase(
    index_dir: Path,
    merged: _Merged,
    current: LoadedIndex,
    began: float,
    before_switch: Callable[[], None] | None,
) -> LoadedIndex:
    """Commit M followed by what `current` added since the snapshot (call under the lock)."""
    _, since, dead_before = stored_layout(merged.source)
    base, stored, dead_now = stored_layout(current)
    killed = np.setdiff1d(dead_now[dead_now < since], dead_before)  # in M now
    dead_later = dead_now[dead_now >= since] - since + len(merged.kept)
    dead = np.concatenate([np.searchsorted(merged.kept, killed), dead_later]).astype(np.int64)
    delta = read_delta(current, current.manifest.dimension)
    first = since - base  # the first row of the delta added since the snapshot
    table = chunk_table(current)
    later = table.stored(np.arange(len(table), dtype=np.int64)) >= since
    facets = table.facets
    added = {facets.sources[int(c)] for c in np.unique(facets.source_codes[later])}
    where = {s: (0, merged.where[s]) for s in current.documents if s not in added}
    manifest = replace(
        current.manifest,
        index_type=merged.vectors.kind,
        ann=merged.vectors.params,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        build_seconds=round(time.perf_counter() - began, 3),
        delta_chunks=stored - since,
        dead_chunks=len(dead),
    )
    keep = np.arange(len(delta.chunks)) >= first
    path = write_update(
        index_dir,
        manifest,
        merged.directory,
        where,
        Delta(
            [current.documents[s] for s in sorted(added)],
            delta.chunks[first:],
            delta.vectors[first:],
            delta.postings.select(keep),
        ),
        dead,
        before_switch=before_switch,
    )
    return open_version(path, manifest)


def remove_stale_merges(index_dir: Path) -> list[str]:
    """Delete the working directories of merges a crash interrupted; returns their names.

    Skipped (returns []) while a merge holds the merge lock.
    """
    removed: list[str] = []
    with locked(index_dir, wait=False, name=MERGE_LOCK) as held:
        if held:
            for entry in index_dir.iterdir():
                if entry.name.startswith(WORKDIR_PREFIX) and entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry.name)
    return removed
