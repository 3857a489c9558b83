"""The catalog of a Milvus-backed knowledge base: what the index directory holds then.

Milvus holds the chunks and their vectors; the index directory keeps, in the same
versioned layout as a local index (`current` → `v-…/`, switched atomically), the
manifest, the documents (their full text, which citations quote), the BM25 term
statistics and `milvus.json`: the physical collection, the generation in force, the
documents whose older rows are hidden, and the distinct filter values. Switching
`current` is the one moment a reader sees a change.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.errors import IndexIncompatibleError
from ingest.milvus import MilvusTarget, literal
from ingest.store import (
    Manifest,
    check_index,
    commit_version,
    current_path,
)
from ingest.store import new_version as store_version
from ingest.types import Document

MILVUS_FILE = "milvus.json"
TERMS_FILE = "terms.json"
# The same Okapi parameters as ingest.bm25, so both backends score alike.
K1 = 1.2
B = 0.75


@dataclass(frozen=True)
class Terms:
    """BM25 statistics kept beside Milvus: term ids, document frequencies, lengths.

    A chunk's sparse vector holds each term's saturated frequency
    `tf·(k1+1)/(tf + k1·(1−b+b·len/avglen))` and a query's holds each term's IDF, so
    their inner product is exactly the Okapi BM25 score `ingest.bm25` computes. Term
    ids only grow, so stored vectors stay valid when a live update adds terms.
    """

    vocabulary: dict[str, int]
    df: npt.NDArray[np.int64]
    chunks: int
    tokens: int

    @classmethod
    def empty(cls) -> Terms:
        """No terms, no chunks."""
        return cls({}, np.zeros(0, dtype=np.int64), 0, 0)

    @property
    def average_length(self) -> float:
        """Mean tokens a chunk (1 for an empty corpus, as ingest.bm25)."""
        return self.tokens / self.chunks if self.chunks and self.tokens else 1.0

    def term_idf(self, term: str) -> float:
        """IDF of a term; unseen terms get the highest possible weight."""
        i = self.vocabulary.get(term)
        df = int(self.df[i]) if i is not None else 0
        return math.log(1 + (self.chunks - df + 0.5) / (df + 0.5))

    def query(self, tokens: Sequence[str], boosts: Mapping[str, float]) -> dict[int, float]:
        """A query's sparse vector: IDF (times its boost) of each known term."""
        return {
            self.vocabulary[t]: self.term_idf(t) * boosts.get(t, 1.0)
            for t in set(tokens)
            if t in self.vocabulary
        }

    def with_chunks(
        self, added: Sequence[Sequence[str]], removed: Sequence[tuple[Iterable[int], int]] = ()
    ) -> tuple[Terms, list[dict[int, float]]]:
        """These statistics with chunks added and removed, and the added chunks' vectors.

        `added` are token lists; `removed` (term ids, length) pairs read back from the
        removed rows. Rows already stored keep the average length of their insertion:
        exact after a full build, a drift of a few per cent after many live updates.
        """
        vocabulary = dict(self.vocabulary)
        counts = [Counter(tokens) for tokens in added]
        for counted in counts:
            for term in counted:
                vocabulary.setdefault(term, len(vocabulary))
        df = np.zeros(len(vocabulary), dtype=np.int64)
        df[: len(self.df)] = self.df
        for counted in counts:
            df[[vocabulary[t] for t in counted]] += 1
        for ids, _ in removed:
            df[list(ids)] -= 1
        terms = Terms(
            vocabulary,
            df,
            self.chunks + len(added) - len(removed),
            self.tokens + sum(len(t) for t in added) - sum(length for _, length in removed),
        )
        average = terms.average_length
        vectors = []
        for tokens, counted in zip(added, counts, strict=True):
            norm = K1 * (1 - B + B * len(tokens) / average)
            vectors.append(
                {vocabulary[t]: tf * (K1 + 1) / (tf + norm) for t, tf in counted.items()}
            )
        return terms, vectors

    def to_json(self) -> dict[str, Any]:
        """Vocabulary in id order, frequencies, totals."""
        vocabulary = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        return {
            "vocabulary": vocabulary,
            "df": self.df.tolist(),
            "chunks": self.chunks,
            "tokens": self.tokens,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Terms:
        """Read what to_json wrote."""
        return cls(
            {t: i for i, t in enumerate(data["vocabulary"])},
            np.asarray(data["df"], dtype=np.int64),
            int(data["chunks"]),
            int(data["tokens"]),
        )


@dataclass(frozen=True)
class Catalog:
    """A version of a Milvus-backed knowledge base, as its readers see it.

    Rows of `collection` are visible when their `gen` is at most `generation` and
    their document is not listed in `superseded` with a later generation (the rows a
    replacement or removal hides until they are deleted). `values` lists the distinct
    department, region and date values, which filters are tested against; `counts` the
    chunks of each document.
    """

    path: Path
    manifest: Manifest
    documents: Mapping[str, Document]
    terms: Terms
    target: MilvusTarget
    collection: str
    generation: int
    counts: Mapping[str, int]
    next_seq: int
    superseded: Mapping[str, int] = field(default_factory=dict)
    values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        """Chunks in force."""
        return sum(self.counts.values())


def visible(catalog: Catalog) -> str:
    """The Milvus expression selecting the rows a reader of `catalog` sees."""
    parts = [f"gen <= {catalog.generation}"]
    parts += [
        f"not (source == {literal(source)} and gen < {gen})"
        for source, gen in sorted(catalog.superseded.items())
    ]
    return " and ".join(parts)


def is_catalog(index_dir: Path) -> bool:
    """True when the version in force is a Milvus catalog."""
    return (current_path(index_dir) / MILVUS_FILE).is_file()


def load_catalog(index_dir: Path, model: str, backend: str, target: MilvusTarget) -> Catalog:
    """The catalog in force; refuse one missing, built by another model, or a local index."""
    manifest = check_index(index_dir, model, backend)
    path = current_path(index_dir).resolve()
    if not (path / MILVUS_FILE).is_file():
        raise IndexIncompatibleError(
            f"{index_dir} holds a local index but ZHICE_STORE=milvus: run `zhice migrate "
            "--to milvus` (or `zhice ingest --force`)"
        )
    state = json.loads((path / MILVUS_FILE).read_text(encoding="utf-8"))
    terms = Terms.from_json(json.loads((path / TERMS_FILE).read_text(encoding="utf-8")))
    documents = {row["source"]: Document(**row) for row in _read_jsonl(path / "documents.jsonl")}
    return Catalog(
        path=path,
        manifest=manifest,
        documents=documents,
        terms=terms,
        target=target,
        collection=state["collection"],
        generation=int(state["generation"]),
        counts={k: int(v) for k, v in state["counts"].items()},
        next_seq=int(state["next_seq"]),
        superseded={k: int(v) for k, v in state["superseded"].items()},
        values={k: tuple(v) for k, v in state["values"].items()},
    )


def new_version() -> str:
    """A fresh version name; its last 12 characters name a new physical collection."""
    return store_version(12)


def write_catalog(
    index_dir: Path,
    catalog: Catalog,
    version: str,
    *,
    before_switch: Callable[[], None] | None = None,
) -> Catalog:
    """Write `catalog` as version `version` and make it current atomically.

    `before_switch` runs once the version is complete on disk, just before it becomes
    current; if it raises, the version is discarded and the old one stays in force.
    """

    def write(tmp: Path) -> None:
        _write_jsonl(tmp / "documents.jsonl", (asdict(d) for d in catalog.documents.values()))
        (tmp / TERMS_FILE).write_text(
            json.dumps(catalog.terms.to_json(), ensure_ascii=False), encoding="utf-8"
        )
        state = {
            "collection": catalog.collection,
            "generation": catalog.generation,
            "counts": dict(catalog.counts),
            "next_seq": catalog.next_seq,
            "superseded": dict(catalog.superseded),
            "values": {k: list(v) for k, v in catalog.values.items()},
        }
        (tmp / MILVUS_FILE).write_text(json.dumps(state, ensure_ascii=False), encoding="utf-8")

    final = commit_version(
        index_dir, catalog.manifest, write, version=version, before_switch=before_switch
    )
    return replace(catalog, path=final)


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as rows:
        return [json.loads(line) for line in rows if line.strip()]
