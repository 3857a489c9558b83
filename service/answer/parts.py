"""Multi-part questions: the asks a question joins, each to be answered on its own.

"文心一言是什么时候备案的？2024年5月月活多少？" holds two questions; "杭州和成都对…分别奖励多少"
one per place; "通用大模型和行业大模型的厂商各有多少家" one per thing joined by 和 before
各/分别; "X是哪年发布的，由多少个部门发布" two clauses that each ask something.
Each part keeps the words it needs to be retrieved and judged alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.tokenize import Tokenizer

_QUESTION_BREAK = re.compile(r"[？?；;]")
_CLAUSE_BREAK = re.compile(r"[，,、]")
_EACH = re.compile(r"分别|各自|各有|各是|各为|各")
_AND = frozenset({"和", "与", "及", "以及"})
_NOT_WORD = re.compile(r"[^\w]")
# Words that make a clause a question of its own.
_ASKS = re.compile(r"什么|多少|哪|几|何时|如何|怎样|怎么|是否|多大|多久|多高|多长")
_MIN_PART = 4


@dataclass(frozen=True)
class Part:
    """One ask of a question: its text, and the anchor it is about (分别 questions)."""

    text: str
    anchor: str | None = None


def split_parts(question: str, tokenizer: Tokenizer) -> list[Part]:
    """The parts of a compound question; [] when it asks one thing."""
    pieces = [p.strip() for p in _QUESTION_BREAK.split(question)]
    pieces = [p for p in pieces if len(p) >= _MIN_PART]
    if len(pieces) > 1:
        return [Part(p) for p in pieces]
    clauses = [c.strip() for c in _CLAUSE_BREAK.split(question.rstrip("？?"))]
    asking = [c for c in clauses if len(c) >= _MIN_PART and _ASKS.search(c)]
    if len(asking) > 1 and len(asking) == len([c for c in clauses if len(c) >= _MIN_PART]):
        # The first clause names the subject; later ones ("由多少个部门发布") lean on it.
        subject = _subject(asking[0])
        return [Part(asking[0])] + [Part(f"{subject}{c}") for c in asking[1:]]
    # 分别 goes over the places and names asked about; a year is shared by every part.
    anchors = [a for a in tokenizer.anchors(question) if not a.isdigit()]
    if len(anchors) > 1 and _EACH.search(question):
        ordered = sorted(anchors, key=question.find)
        return [Part(_only(question, a, anchors), a) for a in ordered]
    return _conjoined(question, tokenizer)


def _conjoined(question: str, tokenizer: Tokenizer) -> list[Part]:
    """One part per side of an "A和B … 分别/各" question, the other side left out.

    The sides are the words either side of 和 (与, 及, 以及), widened while both end in
    the same word: 通用大模型 和 行业大模型, not 大模型 和 行业.
    """
    each = _EACH.search(question)
    if not each:
        return []
    words = tokenizer.words(question)
    starts = [0]
    for word in words:
        starts.append(starts[-1] + len(word))
    for i, word in enumerate(words):
        if word not in _AND or not 0 < i < len(words) - 1 or starts[i] > each.start():
            continue
        width = next(
            (k for k in (3, 2) if k <= i and i + k < len(words) and words[i - 1] == words[i + k]),
            1,
        )
        left = "".join(words[i - width : i])
        right = "".join(words[i + 1 : i + 1 + width])
        if not (_conjunct(left) and _conjunct(right)):
            continue
        before, after = question[: starts[i - width]], question[starts[i + 1 + width] :]
        return [Part(f"{before}{left}{after}"), Part(f"{before}{right}{after}")]
    return []


def _conjunct(side: str) -> bool:
    """A side of 和 worth a part: two characters or more, words only, no question word."""
    return len(side) >= 2 and not _NOT_WORD.search(side) and not _ASKS.search(side)


def _subject(clause: str) -> str:
    """What a clause is about: the text before its question word (文心一言 in 文心一言是…)."""
    match = _ASKS.search(clause)
    head = clause[: match.start()] if match else clause
    return re.sub(r"(是|在|由|于|的)$", "", head)


def _only(question: str, keep: str, anchors: list[str]) -> str:
    """The question about one anchor: the others, and the joining 和/与/及, removed."""
    text = question
    for other in anchors:
        if other != keep:
            text = re.sub(rf"[和与及、]?{re.escape(other)}[和与及、]?", "", text, count=1)
    return text
