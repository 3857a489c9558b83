"""The answerability model: scoring, its parameters file, near misses and the fit."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from ingest.tokenize import Tokenizer
from service.answer.answerability import (
    FEATURE_NAMES,
    Features,
    Scorer,
    bundled_parameters,
    load_scorer,
    mean_probability,
)
from service.eval.evaluation import Question
from service.eval.fit import Example, fit
from service.eval.nearmiss import near_misses

NEUTRAL = Features(*([0.0] * len(FEATURE_NAMES)))


def _scorer(**weights: float) -> Scorer:
    return Scorer.from_dict(
        {
            "weights": {n: weights.get(n, 0.0) for n in FEATURE_NAMES},
            "intercept": 0.5,
            "means": dict.fromkeys(FEATURE_NAMES, 0.0),
            "scales": dict.fromkeys(FEATURE_NAMES, 2.0),
            "threshold": 0.4,
        }
    )


def test_probability_is_the_logistic_of_standardised_features() -> None:
    scorer = _scorer(answer_coverage=3.0)
    features = replace(NEUTRAL, answer_coverage=1.0)
    # z = 0.5 + 3.0 * (1.0 - 0) / 2.0 = 2.0
    assert scorer.probability(features) == round(1 / (1 + math.exp(-2.0)), 4)
    assert scorer.probability(NEUTRAL) == round(1 / (1 + math.exp(-0.5)), 4)


def test_a_part_without_evidence_counts_zero() -> None:
    scorer = _scorer()
    p = scorer.probability(NEUTRAL)
    assert mean_probability(scorer, [NEUTRAL, None]) == round(p / 2, 4)
    assert mean_probability(scorer, []) == 0.0


def test_parameters_lacking_a_feature_are_refused() -> None:
    data = bundled_parameters()
    del data["weights"]["answer_coverage"]
    with pytest.raises(ValueError, match="answer_coverage"):
        Scorer.from_dict(data)


def test_the_bundled_parameters_load_and_name_every_feature(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = bundled_parameters()
    assert set(data["weights"]) == set(FEATURE_NAMES)
    assert 0.0 < data["threshold"] < 1.0
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_scorer(path) == load_scorer()


DOC = (
    "2024年1月 | 国务院 | 关于优化政务服务的意见 | 探索应用大模型提升智能客服\n"
    "2023年发布了算力方案。"
)
QUESTION = Question(
    id="q1",
    question="国务院2024年1月发布的哪份文件提出用大模型提升智能客服？",
    type="table",
    sources=("a.txt",),
    evidence=("探索应用大模型提升智能客服",),
    answer="关于优化政务服务的意见",
    keywords=("优化政务服务",),
)


def test_near_misses_change_one_constraint_the_evidence_lacks() -> None:
    made = {m.kind: m.question for m in near_misses(QUESTION, {"a.txt": DOC}, Tokenizer(), [])}
    assert made["year"] == "国务院2025年1月发布的哪份文件提出用大模型提升智能客服？"
    assert made["month"] == "国务院2024年2月发布的哪份文件提出用大模型提升智能客服？"
    assert made["stage"] == "国务院2024年1月生效的哪份文件提出用大模型提升智能客服？"
    # 2024年1月 is finer than a year-end; no place named; no foreign names given.
    assert "scope" not in made and "place" not in made and "name" not in made
    yearly = replace(QUESTION, question="国务院2024年发布的哪份文件提出用大模型提升智能客服？")
    made = {m.kind: m.question for m in near_misses(yearly, {"a.txt": DOC}, Tokenizer(), [])}
    assert made["scope"] == "国务院2024年底发布的哪份文件提出用大模型提升智能客服？"


def test_near_misses_swap_names_for_ones_the_report_never_uses() -> None:
    made = {
        m.kind: m.question for m in near_misses(QUESTION, {"a.txt": DOC}, Tokenizer(), ["教育部"])
    }
    assert made["name"] == QUESTION.question.replace("国务院", "教育部")


def test_unanswerable_and_follow_up_questions_make_no_near_misses() -> None:
    tokenizer = Tokenizer()
    unanswerable = replace(QUESTION, type="unanswerable", evidence=(), sources=())
    follow_up = replace(QUESTION, history=(("user", "上一个问题"),))
    assert near_misses(unanswerable, {"a.txt": DOC}, tokenizer, []) == []
    assert near_misses(follow_up, {"a.txt": DOC}, tokenizer, []) == []


def test_fit_learns_the_direction_of_a_separating_feature() -> None:
    data = []
    for i in range(40):
        coverage = 0.5 + (i % 10) / 20
        good = replace(NEUTRAL, answer_coverage=coverage, dense_best=0.5 + (i % 7) / 50)
        bad = replace(NEUTRAL, answer_coverage=coverage - 0.45, dense_best=0.5 + (i % 5) / 50)
        data.append(Example(f"g{i}", "answerable", "q", 1, (good,)))
        data.append(Example(f"g{i}", "year", "q", 0, (bad,)))
    parameters = fit(data)
    assert parameters["weights"]["answer_coverage"] > 1.0
    scorer = Scorer.from_dict(parameters)
    assert scorer.probability(replace(NEUTRAL, answer_coverage=0.9, dense_best=0.6)) > 0.9
    assert scorer.probability(replace(NEUTRAL, answer_coverage=0.1, dense_best=0.6)) < 0.1
    assert parameters["fit"]["examples"] == {"answerable": 40, "year": 40}
    assert parameters["fit"]["out_of_fold"]["false_refusal"] <= 0.05
