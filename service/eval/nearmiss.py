"""Near-miss questions: an answerable question changed so the reports no longer answer it.

Real users ask about a year, place, stage or organisation next to the one a report
states; the extractive composer then finds the same sentence and must still refuse.
Each transformation below swaps one such constraint of a dev question for one its
evidence (the lines of the report that hold it) does not contain:

- year: 2024年 → another year; month: 1月 → another month;
- scope: 2024年 → 2024年底 (a finer time scope);
- stage: 发布/印发/出台/提出 → 生效 (a later stage of the policy's life);
- place: a province or city → one the source report never names;
- name: a proper noun → one of `foreign_names`, names the reports never use (taken from
  public text, e.g. CMRC 2018 trial paragraphs).

The generated questions are labelled unanswerable for fitting (service.eval.fit); they
are never used to evaluate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from ingest.tokenize import Tokenizer
from service.eval.evaluation import Question

_YEAR = re.compile(r"(20\d\d)年(?![底末初])")
_MONTH = re.compile(r"(?<![\d月])(\d{1,2})月")
_STAGE = re.compile(r"发布|印发|出台|提出")


@dataclass(frozen=True)
class NearMiss:
    """A generated unanswerable question and the question it came from."""

    origin: str  # the dev question's id
    kind: str
    question: str


def near_misses(
    q: Question,
    documents: Mapping[str, str],
    tokenizer: Tokenizer,
    foreign_names: Sequence[str],
) -> list[NearMiss]:
    """Every near miss that can be made of an answerable question, one per kind."""
    if not q.answerable or q.history:
        return []
    context = _evidence_lines(q, documents)
    if not context:
        return []
    source_text = "\n".join(documents.get(s, "") for s in q.sources)
    makers: dict[str, Callable[[], str | None]] = {
        "year": lambda: _swap_year(q.question, context),
        "month": lambda: _swap_month(q.question, context),
        "scope": lambda: _finer_scope(q.question, context),
        "stage": lambda: _later_stage(q.question, context),
        "place": lambda: _swap_place(q, tokenizer, source_text),
        "name": lambda: _swap_name(q, tokenizer, source_text, foreign_names),
    }
    out = []
    for kind, make in makers.items():
        changed = make()
        if changed and changed != q.question:
            out.append(NearMiss(q.id, kind, changed))
    return out


def _evidence_lines(q: Question, documents: Mapping[str, str]) -> str:
    """The whole lines of the source reports that hold the question's evidence."""
    lines = []
    for source in q.sources:
        text = documents.get(source, "")
        for evidence in q.evidence:
            at = text.find(evidence)
            if at < 0:
                continue
            start = text.rfind("\n", 0, at) + 1
            end = text.find("\n", at + len(evidence))
            lines.append(text[start : end if end >= 0 else len(text)])
    return "\n".join(lines)


def _swap_year(question: str, context: str) -> str | None:
    match = _YEAR.search(question)
    if not match:
        return None
    year = int(match.group(1))
    for other in (year + 1, year + 2, year - 2, year + 3):
        if str(other) not in context:
            return question[: match.start(1)] + str(other) + question[match.end(1) :]
    return None


def _swap_month(question: str, context: str) -> str | None:
    match = _MONTH.search(question)
    if not match:
        return None
    month = int(match.group(1))
    for step in (1, 2, 3, 5):
        other = (month + step - 1) % 12 + 1
        if f"{other}月" not in context:
            return question[: match.start(1)] + str(other) + question[match.end(1) :]
    return None


def _finer_scope(question: str, context: str) -> str | None:
    match = _YEAR.search(question)
    # 2024年1月 is finer already; 2024年 alone becomes 2024年底.
    if not match or question[match.end() : match.end() + 1].isdigit() or "年底" in context:
        return None
    return question[: match.end()] + "底" + question[match.end() :]


def _later_stage(question: str, context: str) -> str | None:
    match = _STAGE.search(question)
    if not match or "生效" in context:
        return None
    return question[: match.start()] + "生效" + question[match.end() :]


def _swap_place(q: Question, tokenizer: Tokenizer, source_text: str) -> str | None:
    named = tokenizer.places_in(q.question)
    if not named:
        return None
    absent = [p for p in tokenizer.places if p not in source_text]
    if not absent:
        return None
    return q.question.replace(named[0], _pick(absent, q.id))


def _swap_name(
    q: Question, tokenizer: Tokenizer, source_text: str, foreign_names: Sequence[str]
) -> str | None:
    places = set(tokenizer.places_in(q.question))
    names = [
        n
        for n in tokenizer.names(q.question)
        if n in q.question and n not in places and n in source_text
    ]
    absent = [n for n in foreign_names if n not in source_text]
    if not names or not absent:
        return None
    return q.question.replace(names[0], _pick(absent, q.id))


def _pick(options: Sequence[str], key: str) -> str:
    """A deterministic choice: the same question always gets the same replacement."""
    digest = int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16)
    return options[digest % len(options)]


def names_in(texts: Iterator[str] | Sequence[str], tokenizer: Tokenizer, corpus: str) -> list[str]:
    """Proper nouns of public texts that the corpus never uses, most frequent first."""
    counts: dict[str, int] = {}
    for text in texts:
        for name in tokenizer.names(text):
            if len(name) >= 2 and name not in corpus and not name.isascii():
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda n: (-counts[n], n))
