"""The Milvus store: one catalog version, searched inside Milvus under a boolean filter.

Filters run in the engine. A criterion on department, region or date is tested, with
exactly the local backend's matching rules (`Filter.matches`), against the distinct
values the catalog lists, and sent as `field in [values…]`; sources as `source in
[…]`. Every value reaches Milvus as an escaped string literal, so no input can change
the expression's meaning. A filter naming sources of few chunks (EXACT_UP_TO) is
searched exactly, over the vectors of the rows it allows, as HNSW under it misses
neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest import milvus
from ingest.catalog import Catalog, Terms, visible
from ingest.milvus import CHUNK_FIELDS, chunk_of, literal
from ingest.types import FILTER_FIELDS, Chunk, Document
from service.answer.filters import Filter
from service.answer.store import Scored

# Tested per field: a Filter holding just that field's criterion.
_ALONE = {
    "department": lambda where: Filter(department=where.department),
    "region": lambda where: Filter(region=where.region),
    "date": lambda where: Filter(date_from=where.date_from, date_to=where.date_to),
}
# A filter naming sources of at most this many chunks (the catalog counts them, so no
# round trip) is searched exactly, over its rows' vectors: HNSW under a narrow filter
# misses (milvus-lite's, FAISS HNSW with an ID selector, found 0.49 of the top 10 within
# one document of 100,000 chunks). See tests/bench_milvus.py.
EXACT_UP_TO = 2_000


class MilvusStore:
    """A catalog version; searches go to its Milvus collection."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._visible = visible(catalog)

    @property
    def path(self) -> Path:
        """The catalog version's directory."""
        return self.catalog.path

    @property
    def documents(self) -> Mapping[str, Document]:
        """The documents, by source name."""
        return self.catalog.documents

    @property
    def terms(self) -> Terms:
        """The catalog's BM25 statistics."""
        return self.catalog.terms

    def __len__(self) -> int:
        return self.catalog.chunk_count

    def counts(self) -> Mapping[str, int]:
        """Chunks of each document, from the catalog."""
        return self.catalog.counts

    def expression(self, where: Filter | None) -> str | None:
        """The Milvus filter for the visible rows `where` allows; None when none can pass."""
        parts = [self._visible]
        if where is not None and where.sources is not None:
            if not where.sources:
                return None
            parts.append(f"source in [{', '.join(map(literal, where.sources))}]")
        for field in FILTER_FIELDS:
            if where is None or not _restricts(where, field):
                continue
            alone = _ALONE[field](where)
            values = [v for v in self.catalog.values.get(field, ()) if alone.matches({field: v})]
            if not values:
                return None
            parts.append(f"{field} in [{', '.join(map(literal, values))}]")
        return " and ".join(parts)

    def dense(self, vector: npt.NDArray[np.float32], k: int, where: Filter | None) -> Scored:
        """HNSW search (inner product) inside Milvus; exact within sources of few chunks."""
        expr = self.expression(where)
        if expr is None or k <= 0:
            return []
        target, name = self.catalog.target, self.catalog.collection
        query = np.asarray(vector, dtype=np.float32)
        most = self._most(where)
        if most == 0:
            return []
        if most is not None and most <= EXACT_UP_TO:
            return _exact(milvus.query_few(target, name, expr, ["dense"], most), query, k)
        return milvus.search(target, name, "dense", query.tolist(), k, expr)

    def _most(self, where: Filter | None) -> int | None:
        """The most chunks `where` can allow, from the catalog's counts; None if unknown."""
        if where is None or where.sources is None:
            return None
        return sum(self.catalog.counts.get(source, 0) for source in where.sources)

    def lexical(
        self, tokens: Sequence[str], boosts: Mapping[str, float], k: int, where: Filter | None
    ) -> Scored:
        """Sparse inner product of term IDFs with the stored saturated frequencies: BM25."""
        expr = self.expression(where)
        query = self.terms.query(tokens, boosts)
        if expr is None or not query or k <= 0:
            return []
        found = milvus.search(
            self.catalog.target, self.catalog.collection, "sparse", query, k, expr
        )
        return [(key, score) for key, score in found if score > 0]

    def get(self, keys: Sequence[int]) -> Mapping[int, Chunk]:
        """Fetch the rows by primary key."""
        rows = milvus.get(self.catalog.target, self.catalog.collection, keys, CHUNK_FIELDS)
        return {int(row["pk"]): chunk_of(row) for row in rows}

    def rows(self, where: Filter) -> list[Chunk]:
        """Table rows the filter allows, sorted into corpus order."""
        expr = self.expression(where)
        if expr is None:
            return []
        return self._query(f'{expr} and kind == "table_row"')

    def chunks(self, source: str | None = None) -> Iterator[Chunk]:
        """Every visible chunk (of one document), in corpus order."""
        expr = (
            self._visible if source is None else f"{self._visible} and source == {literal(source)}"
        )
        return iter(self._query(expr))

    def _query(self, expr: str) -> list[Chunk]:
        found = milvus.query(self.catalog.target, self.catalog.collection, expr, CHUNK_FIELDS)
        return [chunk_of(row) for row in sorted(found, key=lambda row: int(row["seq"]))]


def _exact(rows: Iterable[Mapping[str, Any]], query: npt.NDArray[np.float32], k: int) -> Scored:
    """Top-k rows by inner product of their `dense` vector with `query`."""
    found = list(rows)
    if not found:
        return []
    keys = [int(row["pk"]) for row in found]
    scores = np.asarray([row["dense"] for row in found], dtype=np.float32) @ query
    top = np.argsort(-scores, kind="stable")[:k]
    return [(keys[i], float(scores[i])) for i in top]


def _restricts(where: Filter, field: str) -> bool:
    return where.dated if field == "date" else getattr(where, field) is not None
