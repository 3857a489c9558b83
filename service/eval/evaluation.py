"""Question-set evaluation: retrieval and answer metrics over a JSONL set."""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.text import normalize
from service.answer.qa import QA, Result
from service.answer.retrieval import Mode
from service.errors import CalibrationError, QuestionSetError
from service.eval.calibration import Calibration, calibrate
from service.eval.cmrc_metrics import strip_markers

log = logging.getLogger(__name__)

TYPES = ("fact", "table", "number", "multi", "unanswerable")
KS = (1, 3, 5, 10)
# Question types answered by one statement (a table or multi-part answer cites several).
_ONE_FACT = ("fact", "number")


@dataclass(frozen=True)
class Question:
    """One line of a question set (see ARCHITECTURE.md for the format)."""

    id: str
    question: str
    type: str
    sources: tuple[str, ...]
    evidence: tuple[str, ...]
    answer: str
    keywords: tuple[str, ...]
    history: tuple[tuple[str, str], ...] = ()

    @property
    def answerable(self) -> bool:
        """False for questions the knowledge base cannot answer."""
        return self.type != "unanswerable"


@dataclass
class Outcome:
    """What the system did with one question."""

    question: Question
    ranks: list[int]  # 1-based ranks of relevant passages within the retrieved list
    found: int  # evidence strings found in the top-10
    refused: bool
    keywords_ok: bool
    citation_ok: bool
    evidence: float
    seconds: float
    answer: str = ""
    retrieved: list[str] = field(default_factory=list)  # chunk ids, best first
    texts: list[str] = field(default_factory=list)  # their texts
    quotes: list[str] = field(default_factory=list)  # the citations' quotes
    relevant: int = 0  # relevant passages that exist (the nDCG ideal); 0 = unknown

    @property
    def failures(self) -> list[str]:
        """Why this question counts as failed (empty when it did not fail)."""
        if not self.question.answerable:
            return [] if self.refused else ["not_refused"]
        reasons = []
        if not self.ranks or self.ranks[0] > 5:
            reasons.append("missed@5")
        if self.refused:
            reasons.append("false_refusal")
        else:
            if not self.keywords_ok:
                reasons.append("keywords")
            if not self.citation_ok:
                reasons.append("citation")
        return reasons


def read_questions(path: Path) -> list[Question]:
    """Parse a question-set JSONL file, with line numbers in errors."""
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            source = row.get("source")
            sources = tuple(source) if isinstance(source, list) else ((source,) if source else ())
            questions.append(
                Question(
                    id=str(row["id"]),
                    question=str(row["question"]),
                    type=str(row["type"]),
                    sources=sources,
                    evidence=tuple(row.get("evidence") or ()),
                    answer=str(row.get("answer") or ""),
                    keywords=tuple(row.get("keywords") or ()),
                    history=tuple((t["role"], t["content"]) for t in row.get("history") or ()),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise QuestionSetError(f"{path}:{n}: {exc}") from exc
    return questions


def judge(q: Question, result: Result, seconds: float, relevant: int = 0) -> Outcome:
    """Score one answer against the question's gold evidence and keywords.

    `relevant` is how many passages of the whole index hold an evidence string, when
    known; it is the ideal that nDCG compares against.
    """
    texts = [h.chunk.text for h in result.passages]
    ranks = [i for i, text in enumerate(texts, start=1) if _holds_evidence(q, text)]
    found = sum(1 for e in q.evidence if any(e in t for t in texts[:10]))
    answer = normalize(result.answer)
    keywords_ok = all(normalize(k) in answer for k in q.keywords)
    quotes = [c.quote for c in result.citations]
    citation_ok = any(_on_evidence(q, quote) for quote in quotes if quote)
    return Outcome(
        question=q,
        ranks=ranks,
        found=found,
        refused=result.refused,
        keywords_ok=keywords_ok,
        citation_ok=citation_ok,
        evidence=result.evidence,
        seconds=seconds,
        answer=result.answer,
        retrieved=[h.chunk.chunk_id for h in result.passages],
        texts=texts,
        quotes=quotes,
        relevant=relevant,
    )


def relevant_counts(questions: Iterable[Question], texts: Sequence[str]) -> dict[str, int]:
    """For each question, how many of the index's passage texts hold an evidence string."""
    return {q.id: sum(1 for t in texts if _holds_evidence(q, t)) for q in questions}


def _holds_evidence(q: Question, text: str) -> bool:
    return any(e in text for e in q.evidence)


def _on_evidence(q: Question, quote: str) -> bool:
    """True when a cited quote holds a gold evidence string or lies within one."""
    return any(e in quote or quote in e for e in q.evidence)


def _length_ratio(o: Outcome) -> float:
    """Characters of the answer (citation marks left out) per character of the gold's."""
    return len(normalize(strip_markers(o.answer))) / max(1, len(normalize(o.question.answer)))


def _unrelated_extra(o: Outcome) -> bool:
    """True when an answer cites more than one span and some span holds no gold evidence
    and no gold keyword: a loosely related sentence appended to the answer."""
    keywords = [normalize(k) for k in o.question.keywords]

    def related(quote: str) -> bool:
        plain = normalize(quote)
        return _on_evidence(o.question, quote) or any(k in plain for k in keywords)

    return len(o.quotes) > 1 and not all(related(q) for q in o.quotes)


Asker = Callable[[Question], Result]


def run_with(
    ask: Asker,
    questions: Sequence[Question],
    on_progress: Callable[[], None] | None = None,
    relevant: Mapping[str, int] | None = None,
) -> list[Outcome]:
    """Ask every question through `ask` (in-process or over HTTP) and judge the answers."""
    outcomes = []
    for q in questions:
        began = time.perf_counter()
        result = ask(q)
        seconds = time.perf_counter() - began
        outcomes.append(judge(q, result, seconds, (relevant or {}).get(q.id, 0)))
        if on_progress:
            on_progress()
    return outcomes


def run(
    qa: QA,
    questions: Sequence[Question],
    mode: Mode = "hybrid",
    on_progress: Callable[[], None] | None = None,
) -> list[Outcome]:
    """Ask every question in-process (top 10 passages) and judge the answers."""
    from service.answer.rewrite import Turn

    def ask(q: Question) -> Result:
        history = [Turn(role, content) for role, content in q.history]
        return qa.ask(q.question, 10, history=history, mode=mode)

    relevant = relevant_counts(questions, [c.text for c in qa.retriever.store.chunks()])
    return run_with(ask, questions, on_progress, relevant)


def metrics(outcomes: Iterable[Outcome]) -> dict[str, float]:
    """Retrieval, answer, refusal and latency figures for a set of outcomes."""
    done = list(outcomes)
    answerable = [o for o in done if o.question.answerable]
    unanswerable = [o for o in done if not o.question.answerable]
    out: dict[str, float] = {"questions": len(done)}
    if answerable:
        for k in KS:
            out[f"hit@{k}"] = _mean(bool(o.ranks) and o.ranks[0] <= k for o in answerable)
        out["mrr@10"] = _mean(
            1 / o.ranks[0] if o.ranks and o.ranks[0] <= 10 else 0.0 for o in answerable
        )
        out["ndcg@10"] = _mean(_ndcg(o.ranks, _ideal(o)) for o in answerable)
        out["evidence_recall@10"] = _mean(
            o.found / len(o.question.evidence) for o in answerable if o.question.evidence
        )
        out["keyword_accuracy"] = _mean(o.keywords_ok and not o.refused for o in answerable)
        cited = [o for o in answerable if not o.refused]
        out["citation_correct"] = _mean(o.citation_ok for o in cited) if cited else 0.0
        out["false_refusal"] = _mean(o.refused for o in answerable)
        # Complete and concise: the answer's length over the gold answer's, and how often
        # a one-fact answer carries a cited sentence that holds none of the gold evidence.
        ratios = [_length_ratio(o) for o in cited if o.question.answer]
        if ratios:
            out["answer_length_ratio"] = round(statistics.median(ratios), 4)
        facts = [o for o in cited if o.question.type in _ONE_FACT]
        if facts:
            out["extra_sentence_rate"] = _mean(_unrelated_extra(o) for o in facts)
    if unanswerable:
        out["refusal_recall"] = _mean(o.refused for o in unanswerable)
        refused = [o for o in done if o.refused]
        out["refusal_precision"] = (
            _mean(not o.question.answerable for o in refused) if refused else 1.0
        )
    times = [o.seconds * 1000 for o in done]
    for p in (50, 95, 99):
        out[f"latency_p{p}_ms"] = round(percentile(times, p), 3) if times else 0.0
    return out


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]


def by_type(outcomes: Sequence[Outcome]) -> dict[str, dict[str, float]]:
    """Metrics for each question type present."""
    return {
        t: metrics(o for o in outcomes if o.question.type == t)
        for t in TYPES
        if any(o.question.type == t for o in outcomes)
    }


def _mean(values: Iterable[float | bool]) -> float:
    items = [float(v) for v in values]
    return round(sum(items) / len(items), 4) if items else 0.0


def _ideal(o: Outcome) -> int:
    """Relevant passages in the index; over HTTP (unknown) at least those retrieved."""
    return o.relevant or max(len(o.question.evidence), len(o.ranks))


def _ndcg(ranks: Sequence[int], n_relevant: int) -> float:
    """Binary-relevance nDCG@10: relevant passages are those holding an evidence string.

    The ideal ranking puts all `n_relevant` relevant passages (at most 10) first, as in
    sentence-transformers' InformationRetrievalEvaluator.
    """
    dcg = sum(1 / math.log2(r + 1) for r in ranks if r <= 10)
    ideal = sum(1 / math.log2(r + 1) for r in range(1, min(max(n_relevant, 1), 10) + 1))
    return min(dcg / ideal, 1.0) if ideal else 0.0


def calibration(outcomes: Sequence[Outcome]) -> Calibration | None:
    """The refusal threshold these outcomes' evidence scores call for (None if impossible)."""
    answerable = [o.evidence for o in outcomes if o.question.answerable]
    unanswerable = [o.evidence for o in outcomes if not o.question.answerable]
    try:
        return calibrate(answerable, unanswerable)
    except CalibrationError as exc:
        log.info("no calibration: %s", exc.message)
        return None


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Overall and per-type metrics, and the refusal calibration they call for."""
    chosen = calibration(outcomes)
    return {
        "overall": metrics(outcomes),
        "by_type": by_type(outcomes),
        "calibration": chosen.as_dict() if chosen else None,
    }
