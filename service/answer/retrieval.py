"""Hybrid retrieval: dense and BM25 (jieba) rankings from the store, fused in one score."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from ingest.embedding import Embedder
from ingest.tokenize import Tokenizer
from ingest.types import Chunk, Hit
from service.answer.filters import Filter
from service.answer.fusion import Fusion, Ranking, rrf, zscore
from service.answer.store import Scored, Store

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "bm25")
_SYNONYM_BOOST = 0.5
# Scores equal to this many decimals are ties: stores sum float32 terms in other orders.
_TIE_DIGITS = 5


class Encoding:
    """A question's vector on its way from the encoder, and how long it took.

    The encoder works while the request goes on with what needs only the tokens
    (lexical search, reading the question); `vector()` waits for it.
    """

    def __init__(self, future: Future[npt.NDArray[np.float32]]) -> None:
        self._future = future
        self._began = time.perf_counter()
        self._ended = self._began
        self.waited = 0.0  # seconds the request spent blocked in `vector()`
        future.add_done_callback(self._done)

    def _done(self, _: Future[npt.NDArray[np.float32]]) -> None:
        self._ended = time.perf_counter()

    def vector(self) -> npt.NDArray[np.float32]:
        """The vector, once encoded."""
        began = time.perf_counter()
        try:
            return self._future.result()
        finally:
            self.waited += time.perf_counter() - began

    @property
    def seconds(self) -> float:
        """From submission to the vector (queue and forward pass), once it is ready."""
        return self._ended - self._began


@dataclass(frozen=True)
class Query:
    """A question prepared once for both retrievers and the composer."""

    text: str
    tokens: list[str]
    encoding: Encoding | None  # None: BM25 alone
    synonyms: list[str] = field(default_factory=list)

    @property
    def vector(self) -> npt.NDArray[np.float32] | None:
        """The question's vector (None for BM25 alone), once encoded."""
        return None if self.encoding is None else self.encoding.vector()


class Retriever:
    """Searches one version of a store; thread-safe for concurrent reads."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        tokenizer: Tokenizer,
        *,
        candidates: int = 50,
        rrf_k: int = 20,
        fusion: Fusion = "rrf",
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.candidates = candidates
        self.rrf_k = rrf_k
        self.fusion = fusion

    @property
    def sources(self) -> Collection[str]:
        """Document names in the index."""
        return self.store.documents.keys()

    def prepare(
        self, text: str, mode: Mode = "hybrid", tokens: Sequence[str] | None = None
    ) -> Query:
        """Tokenise (unless `tokens` are given) and, unless BM25-only, start embedding."""
        encoding = None if mode == "bm25" else Encoding(self.embedder.submit_query(text))
        tokens = self.tokenizer.tokenize(text) if tokens is None else list(tokens)
        synonyms = self.tokenizer.expand(tokens)[len(set(tokens)) :]
        return Query(text, tokens, encoding, synonyms)

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
        # Lexical search first: it runs while the question is still being encoded.
        sparse = self._bm25(query, where) if mode != "dense" else {}
        dense = self._dense(query, where) if mode != "bm25" else {}
        rankings = [r for r, used in ((dense, mode != "bm25"), (sparse, mode != "dense")) if used]
        if self.fusion == "zscore" and mode == "hybrid":
            fused = zscore(rankings)
        else:
            fused = rrf(rankings, self.rrf_k)
        order = sorted(fused, key=lambda i: (-fused[i], i))[:top_k]
        chunks = self.store.get(order)
        return [
            Hit(
                chunk=chunk,
                score=round(fused[i], 6),
                dense_rank=dense[i][0] if i in dense else None,
                bm25_rank=sparse[i][0] if i in sparse else None,
                dense_score=dense[i][1] if i in dense else None,
                bm25_score=sparse[i][1] if i in sparse else None,
            )
            for i in order
            if (chunk := chunks.get(i)) is not None
        ]

    def rows(self, where: Filter) -> list[Chunk]:
        """Every table-row chunk the filter allows, in corpus order."""
        return self.store.rows(where)

    def _dense(self, query: Query, where: Filter | None) -> Ranking:
        assert query.vector is not None, "dense search needs an embedded query"
        return _ranking(self.store.dense(query.vector, self.candidates, where))

    def _bm25(self, query: Query, where: Filter | None) -> Ranking:
        # Synonyms widen recall for paraphrased questions but count half.
        boosts = dict.fromkeys(query.synonyms, _SYNONYM_BOOST)
        terms = [*query.tokens, *query.synonyms]
        return _ranking(self.store.lexical(terms, boosts, self.candidates, where))


def _ranking(scored: Scored) -> Ranking:
    """Ranks by score, ties (to float rounding) in corpus order, whichever store scored."""
    ordered = sorted(scored, key=lambda pair: (-round(pair[1], _TIE_DIGITS), pair[0]))
    return {key: (rank + 1, score) for rank, (key, score) in enumerate(ordered)}
