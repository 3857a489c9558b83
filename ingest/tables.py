"""Chunks and documents on disk, read lazily: JSON lines plus arrays of where each starts.

A segment directory holds `chunks.jsonl` with `chunks_offsets.npy` (byte offset of row
i, and the file's length last), `documents.jsonl`, and each chunk's source and filter
values as codes (`chunks_sources.npy`, `chunks_facets.npy`) into `facets.json`. Reading
chunk i parses one line; nothing parses all of them at start, so a million chunks load
in the time it takes to map a few files.
"""

from __future__ import annotations

import json
import mmap
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from ingest.types import Chunk, Document, effective_metadata


def mapped(path: Path) -> npt.NDArray[Any]:
    """A saved array memory-mapped, read as a plain array: slicing a np.memmap builds a
    memmap object per slice, which costs more than the work done on the slice."""
    return np.asarray(np.load(path, mmap_mode="r"))


Facet = tuple[tuple[str, str], ...]
_DOCUMENT_CACHE = 64


def write_segment(
    directory: Path, documents: Iterable[Document], chunks: Sequence[Chunk]
) -> dict[str, int]:
    """Write a segment's documents and chunks; return each document's byte offset."""
    by_source = {d.source: d for d in documents}
    offsets = {}
    with (directory / "documents.jsonl").open("wb") as out:
        for document in by_source.values():
            offsets[document.source] = out.tell()
            out.write(_line(asdict(document)))
        _sync(out)
    starts = np.zeros(len(chunks) + 1, dtype=np.int64)
    sources: dict[str, int] = {}
    facets: dict[Facet, int] = {}
    source_codes = np.zeros(len(chunks), dtype=np.int32)
    facet_codes = np.zeros(len(chunks), dtype=np.int32)
    with (directory / "chunks.jsonl").open("wb") as out:
        for i, chunk in enumerate(chunks):
            row = asdict(chunk)
            row["metadata"] = dict(chunk.metadata)
            out.write(_line(row))
            starts[i + 1] = out.tell()
            facet = tuple(effective_metadata(chunk, by_source.get(chunk.source)).items())
            source_codes[i] = sources.setdefault(chunk.source, len(sources))
            facet_codes[i] = facets.setdefault(facet, len(facets))
        _sync(out)
    np.save(directory / "chunks_offsets.npy", starts)
    np.save(directory / "chunks_sources.npy", source_codes)
    np.save(directory / "chunks_facets.npy", facet_codes)
    payload = {"sources": list(sources), "facets": [list(map(list, f)) for f in facets]}
    (directory / "facets.json").write_text(json.dumps(payload, ensure_ascii=False), "utf-8")
    return offsets


SEGMENT_FILES = (
    "documents.jsonl",
    "chunks.jsonl",
    "chunks_offsets.npy",
    "chunks_sources.npy",
    "chunks_facets.npy",
    "facets.json",
)


class _Lines:
    """A JSON-lines file, memory-mapped; row bytes by offset."""

    def __init__(self, path: Path) -> None:
        size = path.stat().st_size
        self._map: mmap.mmap | None = None
        if size:
            with path.open("rb") as handle:
                self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)

    def row(self, start: int, end: int | None = None) -> dict[str, Any]:
        assert self._map is not None, "row of an empty file"
        if end is None:
            end = self._map.find(b"\n", start)
        data: dict[str, Any] = json.loads(self._map[start:end])
        return data


class ChunkSegment:
    """One segment's chunks, by the segment's own ids."""

    def __init__(self, directory: Path) -> None:
        self.lines = _Lines(directory / "chunks.jsonl")
        self.offsets = mapped(directory / "chunks_offsets.npy")
        self.sources = mapped(directory / "chunks_sources.npy")
        self.facets = mapped(directory / "chunks_facets.npy")
        names = json.loads((directory / "facets.json").read_text(encoding="utf-8"))
        self.source_names: list[str] = names["sources"]
        self.facet_values: list[Facet] = [tuple(map(tuple, f)) for f in names["facets"]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def chunk(self, i: int) -> Chunk:
        return Chunk(**self.lines.row(int(self.offsets[i]), int(self.offsets[i + 1]) - 1))


class Facets:
    """Per chunk served: its source and filter values, as codes into the distinct ones."""

    def __init__(
        self,
        source_codes: npt.NDArray[np.int64],
        sources: list[str],
        facet_codes: npt.NDArray[np.int64],
        facets: list[Facet],
    ) -> None:
        self.source_codes = source_codes
        self.sources = sources
        self.facet_codes = facet_codes
        self.facets = facets


class ChunkTable(Sequence[Chunk]):
    """The chunks served, by id: segments end to end, the dead ones left out.

    `alive` flags every stored chunk (None: all alive); id i is the i-th alive chunk.
    """

    def __init__(
        self, segments: Sequence[ChunkSegment], alive: npt.NDArray[np.bool_] | None = None
    ) -> None:
        self._segments = list(segments)
        self._starts = np.cumsum([0, *(len(s) for s in self._segments)])
        self._ids = None if alive is None or alive.all() else np.flatnonzero(alive)

    def __len__(self) -> int:
        return int(self._starts[-1]) if self._ids is None else len(self._ids)

    @overload
    def __getitem__(self, i: int) -> Chunk: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[Chunk]: ...

    def __getitem__(self, i: int | slice) -> Chunk | Sequence[Chunk]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        stored = i if self._ids is None else int(self._ids[i])
        segment = int(np.searchsorted(self._starts, stored, side="right")) - 1
        return self._segments[segment].chunk(stored - int(self._starts[segment]))

    def __iter__(self) -> Iterator[Chunk]:
        for i in range(len(self)):
            yield self[i]

    @property
    def segment_sizes(self) -> list[int]:
        """Chunks stored in each segment, dead ones included."""
        return [len(s) for s in self._segments]

    def stored(self, ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The stored ids (across segments, dead included) of served ids."""
        return ids if self._ids is None else self._ids[ids]

    def ids_of(self, source: str) -> npt.NDArray[np.int64]:
        """Ids of the chunks of one document, ascending, without reading any chunk."""
        facets = self.facets
        if source not in facets.sources:
            return np.zeros(0, dtype=np.int64)
        codes = [i for i, s in enumerate(facets.sources) if s == source]
        return np.flatnonzero(np.isin(facets.source_codes, codes)).astype(np.int64)

    @cached_property
    def facets(self) -> Facets:
        """Source and filter values of every chunk served (computed once, by arrays)."""
        sources: list[str] = []
        facets: list[Facet] = []
        source_codes, facet_codes = [], []
        for segment in self._segments:
            source_codes.append(np.asarray(segment.sources, dtype=np.int64) + len(sources))
            facet_codes.append(np.asarray(segment.facets, dtype=np.int64) + len(facets))
            sources += segment.source_names
            facets += segment.facet_values
        s = np.concatenate(source_codes) if source_codes else np.zeros(0, np.int64)
        f = np.concatenate(facet_codes) if facet_codes else np.zeros(0, np.int64)
        if self._ids is not None:
            s, f = s[self._ids], f[self._ids]
        return Facets(s, sources, f, facets)


class DocumentTable(Mapping[str, Document]):
    """The documents served, by source; each parsed from its segment when first asked for.

    `where` maps a source to (segment number, byte offset) into `segments`' documents.
    """

    def __init__(self, segments: Sequence[Path], where: Mapping[str, tuple[int, int]]) -> None:
        self._lines = [_Lines(directory / "documents.jsonl") for directory in segments]
        self._where = dict(where)
        self._cache: dict[str, Document] = {}
        self._lock = threading.Lock()

    def __getitem__(self, source: str) -> Document:
        found = self._cache.get(source)
        if found is not None:
            return found
        segment, offset = self._where[source]
        document = Document(**self._lines[segment].row(offset))
        with self._lock:
            if len(self._cache) >= _DOCUMENT_CACHE:
                self._cache.clear()
            self._cache[source] = document
        return document

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, source: object) -> bool:
        return source in self._where

    @property
    def where(self) -> Mapping[str, tuple[int, int]]:
        """Source → (segment, offset), as written to `documents.json`."""
        return self._where


def chunk_counts(chunks: Sequence[Chunk]) -> Counter[str]:
    """Chunks per source; from the stored codes when `chunks` is a ChunkTable."""
    if not isinstance(chunks, ChunkTable):
        return Counter(c.source for c in chunks)
    facets = chunks.facets
    counts: Counter[str] = Counter()
    for code, count in enumerate(np.bincount(facets.source_codes, minlength=len(facets.sources))):
        if count:
            counts[facets.sources[code]] += int(count)
    return counts


def chunks_of(chunks: Sequence[Chunk], source: str) -> list[Chunk]:
    """The chunks of one source, in id order, reading only those from a ChunkTable."""
    if not isinstance(chunks, ChunkTable):
        return [c for c in chunks if c.source == source]
    return [chunks[int(i)] for i in chunks.ids_of(source)]


def _line(row: Mapping[str, Any]) -> bytes:
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())
