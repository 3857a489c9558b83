"""GET /documents and GET /documents/{source}."""

from __future__ import annotations

from collections import Counter

from fastapi import APIRouter

from service.deps import QADep
from service.errors import NotFoundError
from service.schemas import ChunkPublic, DocumentDetail, DocumentList, DocumentSummary

router = APIRouter(tags=["documents"])


@router.get("/documents", response_model=DocumentList)
def list_documents(qa: QADep) -> DocumentList:
    """Every document in the knowledge base, with its title and chunk count."""
    index = qa.retriever.index
    counts = Counter(chunk.source for chunk in index.chunks)
    return DocumentList(
        documents=[
            DocumentSummary(source=d.source, title=d.title, chars=len(d.text), chunks=counts[s])
            for s, d in sorted(index.documents.items())
        ]
    )


@router.get("/documents/{source}", response_model=DocumentDetail)
def get_document(source: str, qa: QADep) -> DocumentDetail:
    """One document's text (what citation offsets index into) and its chunks."""
    index = qa.retriever.index
    doc = index.documents.get(source)
    if doc is None:
        raise NotFoundError(f"no document named {source!r}; see GET /documents")
    return DocumentDetail(
        source=doc.source,
        title=doc.title,
        text=doc.text,
        metadata=dict(doc.metadata),
        chunks=[
            ChunkPublic(
                chunk_id=c.chunk_id,
                start=c.start,
                end=c.end,
                kind=c.kind,
                context=c.context,
                metadata=dict(c.metadata),
            )
            for c in index.chunks
            if c.source == source
        ],
    )
