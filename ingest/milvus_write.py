"""Writing a Milvus-backed knowledge base: full builds and live updates.

A full build (`zhice ingest`) fills a new physical collection, then switches the
catalog (`ingest.catalog`) to it: readers see the old collection or the new one,
never a half-filled one, and a crash leaves the old one serving. The collection the
old catalog named is kept for readers still on it and dropped at the next build.

A live update of document D at generation G, under the index directory's lock:

1. rows left by a crashed update (`gen > G`), and rows a crashed update hid but did
   not delete, are deleted — nobody can see them;
2. D's new chunks are inserted with `gen = G+1`: invisible to readers of G, whose
   filter is `gen <= G`;
3. the corpus file is committed, then the catalog of G+1 (D's new terms and counts,
   and D superseded before G+1) becomes current — the moment readers see the change,
   all of it at once.

D's old rows stay, hidden from readers of G+1, until step 1 of the next update
deletes them: a request still searching with the catalog of G keeps finding them
(requests take the newest catalog when they start, and an update takes far longer
than a request).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ingest import milvus
from ingest.build import analysis
from ingest.catalog import (
    MILVUS_FILE,
    Catalog,
    Terms,
    load_catalog,
    new_version,
    visible,
    write_catalog,
)
from ingest.chunking import chunk_document
from ingest.embedding import Embedder, Vectors, embed_passages
from ingest.errors import EmptyDocumentError, ZhiceError
from ingest.limits import Budget
from ingest.milvus import MilvusTarget, literal
from ingest.store import FORMAT_VERSION, Manifest, current_path, locked, read_manifest
from ingest.tokenize import Tokenizer
from ingest.types import FILTER_FIELDS, Chunk, Document, effective_metadata
from ingest.update import Action, CorpusChange, UpdateResult, _check, clear_stale_uploads

log = logging.getLogger(__name__)
INDEX_TYPE = "milvus HNSW + sparse BM25"


def build_milvus(
    index_dir: Path,
    target: MilvusTarget,
    *,
    model: str,
    documents: Iterable[Document],
    chunks: Sequence[Chunk],
    vectors: Vectors,
    began: float,
    backend: str = "torch",
    tokenizer: Tokenizer | None = None,
    before_switch: Callable[[], None] | None = None,
) -> Catalog:
    """Index `chunks` (row i of `vectors` is chunk i) into a new collection; make it current."""
    by_source = {d.source: d for d in sorted(documents, key=lambda d: d.source)}
    tokenizer = tokenizer or Tokenizer()
    tokens = [tokenizer.tokenize(c.search_text) for c in chunks]
    terms, sparse = Terms.empty().with_chunks(tokens)
    version = new_version()
    name = target.new_name(version[-12:])
    previous = _collection_in_force(index_dir)
    milvus.create(target, name, int(vectors.shape[1]))
    try:
        milvus.insert(target, name, _rows(chunks, by_source, vectors, sparse, tokens, seq=0, gen=0))
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model=model,
            dimension=int(vectors.shape[1]),
            chunker=analysis(),
            corpus={s: d.sha256 for s, d in by_source.items()},
            chunk_count=len(chunks),
            index_type=INDEX_TYPE,
            built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            build_seconds=round(time.perf_counter() - began, 3),
            backend=backend,
        )
        catalog = Catalog(
            path=index_dir / version,
            manifest=manifest,
            documents=by_source,
            terms=terms,
            target=target,
            collection=name,
            generation=0,
            counts=_counts(chunks),
            next_seq=len(chunks),
            values=_values({}, chunks, by_source),
        )
        written = write_catalog(index_dir, catalog, version, before_switch=before_switch)
    except BaseException:
        milvus.drop_unused(target, keep=[n for n in (previous,) if n])
        raise
    for dropped in milvus.drop_unused(target, keep=[n for n in (name, previous) if n]):
        log.info("dropped Milvus collection %s, two builds old", dropped)
    return written


def previous_vectors(
    index_dir: Path, target: MilvusTarget, model: str, backend: str
) -> dict[str, Vectors]:
    """Stored vectors by chunk content hash, to avoid re-embedding unchanged text.

    Empty when the index in force is not a Milvus catalog of this model and backend.
    """
    import numpy as np

    if not (current_path(index_dir) / MILVUS_FILE).is_file():
        return {}
    try:
        catalog = load_catalog(index_dir, model, backend, target)
    except ZhiceError:
        return {}
    rows = milvus.query(target, catalog.collection, visible(catalog), ["chunk_id", "dense"])
    return {
        row["chunk_id"].rsplit(":", 1)[1]: np.asarray(row["dense"], dtype=np.float32)
        for row in rows
    }


def update_milvus(
    corpus_dir: Path,
    index_dir: Path,
    target: MilvusTarget,
    model: str,
    embedder: Embedder,
    action: Action,
    source: str,
    document: Document | None,
    data: bytes | None,
    *,
    tokenizer: Tokenizer | None,
    budget: Budget,
    batch_size: int,
    crash_before_switch: Callable[[], None] | None,
) -> UpdateResult:
    """Add, replace or remove one document (see `ingest.update.update` and the steps above)."""
    began = time.perf_counter()
    with locked(index_dir):
        if action == "add" and read_manifest(index_dir) is None:
            assert document is not None, "adding needs a document"
            return _first_document(
                corpus_dir,
                index_dir,
                target,
                embedder,
                document,
                data,
                model=model,
                tokenizer=tokenizer,
                budget=budget,
                batch_size=batch_size,
                crash_before_switch=crash_before_switch,
            )
        old = load_catalog(index_dir, model, embedder.backend, target)
        _check(old.manifest.corpus, action, source, document)
        name, generation = old.collection, old.generation + 1
        _tidy(target, old)
        new_chunks: list[Chunk] = []
        terms = old.terms
        if source in old.documents:
            removed = [
                (row["sparse"].keys(), int(row["length"]))
                for row in milvus.query(
                    target,
                    name,
                    f"{visible(old)} and source == {literal(source)}",
                    ["sparse", "length"],
                )
            ]
            terms, _ = terms.with_chunks([], removed)
        documents = {s: d for s, d in old.documents.items() if s != source}
        if document is not None:
            new_chunks = chunk_document(document, budget=budget)
            if not new_chunks:
                raise EmptyDocumentError(f"{source}: no text to index")
            texts = [c.search_text for c in new_chunks]
            fresh = embed_passages(embedder, texts, batch_size, before_batch=budget.check)
            tokens = [(tokenizer or Tokenizer()).tokenize(t) for t in texts]
            terms, sparse = terms.with_chunks(tokens)
            documents[source] = document
            rows = _rows(
                new_chunks, documents, fresh, sparse, tokens, seq=old.next_seq, gen=generation
            )
            budget.check()
            milvus.insert(target, name, rows)
        clear_stale_uploads(corpus_dir)
        corpus = CorpusChange(corpus_dir, action, source, data, budget, crash_before_switch)

        counts = {s: n for s, n in old.counts.items() if s != source}
        if new_chunks:
            counts[source] = len(new_chunks)
        ordered = dict(sorted(documents.items()))
        catalog = replace(
            old,
            manifest=replace(
                old.manifest,
                corpus={s: d.sha256 for s, d in ordered.items()},
                chunk_count=sum(counts.values()),
                built_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                build_seconds=round(time.perf_counter() - began, 3),
            ),
            documents=ordered,
            terms=terms,
            generation=generation,
            counts=counts,
            next_seq=old.next_seq + len(new_chunks),
            superseded={source: generation},
            values=_values(old.values, new_chunks, documents),
        )
        try:
            written = write_catalog(index_dir, catalog, new_version(), before_switch=corpus.commit)
        finally:
            corpus.discard()
    seconds = time.perf_counter() - began
    log.info(
        "%s %s: %d chunks embedded in %.2f s (Milvus)", action, source, len(new_chunks), seconds
    )
    return UpdateResult(
        action=action,
        source=source,
        chunks=written.chunk_count,
        embedded=len(new_chunks),
        seconds=seconds,
        index=written,
    )


def _first_document(
    corpus_dir: Path,
    index_dir: Path,
    target: MilvusTarget,
    embedder: Embedder,
    document: Document,
    data: bytes | None,
    *,
    model: str,
    tokenizer: Tokenizer | None,
    budget: Budget,
    batch_size: int,
    crash_before_switch: Callable[[], None] | None,
) -> UpdateResult:
    """A new collection's first document: a full build of one document."""
    began = time.perf_counter()
    chunks = chunk_document(document, budget=budget)
    if not chunks:
        raise EmptyDocumentError(f"{document.source}: no text to index")
    texts = [c.search_text for c in chunks]
    vectors = embed_passages(embedder, texts, batch_size, before_batch=budget.check)
    corpus = CorpusChange(corpus_dir, "add", document.source, data, budget, crash_before_switch)
    try:
        written = build_milvus(
            index_dir,
            target,
            model=model,
            documents=[document],
            chunks=chunks,
            vectors=vectors,
            began=began,
            backend=embedder.backend,
            tokenizer=tokenizer,
            before_switch=corpus.commit,
        )
    finally:
        corpus.discard()
    seconds = time.perf_counter() - began
    return UpdateResult("add", document.source, len(chunks), len(chunks), seconds, written)


def _tidy(target: MilvusTarget, catalog: Catalog) -> None:
    """Delete rows no reader can see: a crashed update's, and those hidden but not deleted."""
    milvus.delete(target, catalog.collection, f"gen > {catalog.generation}")
    for source, gen in catalog.superseded.items():
        milvus.delete(target, catalog.collection, f"source == {literal(source)} and gen < {gen}")


def _collection_in_force(index_dir: Path) -> str | None:
    try:
        state = json.loads((current_path(index_dir) / MILVUS_FILE).read_text(encoding="utf-8"))
        return str(state["collection"])
    except (OSError, ValueError, KeyError):
        return None


def _counts(chunks: Sequence[Chunk]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.source] = counts.get(chunk.source, 0) + 1
    return counts


def _values(
    old: Mapping[str, Sequence[str]], chunks: Sequence[Chunk], documents: Mapping[str, Document]
) -> dict[str, tuple[str, ...]]:
    """The distinct filter values, old ones kept (a stale value only widens an IN list)."""
    found = {key: set(old.get(key, ())) for key in FILTER_FIELDS}
    for chunk in chunks:
        for key, value in effective_metadata(chunk, documents.get(chunk.source)).items():
            found[key].add(value)
    return {key: tuple(sorted(values)) for key, values in found.items()}


def _rows(
    chunks: Sequence[Chunk],
    documents: Mapping[str, Document],
    vectors: Vectors,
    sparse: Sequence[Mapping[int, float]],
    tokens: Sequence[Sequence[str]],
    *,
    seq: int,
    gen: int,
) -> list[dict[str, Any]]:
    rows = []
    for i, chunk in enumerate(chunks):
        fields = effective_metadata(chunk, documents.get(chunk.source))
        rows.append(
            {
                "chunk_id": chunk.chunk_id,
                "source": chunk.source,
                "title": chunk.title,
                "start": chunk.start,
                "end": chunk.end,
                "text": chunk.text,
                "kind": chunk.kind,
                "context": chunk.context,
                "metadata": dict(chunk.metadata),
                **{key: fields.get(key, "") for key in FILTER_FIELDS},
                "seq": seq + i,
                "gen": gen,
                "length": len(tokens[i]),
                "dense": vectors[i].tolist(),
                "sparse": dict(sparse[i]),
            }
        )
    return rows
