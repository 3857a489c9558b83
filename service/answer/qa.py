"""Question answering: rewrite, retrieve, compose — with per-stage timings."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ingest.types import Citation, Hit
from service.answer.answerability import Features
from service.answer.compose import Answer, Composer, Reading, is_list_question
from service.answer.faq import FAQ, Match
from service.answer.filters import Filter, implied_filter
from service.answer.intents import REPLIES, small_talk
from service.answer.llm import LLMComposer
from service.answer.retrieval import Mode, Query, Retriever
from service.answer.rewrite import Turn, rewrite
from service.errors import LLMError, UnknownSourceError

log = logging.getLogger(__name__)


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
    composer: str = "extractive"
    llm_fallback: str | None = None
    features: tuple[Features | None, ...] = ()  # of the evidence, one per part (for fitting)


@dataclass(frozen=True)
class Retrieved:
    """What retrieval found for a question: the prepared query, passages, FAQ match."""

    query: Query
    hits: list[Hit]
    timings: dict[str, float]
    match: Match | None = None


@dataclass(frozen=True)
class Composed:
    """The answer chosen, which composer gave it, and why an LLM answer was not used."""

    answer: Answer
    composer: str
    llm_fallback: str | None = None


@dataclass(frozen=True)
class Scope:
    """Where a question searches: how many passages, under which filter, by which mode."""

    top_k: int
    where: Filter | None
    mode: Mode


class QA:
    """Answers questions from one index."""

    def __init__(
        self,
        retriever: Retriever,
        composer: Composer,
        faq: FAQ | None = None,
        llm: LLMComposer | None = None,
    ) -> None:
        self.retriever = retriever
        self.composer = composer
        self.faq = faq
        self.llm = llm

    def check_sources(self, where: Filter | None) -> None:
        """Reject filters that name documents the index does not hold."""
        unknown = sorted(set(where.sources or ()) - set(self.retriever.sources)) if where else []
        if unknown:
            raise UnknownSourceError(f"unknown source(s) in filter: {', '.join(unknown)}")

    def search(
        self,
        query: str,
        top_k: int,
        where: Filter | None = None,
        mode: Mode = "hybrid",
    ) -> tuple[list[Hit], dict[str, float]]:
        """Retrieve passages, with embed/retrieve timings in milliseconds."""
        self.check_sources(where)
        found = self._retrieve(self.retriever.prepare(query, mode), top_k, where, mode)
        return found.hits, found.timings

    def _retrieve(
        self,
        prepared: Query,
        top_k: int,
        where: Filter | None,
        mode: Mode,
        faq_question: str | None = None,
    ) -> Retrieved:
        """Search, then match the FAQ; lexical search runs while the question is encoded.

        The retrieve stage is the time searching, not the time waiting for the encoder.
        """
        began = time.perf_counter()
        blocked = _blocked(prepared)
        hits = self.retriever.search(prepared, top_k, where, mode)
        match = self._faq_match(faq_question, prepared) if faq_question is not None else None
        searching = time.perf_counter() - began - (_blocked(prepared) - blocked)
        encoder = prepared.encoding.seconds if prepared.encoding is not None else 0.0
        timings = {"embed": round(encoder * 1000, 3), "retrieve": round(searching * 1000, 3)}
        return Retrieved(prepared, [] if match else hits, timings, match)

    def _faq_match(self, question: str, prepared: Query) -> Match | None:
        """The curated entry for a question, if one matches closely enough."""
        if self.faq is None:
            return None
        # The retrieval query embeds the question itself unless a follow-up was rewritten.
        same = prepared.vector is not None and prepared.text == question
        vector = prepared.vector if same else self.retriever.embedder.embed_query(question)
        assert vector is not None
        return self.faq.match(question, vector)

    def ask(
        self,
        question: str,
        top_k: int,
        where: Filter | None = None,
        history: Sequence[Turn] = (),
        mode: Mode = "hybrid",
    ) -> Result:
        """Answer with cited spans, or refuse: small talk first, then the FAQ, then the reports.

        `where` restricts the reports. The question is read (rewritten, listed, parted,
        analysed for the composer) while the encoder works on its vector, so the stages
        overlap: `total` is the time taken. `score` is the part of `compose` spent in the
        fitted models (sentence selection and answerability).
        """
        began = time.perf_counter()
        kind = small_talk(question)
        if kind is not None:
            zero = dict.fromkeys(("read", "embed", "retrieve", "compose", "score"), 0.0)
            return Result(
                answer=REPLIES[kind],
                refused=False,
                citations=[],
                passages=[],
                query=question,
                intent=kind,
                evidence=0.0,
                timings_ms=zero | {"total": _ms(began, time.perf_counter())},
                composer="reply",
            )
        self.check_sources(where)
        # Retrieval searches the follow-up resolved against the conversation; the
        # composer answers the follow-up (made self-contained where possible). A
        # filter asks about the reports, so the FAQ stays out of it.
        rewritten = rewrite(question, history, self.retriever.tokenizer)
        prepared = self.retriever.prepare(rewritten.query, mode)
        listed = self._list_rows(rewritten.question, where)
        # A list of table rows is the answer already; otherwise the composer reads the
        # question, and each part of a multi-part one starts its own retrieval.
        reading: Answer | Reading
        scope: Filter | None
        parts: list[Query] = []
        if listed is not None:
            reading, scope = listed
        else:
            reading, scope = self.composer.read(rewritten.question, prepared.tokens), where
            parts = [self.retriever.prepare(text, mode, tokens) for text, tokens in reading.parts()]
        read = time.perf_counter()
        faq_question = rewritten.question if scope is None or scope.empty else None
        found = self._retrieve(prepared, top_k, scope, mode, faq_question)
        retrieved = time.perf_counter()
        composed = self._compose(found, reading, parts, Scope(top_k, scope, mode))
        done = time.perf_counter()
        answer = composed.answer
        timings = (
            {"read": _ms(began, read)}
            | found.timings
            | {"compose": _ms(retrieved, done), "score": answer.score_ms, "total": _ms(began, done)}
        )
        return Result(
            answer=answer.text,
            refused=answer.refused,
            citations=answer.citations,
            passages=found.hits,
            query=rewritten.query,
            intent=answer.intent,
            evidence=answer.evidence,
            timings_ms=timings,
            composer=composed.composer,
            llm_fallback=composed.llm_fallback,
            features=answer.features,
        )

    def _compose(
        self, found: Retrieved, reading: Answer | Reading, parts: Sequence[Query], scope: Scope
    ) -> Composed:
        """The FAQ's answer, else the row list, else the extractive (or LLM) answer."""
        if found.match is not None:
            return Composed(_faq_answer(found.match), "faq")
        if isinstance(reading, Answer):  # the rows: complete; an LLM would shorten them
            return Composed(reading, "extractive")
        hits = [self._part_hits(q, found.hits, scope) for q in parts] or [found.hits]
        answer = self.composer.answer(reading, hits)
        if self.llm is None or answer.refused:
            return Composed(answer, "extractive")
        return self._generate(reading.question, found.hits, answer)

    def _part_hits(self, prepared: Query, whole: Sequence[Hit], scope: Scope) -> list[Hit]:
        """Passages for one part: its own retrieval first, then the whole question's.

        A part leaning on the rest ("对研发主体补贴最高多少") may retrieve little alone;
        the whole question's passages stay behind its own.
        """
        own = self.retriever.search(prepared, scope.top_k, scope.where, scope.mode)
        seen = {h.chunk.chunk_id for h in own}
        return own + [h for h in whole if h.chunk.chunk_id not in seen]

    def _list_rows(self, question: str, where: Filter | None) -> tuple[Answer, Filter] | None:
        """Every table row a filtered 哪些 question asks for, and the filter that found them.

        A question naming a place and a year ("2024年广东省发布了哪些…政策？") filters by
        them where the explicit filter leaves them open — but only when rows match;
        otherwise it is answered from retrieval as before.
        """
        if not is_list_question(question):
            return None
        explicit = where or Filter()
        implied = implied_filter(question, self.retriever.tokenizer.places)
        scope = explicit.or_else(implied) if implied else explicit
        if not scope.on_metadata:
            return None
        tokens = self.retriever.tokenizer.tokenize(question)
        rows = self.retriever.rows(scope)
        answer = self.composer.list_rows(question, tokens, rows, scope) if rows else None
        return (answer, scope) if answer is not None else None

    def _generate(self, question: str, hits: list[Hit], extractive: Answer) -> Composed:
        """The LLM's checked answer, or the extractive one and the reason it stands.

        Only called when the extractive composer found evidence: the refusal rule
        holds whatever the model would say.
        """
        assert self.llm is not None
        try:
            written = self.llm.compose(question, hits, [h.chunk.text for h in hits])
        except LLMError as exc:
            log.warning("LLM answer unusable, answering extractively: %s", exc)
            return Composed(extractive, "extractive", str(exc))
        if written.dropped:
            log.info("dropped %d unsupported LLM sentence(s)", len(written.dropped))
        answer = replace(extractive, text=written.text, citations=written.citations)
        return Composed(answer, "llm")


def _faq_answer(match: Match) -> Answer:
    """The curated answer verbatim, cited as its FAQ entry."""
    entry = match.entry
    citation = Citation(
        id=1,
        source=f"faq:{entry.id}",
        title=entry.question,
        start=0,
        end=len(entry.answer),
        quote=entry.answer,
    )
    return Answer(
        text=f"{entry.answer}[1]",
        refused=False,
        citations=[citation],
        evidence=round(match.similarity, 4),
        intent="faq",
    )


def _blocked(query: Query) -> float:
    """Seconds the request has spent waiting for the query's vector so far."""
    return query.encoding.waited if query.encoding is not None else 0.0


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)
