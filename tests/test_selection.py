"""Sentence selection: the fitted model, its parameters file and how the composer uses it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.answer.compose import Composer
from service.answer.logistic import Logistic, read_parameters
from service.answer.qa import QA
from service.answer.selection import CLUE_NAMES, PARAMETERS, Clues, load_selector
from service.eval.cmrc import gold_sentence
from service.eval.fit import Sentence, fit_selection

PLAIN = Clues(*([0.0] * len(CLUE_NAMES)))


def _selector(**weights: float) -> Logistic:
    return Logistic.from_dict(
        {
            "weights": {n: weights.get(n, 0.0) for n in CLUE_NAMES},
            "intercept": 0.0,
            "means": dict.fromkeys(CLUE_NAMES, 0.0),
            "scales": dict.fromkeys(CLUE_NAMES, 1.0),
        },
        CLUE_NAMES,
    )


def test_the_bundled_parameters_name_every_clue() -> None:
    data = read_parameters(PARAMETERS)
    assert set(data["weights"]) == set(CLUE_NAMES)
    assert load_selector().names == CLUE_NAMES
    del data["means"]["contrast"]
    with pytest.raises(ValueError, match="contrast"):
        Logistic.from_dict(data, CLUE_NAMES)


def test_fit_learns_which_clue_marks_the_answering_sentence() -> None:
    data = []
    for q in range(60):
        # The answer holds the question's rare term; its neighbours share only the subject.
        data.append(Sentence(f"q{q}", 1, replace(PLAIN, contrast=0.6 + (q % 5) / 20, length=3)))
        for n in range(4):
            noise = replace(PLAIN, contrast=0.1 + n / 20, length=3 + (q + n) % 3)
            data.append(Sentence(f"q{q}", 0, noise))
    parameters = fit_selection(data)
    weights = parameters["weights"]
    assert weights["contrast"] > 0 and max(weights, key=lambda n: abs(weights[n])) == "contrast"
    assert parameters["fit"]["questions"] == 60
    assert max(parameters["fit"]["cv_top1"].values()) == 1.0


def test_the_gold_sentence_is_the_one_holding_the_answer() -> None:
    paragraph = "浮龙属是沧龙科的一属。化石发现于加州费雷斯诺县。它生存于白垩纪。"
    assert gold_sentence(paragraph, ["加州费雷斯诺县"]) == "化石发现于加州费雷斯诺县。"
    assert gold_sentence(paragraph, ["侏罗纪"]) is None


@pytest.mark.e2e
def test_the_composer_ranks_sentences_by_the_selector(real_qa: QA) -> None:
    question = "北京到2025年人工智能产业规模要达到多少？"
    prepared = real_qa.retriever.prepare(question)
    hits = real_qa.retriever.search(prepared, 10)
    ranked = real_qa.composer.candidates(question, prepared.tokens, hits)
    assert ranked and all(c.clues is not None for c in ranked)
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)
    assert "3000亿元" in ranked[0].display

    def first_with(selector: Logistic) -> float:
        composer = Composer(
            real_qa.composer.documents,
            real_qa.composer.tokenizer,
            real_qa.composer.bm25,
            real_qa.composer.scorer,
            selector,
        )
        best = composer.candidates(question, prepared.tokens, hits)[0]
        assert best.clues is not None
        return best.clues.passage

    # Told to prefer the first passage, or the last, the composer does as it is told.
    assert first_with(_selector(passage=5.0)) == 1.0
    assert first_with(_selector(passage=-5.0)) < 1.0


@pytest.mark.e2e
def test_the_document_clue_ranks_reports_not_passages(real_qa: QA) -> None:
    # Sentences of a report's second passage are not penalised as a second report's.
    question = "北京到2025年人工智能产业规模要达到多少？"
    prepared = real_qa.retriever.prepare(question)
    hits = real_qa.retriever.search(prepared, 10)
    reports = list(dict.fromkeys(h.chunk.source for h in hits[:5]))
    ranked = real_qa.composer.candidates(question, prepared.tokens, hits)
    for candidate in ranked:
        assert candidate.clues is not None
        assert candidate.clues.document == 1.0 / (reports.index(candidate.chunk.source) + 1)
        assert candidate.clues.document >= candidate.clues.passage
