"""Is the question answered by the evidence chosen for it? A fitted logistic model.

The composer describes its chosen evidence by a few features (how much of the question
it covers, whether the question's anchors, constraints and unknown names are in it,
how close the dense model puts question and passage); `zhice fit` learns their weights
on the dev split plus near-miss questions generated from it (service.eval.fit), and
saves them in `data/answerability.json`. The probability is the answer's `evidence`;
below the refusal threshold the service says the reports do not cover the question.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

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
    # No fused retrieval score: z-score fusion over a small collection gives a perfect
    # match 0.73, over a large one 0.99; every feature here means the same at any size.

    def vector(self) -> list[float]:
        """The features in declaration order."""
        return [float(v) for v in asdict(self).values()]


FEATURE_NAMES = tuple(f.name for f in fields(Features))


@dataclass(frozen=True)
class Scorer:
    """A logistic model over standardised features, with the threshold fitted with it."""

    weights: Mapping[str, float]
    intercept: float
    means: Mapping[str, float]
    scales: Mapping[str, float]
    threshold: float

    def probability(self, features: Features) -> float:
        """P(the evidence answers the question), rounded to 1e-4."""
        z = self.intercept
        for name, value in zip(FEATURE_NAMES, features.vector(), strict=True):
            z += self.weights[name] * (value - self.means[name]) / self.scales[name]
        return round(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z)))), 4)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scorer:
        """Read the parameters `zhice fit` wrote; every feature must have a weight."""
        missing = set(FEATURE_NAMES) - set(data["weights"])
        if missing:
            raise ValueError(f"answerability parameters lack features: {sorted(missing)}")
        return cls(
            weights={n: float(data["weights"][n]) for n in FEATURE_NAMES},
            intercept=float(data["intercept"]),
            means={n: float(data["means"][n]) for n in FEATURE_NAMES},
            scales={n: float(data["scales"][n]) or 1.0 for n in FEATURE_NAMES},
            threshold=float(data["threshold"]),
        )


def bundled_parameters() -> dict[str, Any]:
    """The parameters shipped with the package (fitted by `zhice fit`)."""
    text = resources.files("service.answer").joinpath("data", PARAMETERS).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def load_scorer(path: Path | None = None) -> Scorer:
    """The scorer from `path`, or the bundled one."""
    data = json.loads(path.read_text("utf-8")) if path else bundled_parameters()
    return Scorer.from_dict(data)


def mean_probability(scorer: Scorer, parts: Sequence[Features | None]) -> float:
    """A multi-part answer's evidence: the mean of its parts' (0 for an unanswered part)."""
    if not parts:
        return 0.0
    return round(sum(scorer.probability(f) if f else 0.0 for f in parts) / len(parts), 4)
