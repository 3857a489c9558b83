"""Text helpers of the chat API: token estimates, stop and length cuts, stream pieces."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length"]

# One token per Chinese character, Latin word, number or other symbol. Not any model's
# tokenizer: an estimate of the right order for Chinese text (BPE vocabularies of
# Chinese-capable models spend roughly one token per character).
_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[A-Za-z]+|\d+|[^\sA-Za-z\d]")
# Stream pieces end after clause punctuation; a citation marker right after it stays
# with its clause, so a marker is never split across chunks.
_PIECE = re.compile(r".+?(?:[，,。！？!?；;：:、\n]+|$)(?:\[\d+\])*\n?", re.DOTALL)
_UNIT = re.compile(r"\[\d+\]|.", re.DOTALL)
_MARKER = re.compile(r"\[(\d+)\]")
MAX_PIECE = 24


@dataclass(frozen=True)
class Cut:
    """An answer after `stop` and `max_tokens`; `finish_reason` as OpenAI reports it."""

    text: str
    finish_reason: FinishReason


def estimate_tokens(text: str) -> int:
    """Approximate token count (see `_TOKEN`)."""
    return len(_TOKEN.findall(text))


def cut(text: str, stop: Sequence[str], max_tokens: int | None) -> Cut:
    """Apply OpenAI's `stop` (cut before the first stop string) and `max_tokens`."""
    ends = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    if ends:
        text = text[: min(ends)]
    if max_tokens is not None:
        tokens = list(_TOKEN.finditer(text))
        if len(tokens) > max_tokens:
            return Cut(text[: tokens[max_tokens].start()], "length")
    return Cut(text, "stop")


def markers(text: str) -> set[int]:
    """Citation numbers `[n]` that occur in text."""
    return {int(n) for n in _MARKER.findall(text)}


def pieces(text: str, limit: int = MAX_PIECE) -> list[str]:
    """Split an answer into stream deltas: clauses, long ones in `limit`-character runs.

    The pieces concatenate to the text exactly.
    """
    out: list[str] = []
    for clause in _PIECE.findall(text):
        run = ""
        for unit in _UNIT.findall(clause):
            if run and len(run) + len(unit) > limit:
                out.append(run)
                run = ""
            run += unit
        if run:
            out.append(run)
    return out
