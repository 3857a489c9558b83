"""Quality gate: dev and the held-out test split must keep today's figures (small margin).

Floors are the figures measured when they were committed, less a margin for noise; the
test split's are the ones that count (dev is tuned on). See README "Evaluation".
"""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from service.answer.qa import QA
from service.eval.evaluation import read_questions, run, summary
from tests.conftest import ROOT

pytestmark = pytest.mark.e2e

FLOORS = {
    "dev": {
        "hit@5": 0.97,
        "mrr@10": 0.90,
        "keyword_accuracy": 0.86,
        "citation_correct": 0.89,
        "refusal_recall": 0.78,
    },
    "test": {
        "hit@5": 0.97,
        "mrr@10": 0.93,
        "keyword_accuracy": 0.82,
        "citation_correct": 0.91,
        "refusal_recall": 0.65,
    },
}
CEILINGS = {"dev": {"false_refusal": 0.05}, "test": {"false_refusal": 0.10}}


@pytest.fixture(scope="module")
def figures(real_qa: QA) -> Mapping[str, Mapping[str, float]]:
    return {
        split: summary(run(real_qa, read_questions(ROOT / "eval" / f"{split}.jsonl")))["overall"]
        for split in FLOORS
    }


@pytest.mark.parametrize(
    ("split", "metric", "floor"),
    [(s, m, f) for s, floors in FLOORS.items() for m, f in floors.items()],
)
def test_metric_stays_above_floor(
    figures: Mapping[str, Mapping[str, float]], split: str, metric: str, floor: float
) -> None:
    value = figures[split][metric]
    assert value >= floor, f"{split} {metric} fell to {value} (floor {floor})"


@pytest.mark.parametrize(
    ("split", "metric", "ceiling"),
    [(s, m, c) for s, ceilings in CEILINGS.items() for m, c in ceilings.items()],
)
def test_metric_stays_below_ceiling(
    figures: Mapping[str, Mapping[str, float]], split: str, metric: str, ceiling: float
) -> None:
    value = figures[split][metric]
    assert value <= ceiling, f"{split} {metric} rose to {value} (ceiling {ceiling})"
