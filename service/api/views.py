"""Answering's results as the API shows them (shared by /ask and chat)."""

from __future__ import annotations

from collections.abc import Iterable

from ingest.types import Citation, page_at
from service.answer.qa import QA
from service.api.schemas.core import CitationPublic


def public_citations(qa: QA, citations: Iterable[Citation]) -> list[CitationPublic]:
    """Citations as the API shows them, with the page of a paged (PDF) document."""
    documents = qa.retriever.store.documents
    out = []
    for c in citations:
        document = documents.get(c.source)
        page = page_at(document, c.start) if document is not None else None
        out.append(
            CitationPublic(
                id=c.id,
                source=c.source,
                title=c.title,
                start=c.start,
                end=c.end,
                quote=c.quote,
                page=page,
            )
        )
    return out
