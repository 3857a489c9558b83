"""A BM25 index over token lists: postings of raw term frequencies in segments, as .npy.

A segment (`Postings`) holds, term by term, the ascending ids of the chunks it occurs
in and how often; nothing in it depends on the rest of the corpus, so a live update
writes only a small segment of its own and never rebuilds the large one. `BM25` joins
the segments of an index version and computes the Okapi weights (k1=1.2, b=0.75) at
query time from corpus-wide statistics over the chunks alive, so an index grown by
updates scores exactly like one built at once. A query costs time in proportion to the
postings of its terms, not to the size of the corpus. Arrays load memory-mapped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ingest.tables import mapped

K1 = 1.2
B = 0.75
_ARRAYS = ("indptr", "docs", "tf", "lengths")
# The files a segment is saved as.
FILES = (*(f"bm25_{name}.npy" for name in _ARRAYS), "bm25_terms.json")


@dataclass(frozen=True)
class Postings:
    """One segment: term t occurs in chunks docs[indptr[t]:indptr[t+1]], tf[...] times each.

    Chunk ids are the segment's own (0 … len(lengths)-1); `lengths` counts each chunk's
    tokens.
    """

    terms: Sequence[str]
    indptr: npt.NDArray[np.int64]
    docs: npt.NDArray[np.int32]
    tf: npt.NDArray[np.float32]
    lengths: npt.NDArray[np.float32]

    @classmethod
    def build(cls, corpus: Sequence[Sequence[str]]) -> Postings:
        """Index tokenised chunks; row i of the corpus is chunk id i."""
        vocabulary: dict[str, int] = {}
        flat = chain.from_iterable(corpus)
        count = sum(len(tokens) for tokens in corpus)
        ids = np.fromiter(
            (vocabulary.setdefault(t, len(vocabulary)) for t in flat), np.int64, count
        )
        lengths = np.fromiter((len(tokens) for tokens in corpus), np.int64, len(corpus))
        return cls.from_ids(list(vocabulary), ids, lengths)

    @classmethod
    def from_ids(
        cls, terms: Sequence[str], token_ids: npt.NDArray[np.int64], lengths: npt.NDArray[np.int64]
    ) -> Postings:
        """Index chunks given as term ids (into `terms`), chunk after chunk; `lengths[i]`
        of them belong to chunk i. Counting is one sort, with no loop over tokens."""
        n_docs = len(lengths)
        doc_ids = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
        keys, tf = np.unique(token_ids * max(n_docs, 1) + doc_ids, return_counts=True)
        term_of, docs = np.divmod(keys, max(n_docs, 1))
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_of, minlength=len(terms)), out=indptr[1:])
        return cls(
            list(terms),
            indptr,
            docs.astype(np.int32),
            tf.astype(np.float32),
            lengths.astype(np.float32),
        )

    @classmethod
    def empty(cls) -> Postings:
        """A segment of no chunks."""
        return cls.from_ids([], np.zeros(0, np.int64), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.lengths)

    @cached_property
    def lookup(self) -> dict[str, int]:
        """Term → its row."""
        return {term: i for i, term in enumerate(self.terms)}

    def postings(self, term: str) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
        """(chunk ids, term frequencies) of a term; empty when unseen."""
        i = self.lookup.get(term)
        if i is None:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.docs[lo:hi], self.tf[lo:hi]

    def concat(self, other: Postings, keep: npt.NDArray[np.bool_] | None = None) -> Postings:
        """This segment's chunks then `other`'s (renumbered after them), as one segment.

        With `keep` (one flag per chunk of both), only the kept chunks, renumbered densely.
        """
        n = len(self)
        terms = list(self.terms) + [t for t in other.terms if t not in self.lookup]
        merged = {t: i for i, t in enumerate(terms)}
        remap = np.fromiter((merged[t] for t in other.terms), np.int64, len(other.terms))
        term_ids = np.concatenate(
            [
                np.repeat(np.arange(len(self.terms)), np.diff(self.indptr)),
                remap[np.repeat(np.arange(len(other.terms)), np.diff(other.indptr))],
            ]
        ).astype(np.int64)
        docs = np.concatenate([self.docs, other.docs.astype(np.int64) + n])
        tf = np.concatenate([self.tf, other.tf])
        lengths = np.concatenate([self.lengths, other.lengths])
        if keep is not None:
            renumber = np.cumsum(keep) - 1
            alive = keep[docs]
            term_ids, docs, tf = term_ids[alive], renumber[docs[alive]], tf[alive]
            lengths = lengths[keep]
        order = np.lexsort((docs, term_ids))
        indptr = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(terms)), out=indptr[1:])
        used = np.diff(indptr) > 0
        if not used.all():  # terms only dead chunks had
            terms = [t for t, u in zip(terms, used, strict=True) if u]
            indptr = np.concatenate([[0], indptr[1:][used]])
        return Postings(
            terms,
            indptr,
            docs[order].astype(np.int32),
            tf[order].astype(np.float32),
            lengths.astype(np.float32),
        )

    def select(self, keep: npt.NDArray[np.bool_]) -> Postings:
        """Only the chunks `keep` flags (one flag per chunk), renumbered densely."""
        return Postings.empty().concat(self, keep=keep)

    def save(self, directory: Path) -> None:
        """Write the arrays (`bm25_<name>.npy`) and the terms (`bm25_terms.json`)."""
        for name in _ARRAYS:
            np.save(directory / f"bm25_{name}.npy", getattr(self, name))
        (directory / "bm25_terms.json").write_text(
            json.dumps(list(self.terms), ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, directory: Path) -> Postings:
        """Read a segment written by save(), its arrays memory-mapped."""
        terms = json.loads((directory / "bm25_terms.json").read_text(encoding="utf-8"))
        arrays = [mapped(directory / f"bm25_{name}.npy") for name in _ARRAYS]
        return cls(terms, *arrays)


class BM25:
    """Okapi BM25 over segments laid end to end, counting only the chunks alive.

    Chunk ids run across the segments (the second's first chunk follows the first's
    last); `alive` marks the ids still in the index (None: all), and scores come out for
    the alive ids only, renumbered densely in order (the ids the index serves).
    """

    def __init__(
        self, segments: Sequence[Postings], alive: npt.NDArray[np.bool_] | None = None
    ) -> None:
        self.segments = list(segments)
        self._starts = np.cumsum([0, *(len(s) for s in self.segments)])
        lengths = np.concatenate([s.lengths for s in self.segments]).astype(np.float32)
        self._alive = alive if alive is not None and not alive.all() else None
        self._alive_ids = None if self._alive is None else np.flatnonzero(self._alive)
        self._dead = None if self._alive is None else np.flatnonzero(~self._alive)
        live = lengths if self._alive is None else lengths[self._alive]
        self.n_docs = len(live)
        avg = float(live.sum()) / self.n_docs if self.n_docs and live.sum() else 1.0
        # The length part of each chunk's BM25 denominator, once per loaded version.
        self._norm = (K1 * (1 - B + B * lengths / avg)).astype(np.float32)

    @classmethod
    def build(cls, corpus: Sequence[Sequence[str]]) -> BM25:
        """One segment over tokenised chunks; row i of the corpus is chunk id i."""
        return cls([Postings.build(corpus)])

    @cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every term of the segments."""
        return frozenset(chain.from_iterable(s.terms for s in self.segments))

    def scores(
        self, tokens: Sequence[str], boosts: Mapping[str, float] | None = None
    ) -> npt.NDArray[np.float32]:
        """BM25 score of every chunk for a tokenised query (0 where no term matches).

        `boosts` scales individual query terms (e.g. 0.5 for added synonyms).
        """
        out = np.zeros(int(self._starts[-1]), dtype=np.float32)
        for term in set(tokens):
            found = self._postings(term)
            if found is None:
                continue
            docs, tf, df = found
            weight = (boosts.get(term, 1.0) if boosts else 1.0) * self._idf(df) * (K1 + 1)
            out[docs] += weight * tf / (tf + self._norm[docs])
        return out if self._alive is None else out[self._alive]

    def top(
        self,
        tokens: Sequence[str],
        k: int,
        boosts: Mapping[str, float] | None = None,
        allowed: npt.NDArray[np.int64] | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The k best-scoring chunks with a score above 0, among `allowed` (ascending ids)
        when given: (ids, scores), best first, ties by id. Scores are summed over the
        query terms' postings only; picking the best is one pass over the accumulator
        (or over the allowed ids), with no sort of the corpus."""
        out = np.zeros(int(self._starts[-1]), dtype=np.float32)
        for term in set(tokens):
            found = self._postings(term)
            if found is not None:
                docs, tf, df = found
                weight = (boosts.get(term, 1.0) if boosts else 1.0) * self._idf(df) * (K1 + 1)
                out[docs] += weight * tf / (tf + self._norm[docs])
        if self._dead is not None:
            out[self._dead] = 0
        if allowed is None:
            ids = np.flatnonzero(out)
        else:
            ids = allowed if self._alive_ids is None else self._alive_ids[allowed]
            ids = ids[out[ids] > 0]
        scores = out[ids]
        if len(ids) > k:
            cut = np.argpartition(-scores, k - 1)[:k]
            ids, scores = ids[cut], scores[cut]
        order = np.lexsort((ids, -scores))
        ids, scores = ids[order], scores[order]
        if self._alive_ids is not None:  # stored ids → served ids (order is kept)
            ids = np.searchsorted(self._alive_ids, ids)
        return ids.astype(np.int64), scores

    def term_idf(self, term: str) -> float:
        """IDF of a term; unseen terms get the highest possible weight."""
        found = self._postings(term)
        return self._idf(0 if found is None else found[2])

    def _idf(self, df: int) -> float:
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))

    def _postings(
        self, term: str
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], int] | None:
        """(global chunk ids, tf, document frequency among the alive) of a term."""
        parts = [
            (s.postings(term), start)
            for s, start in zip(self.segments, self._starts[:-1], strict=True)
        ]
        found = [(docs.astype(np.int64) + start, tf) for (docs, tf), start in parts if len(docs)]
        if not found:
            return None
        docs = np.concatenate([d for d, _ in found]) if len(found) > 1 else found[0][0]
        tf = np.concatenate([t for _, t in found]) if len(found) > 1 else found[0][1]
        df = len(docs) if self._alive is None else int(self._alive[docs].sum())
        return (docs, tf, df) if df else None
