"""The one way an index version is built: chunks and vectors → BM25, ANN, manifest, files.

`zhice ingest` (ingest.pipeline) and the first document of a collection (ingest.update)
end here; other live updates write a delta segment beside this version's
(`ingest.store.write_update`), and a merge of it writes its segment with
`ingest.store.write_base` (ingest.merge).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from ingest.bm25 import Postings
from ingest.chunking import ChunkerParams
from ingest.embedding import Vectors
from ingest.store import (
    FORMAT_VERSION,
    LoadedIndex,
    Manifest,
    VectorIndex,
    open_version,
    write_index,
)
from ingest.tokenize import Tokenizer, fingerprint
from ingest.types import Chunk, Document


def analysis() -> dict[str, object]:
    """Chunking parameters and the tokeniser's dictionaries: changing either rebuilds."""
    return {**asdict(ChunkerParams()), "tokenizer": fingerprint()}


def build_version(
    index_dir: Path,
    *,
    model: str,
    documents: Iterable[Document],
    chunks: Sequence[Chunk],
    vectors: Vectors,
    began: float,
    backend: str = "torch",
    tokenizer: Tokenizer | None = None,
    postings: Postings | None = None,
    ann: Mapping[str, int] | None = None,
    before_switch: Callable[[], None] | None = None,
) -> LoadedIndex:
    """Index `chunks` (row i of `vectors` is chunk i) as one segment; make it current.

    `began` is the `perf_counter` time the build started, and `backend` the embedding
    backend that made the vectors, both for the manifest. Pass the chunks' `postings`
    when they are known already, or a loaded `tokenizer` to save loading
    jieba's dictionaries. `ann` overrides the ANN parameters chosen by size
    (`ingest.store.ann_params`); `before_switch` runs once the version is on disk, just before
    it becomes current (see `write_index`).
    """
    by_source = {d.source: d for d in sorted(documents, key=lambda d: d.source)}
    if postings is None:
        tokenizer = tokenizer or Tokenizer()
        postings = Postings.build([tokenizer.tokenize(c.search_text) for c in chunks])
    vector_index = VectorIndex.build(vectors, ann)
    manifest = Manifest(
        format_version=FORMAT_VERSION,
        model=model,
        dimension=int(vectors.shape[1]),
        chunker=analysis(),
        corpus={s: d.sha256 for s, d in by_source.items()},
        chunk_count=len(chunks),
        index_type=vector_index.kind,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        build_seconds=round(time.perf_counter() - began, 3),
        backend=backend,
        ann=vector_index.params,
    )
    path = write_index(
        index_dir,
        manifest,
        by_source.values(),
        chunks,
        vector_index,
        postings,
        before_switch=before_switch,
    )
    return open_version(path, manifest)
