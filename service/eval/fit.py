"""`zhice fit`: learn the sentence-selection and answerability models.

Sentence selection (which sentence of the passages read answers): every candidate
sentence of a question is one example, positive when it holds the gold answer. The
questions are CMRC 2018 *trial* questions asked of their own paragraphs (the gold span)
and the dev split's answerable single-part questions (all gold keywords). It is fitted
first: the evidence the answerability model describes is what selection chose.

Answerability examples (features of the chosen evidence → does it answer the question):
- positives: the dev split's answerable questions, and CMRC 2018 trial questions asked of
  their own paragraphs whose picked sentence holds the gold answer (answerable questions
  worded by strangers);
- negatives: the dev split's unanswerable questions, near misses generated from its answerable
  ones (service.eval.nearmiss), and, when given, CMRC 2018 *trial* questions asked of
  our reports (fluent Chinese questions on other subjects).
Every part of a multi-part question is one example. A logistic regression over
standardised features is fitted with its regularisation chosen by cross-validation,
the folds grouped by dev question so that a question and its near misses never sit on
both sides. The refusal threshold is calibrated on the out-of-fold probabilities of the
real dev questions (≤ 5% false refusals), then the model is refitted on everything.
The test split is never read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.answer.answerability import FEATURE_NAMES, Features
from service.answer.qa import QA
from service.answer.rewrite import Turn
from service.answer.selection import CLUE_NAMES, Clues
from service.eval.calibration import calibrate
from service.eval.cmrc_metrics import remove_punctuation
from service.eval.evaluation import Question
from service.eval.nearmiss import NearMiss, names_in, near_misses

log = logging.getLogger(__name__)

FOLDS = 5
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
CMRC_NEGATIVES = 150
CMRC_POSITIVES = 600
FOREIGN_NAMES = 300
SEED = 20261127


@dataclass(frozen=True)
class Sentence:
    """One candidate sentence of a question: does it hold the gold answer?"""

    group: str  # the question it was read for
    label: int
    clues: Clues


@dataclass(frozen=True)
class Gold:
    """A question and what an answering sentence holds: any one of `answers`, or all."""

    id: str
    question: str
    answers: tuple[str, ...]
    needs_all: bool


def dev_gold(questions: Sequence[Question]) -> list[Gold]:
    """The dev split's answerable single-part questions: a sentence must hold every keyword."""
    return [
        Gold(q.id, q.question, q.keywords, needs_all=True)
        for q in questions
        if q.answerable and q.type != "multi" and q.keywords and not q.history
    ]


def sentences(qa: QA, golds: Sequence[Gold], passages: int = 10) -> list[Sentence]:
    """Every candidate sentence of every question, labelled; questions where no sentence
    or every sentence holds the answer teach nothing about choosing and are left out."""
    out = []
    for gold in golds:
        prepared = qa.retriever.prepare(gold.question)
        hits = qa.retriever.search(prepared, passages)
        wanted = [remove_punctuation(a) for a in gold.answers]
        rows = []
        for candidate in qa.composer.candidates(gold.question, prepared.tokens, hits):
            plain = remove_punctuation(candidate.display)
            found = [a in plain for a in wanted]
            label = all(found) if gold.needs_all else any(found)
            assert candidate.clues is not None
            rows.append(Sentence(gold.id, int(label), candidate.clues))
        if 0 < sum(r.label for r in rows) < len(rows):
            out.extend(rows)
    return out


def fit_selection(data: Sequence[Sentence]) -> dict[str, Any]:
    """Fit the sentence model; the regularisation is chosen by out-of-fold top-1 accuracy."""
    x = np.array([s.clues.vector() for s in data], dtype=np.float64)
    y = np.array([s.label for s in data])
    groups = np.array([s.group for s in data])
    fitted = _logistic(x, y, groups, CLUE_NAMES, lambda p: -_top1(p, y, groups))
    parameters = fitted.parameters
    parameters["fit"] = {
        "C": fitted.c,
        "cv_top1": {str(c): round(-v, 4) for c, v in fitted.losses.items()},
        "questions": len(set(groups)),
        "sentences": len(data),
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return parameters


@dataclass(frozen=True)
class _Fitted:
    parameters: dict[str, Any]
    c: float
    losses: dict[float, float]
    out_of_fold: np.ndarray


def _logistic(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    names: Sequence[str],
    loss: Callable[[np.ndarray], float],
) -> _Fitted:
    """A logistic regression over standardised features, C chosen by grouped CV `loss`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0
    z = (x - means) / scales
    folds = list(GroupKFold(n_splits=FOLDS).split(z, y, groups))

    def out_of_fold(c: float) -> np.ndarray:
        p = np.zeros(len(y))
        for train, held in folds:
            model = LogisticRegression(C=c, max_iter=1000).fit(z[train], y[train])
            p[held] = model.predict_proba(z[held])[:, 1]
        return p

    losses = {c: loss(out_of_fold(c)) for c in C_GRID}
    best = min(losses, key=lambda c: (round(losses[c], 4), c))
    model = LogisticRegression(C=best, max_iter=1000).fit(z, y)
    return _Fitted(
        parameters={
            "weights": dict(zip(names, map(_r, model.coef_[0]), strict=True)),
            "intercept": _r(model.intercept_[0]),
            "means": dict(zip(names, map(_r, means), strict=True)),
            "scales": dict(zip(names, map(_r, scales), strict=True)),
        },
        c=best,
        losses=losses,
        out_of_fold=out_of_fold(best),
    )


def _top1(p: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The share of questions whose most probable sentence holds the answer."""
    best: dict[str, tuple[float, int]] = {}
    for score, label, group in zip(p, y, groups, strict=True):
        if group not in best or score > best[group][0]:
            best[group] = (float(score), int(label))
    return sum(label for _, label in best.values()) / len(best)


@dataclass(frozen=True)
class Example:
    """One row of the fitting data."""

    group: str  # the dev question it belongs to (its near misses share it)
    kind: str  # answerable, unanswerable, a near-miss kind, or cmrc
    question: str
    label: int  # 1: the reports answer it
    features: tuple[Features | None, ...]


def examples(
    qa: QA,
    questions: Sequence[Question],
    cmrc_questions: Sequence[str] = (),
    cmrc_paragraphs: Sequence[str] = (),
    on_progress: Callable[[], None] | None = None,
) -> list[Example]:
    """Ask every dev question, its near misses and the CMRC questions; keep the features."""
    tokenizer = qa.retriever.tokenizer
    documents = {s: d.text for s, d in qa.retriever.store.documents.items()}
    corpus = "\n".join(documents.values())
    foreign = names_in(cmrc_paragraphs, tokenizer, corpus)[:FOREIGN_NAMES]
    rows: list[tuple[str, str, str, int, tuple[Turn, ...]]] = []
    for q in questions:
        turns = tuple(Turn(role, content) for role, content in q.history)
        rows.append(
            (
                q.id,
                q.type if not q.answerable else "answerable",
                q.question,
                int(q.answerable),
                turns,
            )
        )
        for miss in near_misses(q, documents, tokenizer, foreign):
            rows.append((miss.origin, miss.kind, miss.question, 0, ()))
    rng = np.random.default_rng(SEED)
    picked = rng.permutation(len(cmrc_questions))[:CMRC_NEGATIVES]
    rows += [(f"cmrc{i}", "cmrc", cmrc_questions[i], 0, ()) for i in sorted(picked)]
    out = []
    for group, kind, text, label, turns in rows:
        result = qa.ask(text, 10, history=turns)
        out.append(Example(group, kind, text, label, result.features))
        if on_progress:
            on_progress()
    return out


def answered(qa: QA, golds: Sequence[Gold], limit: int = CMRC_POSITIVES) -> list[Example]:
    """Answerable questions in other words than the reports': CMRC trial questions asked
    of their own paragraphs, where the sentence the composer picks holds the gold answer
    (a pick without it says nothing about answerability, and is left out)."""
    rng = np.random.default_rng(SEED)
    out = []
    for i in sorted(rng.permutation(len(golds))[:limit]):
        gold = golds[i]
        prepared = qa.retriever.prepare(gold.question)
        hits = qa.retriever.search(prepared, 10)
        picked = qa.composer.candidates(gold.question, prepared.tokens, hits)[:1]
        plain = remove_punctuation(picked[0].display) if picked else ""
        if any(remove_punctuation(a) in plain for a in gold.answers if a):
            features = qa.ask(gold.question, 10).features
            out.append(Example(f"trial-{gold.id}", "cmrc-answered", gold.question, 1, features))
    return out


def fit(data: Sequence[Example]) -> dict[str, Any]:
    """Fit the model and its threshold; return the parameters file's content."""
    rows = [(e, f) for e in data for f in e.features if f is not None]
    x = np.array([f.vector() for _, f in rows], dtype=np.float64)
    y = np.array([e.label for e, _ in rows])
    groups = np.array([e.group for e, _ in rows])
    fitted = _logistic(x, y, groups, FEATURE_NAMES, lambda p: _log_loss(y, p))
    per_example = _per_example(data, fitted.out_of_fold)
    answerable = [p for e, p in per_example if e.kind == "answerable"]
    refused = [p for e, p in per_example if e.label == 0]
    calibration = calibrate(answerable, refused)
    threshold = calibration.refusal_threshold
    kinds = sorted({e.kind for e in data})
    return {
        **fitted.parameters,
        "threshold": threshold,
        "fit": {
            "C": fitted.c,
            "cv_log_loss": {str(c): round(v, 4) for c, v in fitted.losses.items()},
            "examples": {k: sum(1 for e in data if e.kind == k) for k in kinds},
            "out_of_fold": {
                "false_refusal": calibration.false_refusal,
                "refusal_recall": calibration.refusal_recall,
                "by_kind_refused": {k: _refused(per_example, k, threshold) for k in kinds},
            },
            "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def write(parameters: dict[str, Any], path: Path) -> Path:
    """Write the parameters as JSON (the answerability model's only input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(parameters, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def _per_example(data: Sequence[Example], p: np.ndarray) -> list[tuple[Example, float]]:
    """Each example's evidence as the service computes it: the mean over its parts."""
    out, i = [], 0
    for e in data:
        parts = e.features
        if not parts or all(f is None for f in parts):
            out.append((e, 0.0))
            continue
        values = []
        for f in parts:
            if f is None:
                values.append(0.0)
            else:
                values.append(float(p[i]))
                i += 1
        out.append((e, sum(values) / len(values)))
    return out


def _refused(per_example: Sequence[tuple[Example, float]], kind: str, threshold: float) -> float:
    """The share of one kind's examples refused out of fold."""
    return _r(_mean([p < threshold for e, p in per_example if e.kind == kind]))


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _mean(values: Sequence[bool] | list[bool]) -> float:
    return sum(values) / len(values) if values else 0.0


def _r(value: float) -> float:
    return round(float(value), 6)


__all__ = [
    "Example",
    "Gold",
    "NearMiss",
    "Sentence",
    "answered",
    "dev_gold",
    "examples",
    "fit",
    "fit_selection",
    "sentences",
    "write",
]
