"""POST /ask and POST /search."""

from __future__ import annotations

from fastapi import APIRouter

from ingest.types import Hit
from service.answer.filters import Filter
from service.answer.rewrite import Turn
from service.api.deps import StateDep
from service.api.schemas.core import (
    AskDebug,
    AskRequest,
    AskResponse,
    Filters,
    PassagePublic,
    Ranks,
    SearchRequest,
    SearchResponse,
)
from service.api.schemas.errors import documented
from service.api.views import ModelResponse, public_citations

router = APIRouter(tags=["questions"])


@router.post("/ask", response_model=AskResponse, responses=documented(400, 404, 413, 422, 503))
def ask(body: AskRequest, state: StateDep) -> ModelResponse:
    """Answer a question with citations to exact spans, or refuse when unsupported."""
    qa = state.pipeline(body.collection)
    top_k = body.top_k or state.settings.top_k
    history = [Turn(m.role, m.content) for m in body.history]
    result = qa.ask(body.question, top_k, _filter(body.filters), history)
    state.metrics.answers.labels("refused" if result.refused else "answered").inc()
    debug = None
    if body.debug:
        threshold = qa.composer.threshold
        debug = AskDebug(
            query=result.query, intent=result.intent, evidence=result.evidence, threshold=threshold
        )
    response = AskResponse(
        answer=result.answer,
        refused=result.refused,
        citations=public_citations(qa, result.citations),
        passages=[_passage(h, body.debug) for h in result.passages],
        timings_ms=result.timings_ms,
        intent=result.intent,
        composer=result.composer,
        llm_fallback=result.llm_fallback,
        debug=debug,
    )
    return ModelResponse(response)


@router.post(
    "/search", response_model=SearchResponse, responses=documented(400, 404, 413, 422, 503)
)
def search(body: SearchRequest, state: StateDep) -> ModelResponse:
    """Retrieve passages (hybrid by default) without composing an answer."""
    qa = state.pipeline(body.collection)
    hits, timings = qa.search(body.query, body.top_k, _filter(body.filters), body.retriever)
    passages = [_passage(h, body.debug) for h in hits]
    return ModelResponse(SearchResponse(passages=passages, timings_ms=timings))


def _filter(filters: Filters | None) -> Filter | None:
    if filters is None:
        return None
    return Filter(
        sources=tuple(filters.source) if filters.source is not None else None,
        department=filters.department,
        region=filters.region,
        date_from=filters.date_from,
        date_to=filters.date_to,
    )


def _passage(hit: Hit, debug: bool) -> PassagePublic:
    chunk = hit.chunk
    ranks = None
    if debug:
        ranks = Ranks(
            dense_rank=hit.dense_rank,
            bm25_rank=hit.bm25_rank,
            dense_score=hit.dense_score,
            bm25_score=hit.bm25_score,
        )
    return PassagePublic(
        chunk_id=chunk.chunk_id,
        source=chunk.source,
        title=chunk.title,
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
        score=hit.score,
        ranks=ranks,
    )
