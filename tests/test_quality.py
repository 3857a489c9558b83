"""Quality gate: the bundled question set must keep today's figures (small margin)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from service.answer.qa import QA
from service.eval.evaluation import read_questions, run, summary
from tests.conftest import QUESTIONS

pytestmark = pytest.mark.e2e

# Measured on the bundled set when these were committed; see README "Evaluation".
FLOORS = {
    "hit@5": 0.97,
    "mrr@10": 0.90,
    "keyword_accuracy": 0.86,
    "citation_correct": 0.89,
    "refusal_recall": 0.88,
}
CEILINGS = {"false_refusal": 0.05}


@pytest.fixture(scope="module")
def figures(real_qa: QA) -> Mapping[str, float]:
    return summary(run(real_qa, read_questions(QUESTIONS)))["overall"]


@pytest.mark.parametrize(("metric", "floor"), FLOORS.items())
def test_metric_stays_above_floor(figures: Mapping[str, float], metric: str, floor: float) -> None:
    assert figures[metric] >= floor, f"{metric} fell to {figures[metric]} (floor {floor})"


@pytest.mark.parametrize(("metric", "ceiling"), CEILINGS.items())
def test_metric_stays_below_ceiling(
    figures: Mapping[str, float], metric: str, ceiling: float
) -> None:
    assert figures[metric] <= ceiling, f"{metric} rose to {figures[metric]} (ceiling {ceiling})"
