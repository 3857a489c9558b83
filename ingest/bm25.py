"""A BM25 index over token lists, stored as plain arrays (no pickle)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class BM25:
    """Per-term posting lists with precomputed BM25 weights (Okapi, k1=1.2, b=0.75)."""

    vocabulary: dict[str, int]
    idf: npt.NDArray[np.float32]
    indptr: npt.NDArray[np.int64]
    doc_ids: npt.NDArray[np.int32]
    weights: npt.NDArray[np.float32]
    n_docs: int

    @classmethod
    def build(cls, corpus: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.75) -> BM25:
        """Index tokenised documents; row i of the corpus is document id i."""
        n_docs = len(corpus)
        lengths = np.array([len(doc) for doc in corpus], dtype=np.float32)
        avg = float(lengths.mean()) if n_docs and lengths.sum() else 1.0
        postings: dict[str, list[tuple[int, int]]] = {}
        for doc_id, tokens in enumerate(corpus):
            for term, tf in Counter(tokens).items():
                postings.setdefault(term, []).append((doc_id, tf))
        vocabulary = {term: i for i, term in enumerate(sorted(postings))}
        indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        doc_ids: list[int] = []
        weights: list[float] = []
        idf = np.zeros(len(vocabulary), dtype=np.float32)
        for term, i in vocabulary.items():
            plist = postings[term]
            idf[i] = math.log(1 + (n_docs - len(plist) + 0.5) / (len(plist) + 0.5))
            for doc_id, tf in plist:
                norm = tf + k1 * (1 - b + b * lengths[doc_id] / avg)
                doc_ids.append(doc_id)
                weights.append(float(idf[i]) * tf * (k1 + 1) / norm)
            indptr[i + 1] = len(doc_ids)
        return cls(
            vocabulary,
            idf,
            indptr,
            np.array(doc_ids, dtype=np.int32),
            np.array(weights, dtype=np.float32),
            n_docs,
        )

    def scores(
        self, tokens: Sequence[str], boosts: Mapping[str, float] | None = None
    ) -> npt.NDArray[np.float32]:
        """BM25 score of every document for a tokenised query (0 where no term matches).

        `boosts` scales individual query terms (e.g. 0.5 for added synonyms).
        """
        out = np.zeros(self.n_docs, dtype=np.float32)
        for term in set(tokens):
            i = self.vocabulary.get(term)
            if i is not None:
                lo, hi = self.indptr[i], self.indptr[i + 1]
                boost = boosts.get(term, 1.0) if boosts else 1.0
                out[self.doc_ids[lo:hi]] += boost * self.weights[lo:hi]
        return out

    def term_idf(self, term: str) -> float:
        """IDF of a term; unseen terms get the highest possible weight."""
        i = self.vocabulary.get(term)
        if i is None:
            return math.log(1 + (self.n_docs + 0.5) / 0.5)
        return float(self.idf[i])

    def save(self, directory: Path) -> None:
        """Write the arrays and vocabulary into directory."""
        np.savez(
            directory / "bm25.npz",
            idf=self.idf,
            indptr=self.indptr,
            doc_ids=self.doc_ids,
            weights=self.weights,
        )
        vocab = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        payload = {"n_docs": self.n_docs, "vocabulary": vocab}
        (directory / "bm25_vocab.json").write_text(
            json.dumps(payload, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> BM25:
        """Read an index written by save()."""
        meta = json.loads((directory / "bm25_vocab.json").read_text(encoding="utf-8"))
        with np.load(directory / "bm25.npz", allow_pickle=False) as arrays:
            return cls(
                {term: i for i, term in enumerate(meta["vocabulary"])},
                arrays["idf"],
                arrays["indptr"],
                arrays["doc_ids"],
                arrays["weights"],
                int(meta["n_docs"]),
            )
