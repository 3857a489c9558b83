"""Hybrid retrieval: dense (FAISS) and BM25 (jieba) fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from ingest.embedding import Embedder
from ingest.store import LoadedIndex
from ingest.tokenize import Tokenizer
from ingest.types import Chunk, Hit
from service.answer.filters import Filter, FilterIndex
from service.answer.fusion import Fusion, rrf, zscore

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")
_SYNONYM_BOOST = 0.5


@dataclass(frozen=True)
class Query:
    """A question prepared once for both retrievers and the composer."""

    text: str
    tokens: list[str]
    vector: npt.NDArray[np.float32] | None
    synonyms: list[str] = field(default_factory=list)


class Retriever:
    """Searches one loaded index; thread-safe for concurrent reads."""

    def __init__(
        self,
        index: LoadedIndex,
        embedder: Embedder,
        tokenizer: Tokenizer,
        *,
        candidates: int = 50,
        rrf_k: int = 20,
        fusion: Fusion = "rrf",
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.fusion = fusion
        self.filters = FilterIndex(index.chunks, index.documents)

    @property
    def sources(self) -> Collection[str]:
        """Document names in the index."""
        return self.index.documents.keys()

    def prepare(self, text: str, mode: Mode = "hybrid") -> Query:
        """Tokenise and (unless BM25-only) embed a question."""
        vector = None if mode == "bm25" else self.embedder.embed_query(text)
        tokens = self.tokenizer.tokenize(text)
        synonyms = self.tokenizer.expand(tokens)[len(set(tokens)) :]
        return Query(text, tokens, vector, synonyms)

    def search(
        self,
        query: Query,
        top_k: int,
        where: Filter | None = None,
        mode: Mode = "hybrid",
    ) -> list[Hit]:
        """The top_k chunks by fused score in (0, 1] (see `service.answer.fusion`).

        Under a filter both retrievers search only the chunks it allows, so a
        restrictive filter loses no match to the candidate cut-off.
        """
        allowed = self.filters.allowed(where)
        dense = self._dense(query, allowed) if mode != "bm25" else {}
        sparse = self._bm25(query, allowed) if mode != "dense" else {}
        rankings = [r for r, used in ((dense, mode != "bm25"), (sparse, mode != "dense")) if used]
        if self.fusion == "zscore" and mode == "hybrid":
            fused = zscore(rankings)
        else:
            fused = rrf(rankings, self.rrf_k)
        order = sorted(fused, key=lambda i: (-fused[i], i))[:top_k]
        return [
            Hit(
                chunk=self.index.chunks[i],
                score=round(fused[i], 6),
                dense_rank=dense[i][0] if i in dense else None,
                bm25_rank=sparse[i][0] if i in sparse else None,
                dense_score=dense[i][1] if i in dense else None,
                bm25_score=sparse[i][1] if i in sparse else None,
            )
            for i in order
        ]

    def rows(self, where: Filter) -> list[Chunk]:
        """Every table-row chunk the filter allows, in corpus order."""
        allowed = self.filters.allowed(where)
        chunks = self.index.chunks
        ids = range(len(chunks)) if allowed is None else allowed
        return [chunks[i] for i in ids if chunks[i].kind == "table_row"]

    def _dense(
        self, query: Query, allowed: npt.NDArray[np.int64] | None
    ) -> Mapping[int, tuple[int, float]]:
        assert query.vector is not None, "dense search needs an embedded query"
        scores, ids = self.index.vectors.search(query.vector, self.candidates, allowed)
        return {int(i): (r + 1, float(s)) for r, (s, i) in enumerate(zip(scores, ids, strict=True))}

    def _bm25(
        self, query: Query, allowed: npt.NDArray[np.int64] | None
    ) -> Mapping[int, tuple[int, float]]:
        # Synonyms widen recall for paraphrased questions but count half.
        boosts = dict.fromkeys(query.synonyms, _SYNONYM_BOOST)
        terms = [*query.tokens, *query.synonyms]
        ids, scores = self.index.bm25.top(terms, self.candidates, boosts, allowed)
        return {int(i): (r + 1, float(s)) for r, (i, s) in enumerate(zip(ids, scores, strict=True))}
