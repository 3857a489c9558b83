"""Question answering: rewrite, retrieve, compose — with per-stage timings."""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from ingest.errors import ZhiceError
from ingest.types import Citation, Hit
from service.compose import Composer
from service.intents import REPLIES, small_talk
from service.retrieval import Mode, Query, Retriever
from service.rewrite import Turn, rewrite


class UnknownSourceError(ZhiceError):
    """A filter names a document that is not in the index."""

    status = 400
    code = "unknown_source"


@dataclass(frozen=True)
class Result:
    """Everything /ask returns, before serialisation."""

    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Hit]
    query: str
    intent: str
    evidence: float
    timings_ms: dict[str, float] = field(default_factory=dict)


class QA:
    """Answers questions from one index."""

    def __init__(self, retriever: Retriever, composer: Composer) -> None:
        self.retriever = retriever
        self.composer = composer

    def check_sources(self, sources: Collection[str] | None) -> None:
        """Reject filters that name documents the index does not hold."""
        unknown = sorted(set(sources or ()) - set(self.retriever.sources))
        if unknown:
            raise UnknownSourceError(f"unknown source(s) in filter: {', '.join(unknown)}")

    def search(
        self,
        query: str,
        top_k: int,
        sources: Collection[str] | None = None,
        mode: Mode = "hybrid",
    ) -> tuple[list[Hit], dict[str, float]]:
        """Retrieve passages, with embed/retrieve timings in milliseconds."""
        _, hits, timings = self._retrieve(query, top_k, sources, mode)
        return hits, timings

    def _retrieve(
        self, query: str, top_k: int, sources: Collection[str] | None, mode: Mode
    ) -> tuple[Query, list[Hit], dict[str, float]]:
        self.check_sources(sources)
        began = time.perf_counter()
        prepared = self.retriever.prepare(query, mode)
        embedded = time.perf_counter()
        hits = self.retriever.search(prepared, top_k, sources, mode)
        done = time.perf_counter()
        return prepared, hits, {"embed": _ms(began, embedded), "retrieve": _ms(embedded, done)}

    def ask(
        self,
        question: str,
        top_k: int,
        sources: Collection[str] | None = None,
        history: Sequence[Turn] = (),
        mode: Mode = "hybrid",
    ) -> Result:
        """Answer a question with cited spans, or refuse; small talk gets a short reply."""
        began = time.perf_counter()
        kind = small_talk(question)
        if kind is not None:
            total = {"embed": 0.0, "retrieve": 0.0, "compose": 0.0, "total": _ms(began, began)}
            return Result(REPLIES[kind], False, [], [], question, kind, 0.0, total)
        # Retrieval searches the follow-up resolved against the conversation; the
        # composer answers the follow-up (made self-contained where possible).
        rewritten = rewrite(question, history, self.retriever.tokenizer)
        query = rewritten.query
        prepared, hits, timings = self._retrieve(query, top_k, sources, mode)
        retrieved = time.perf_counter()
        answer = self.composer.compose(rewritten.question, prepared.tokens, hits)
        done = time.perf_counter()
        timings |= {"compose": _ms(retrieved, done), "total": _ms(began, done)}
        return Result(
            answer=answer.text,
            refused=answer.refused,
            citations=answer.citations,
            passages=hits,
            query=query,
            intent=answer.intent,
            evidence=answer.evidence,
            timings_ms=timings,
        )


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)
