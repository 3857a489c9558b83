"""Is the question answered by the evidence chosen for it? A fitted logistic model.

The composer describes its chosen evidence by a few features (how much of the question
it covers, whether the question's anchors, constraints and unknown names are in it,
how close the dense model puts question and passage); `zhice fit` learns their weights
on the dev split plus near-miss questions generated from it (service.eval.fit), and
saves them in `data/answerability.json`. The probability is the answer's `evidence`;
below the refusal threshold the service says the reports do not cover the question.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from service.answer.logistic import Logistic, read_parameters

PARAMETERS = "answerability.json"


@dataclass(frozen=True)
class Features:
    """What the composer knows about its chosen evidence, each in a small fixed range."""

    answer_coverage: float  # idf-weighted share of question terms in the answer (0..1)
    passage_coverage: float  # the same for the best passage (0..1)
    anchors_unknown: float  # 1 when an anchor (place, name, year) is nowhere in the reports
    anchors_missing: float  # weight of anchors the answer lacks (a year counts 2), 0..2
    names_unknown: float  # share of the question's proper nouns the reports never use
    words_unknown: float  # idf-weighted share of content words the reports never use
    constraints_missing: float  # time scopes and stages asked (年底, 生效) the answer lacks
    untyped: float  # 1 when an amount, date or money is asked and the answer has none
    unfocused: float  # 1 when the measured thing (规模 in 规模是多少) is not in the answer
    dense_answer: float  # cosine of question and the answer's passage (−1..1)
    dense_best: float  # cosine of question and the best dense passage (−1..1)
    selected: float  # the sentence-selection model's probability for the answer (0..1)
    # No fused retrieval score: z-score fusion over a small collection gives a perfect
    # match 0.73, over a large one 0.99; every feature here means the same at any size.

    def vector(self) -> list[float]:
        """The features in declaration order."""
        return [float(getattr(self, name)) for name in FEATURE_NAMES]


FEATURE_NAMES = tuple(f.name for f in fields(Features))


@dataclass(frozen=True)
class Scorer:
    """The fitted logistic model of answerability, and the threshold fitted with it."""

    model: Logistic
    threshold: float

    def probability(self, features: Features) -> float:
        """P(the evidence answers the question), rounded to 1e-4."""
        return self.model.probability(features.vector())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scorer:
        """Read the parameters `zhice fit` wrote; every feature must have a weight."""
        return cls(Logistic.from_dict(data, FEATURE_NAMES), float(data["threshold"]))


def bundled_parameters() -> dict[str, Any]:
    """The parameters shipped with the package (fitted by `zhice fit`)."""
    return read_parameters(PARAMETERS)


def load_scorer(path: Path | None = None) -> Scorer:
    """The scorer from `path`, or the bundled one."""
    return Scorer.from_dict(read_parameters(PARAMETERS, path))


def mean_probability(scorer: Scorer, parts: Sequence[Features | None]) -> float:
    """A multi-part answer's evidence: the mean of its parts' (0 for an unanswered part)."""
    if not parts:
        return 0.0
    return round(sum(scorer.probability(f) if f else 0.0 for f in parts) / len(parts), 4)
