"""Fusing ranked lists from several retrievers into one score per chunk, in (0, 1]."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

Fusion = Literal["rrf", "zscore"]
# A ranking maps chunk id -> (rank starting at 1, raw score).
Ranking = Mapping[int, tuple[int, float]]


def rrf(rankings: Sequence[Ranking], k: int) -> dict[int, float]:
    """Reciprocal-rank fusion, scaled so 1.0 means ranked first by every retriever."""
    best = len(rankings) / (k + 1)
    fused: dict[int, float] = {}
    for ranking in rankings:
        for i, (rank, _) in ranking.items():
            fused[i] = fused.get(i, 0.0) + 1.0 / (k + rank) / best
    return fused


def zscore(rankings: Sequence[Ranking]) -> dict[int, float]:
    """Mean of each retriever's standardised scores, squashed to (0, 1) by a logistic.

    Unlike ranks, standardised scores keep a retriever's confidence: a BM25 hit far
    above the rest stays on top even when the dense ranking places it 30th. A chunk
    one retriever did not return counts as that retriever's lowest score.
    """
    fused: dict[int, float] = {}
    ids = {i for ranking in rankings for i in ranking}
    for ranking in rankings:
        scores = [s for _, s in ranking.values()]
        if not scores:
            continue
        mean = sum(scores) / len(scores)
        std = math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores)) or 1.0
        floor = min(scores)
        for i in ids:
            raw = ranking[i][1] if i in ranking else floor
            fused[i] = fused.get(i, 0.0) + (raw - mean) / std / len(rankings)
    return {i: 1.0 / (1.0 + math.exp(-z)) for i, z in fused.items()}
