"""The knowledge base's documents: list, read, and add, replace or remove live.

Every route takes `?collection=NAME` (default: the default collection); an upload to
a collection that does not exist yet creates it.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile

from ingest.loaders import load_bytes, with_stated
from ingest.types import Document
from ingest.update import Action, source_name, update
from service.api.deps import StateDep
from service.api.schemas.core import (
    ChunkPublic,
    CollectionList,
    CollectionSummary,
    DocumentDetail,
    DocumentList,
    DocumentSummary,
    DocumentUpdate,
)
from service.config import DEFAULT_COLLECTION
from service.errors import NotFoundError

router = APIRouter(tags=["documents"])

Collection = Annotated[
    str | None, Query(max_length=40, description="Collection name (default: the default one).")
]
# Metadata an uploader may state; it overrides what is extracted from the text.
Meta = Annotated[str | None, Form(max_length=200)]


def _stated(
    title: Meta = None, date: Meta = None, department: Meta = None, region: Meta = None
) -> dict[str, str | None]:
    """The metadata form fields (see `with_stated`)."""
    return {"title": title, "date": date, "department": department, "region": region}


Stated = Annotated[dict[str, str | None], Depends(_stated)]
FileField = Annotated[
    UploadFile, File(description="The document: PDF, DOCX, HTML, Markdown or TXT.")
]


@router.get("/collections", response_model=CollectionList)
def list_collections(state: StateDep) -> CollectionList:
    """Every collection served, with its document and chunk counts."""
    served = {DEFAULT_COLLECTION: state.pipeline(), **state.collections}
    return CollectionList(
        collections=[
            CollectionSummary(
                name=name,
                documents=len(qa.retriever.index.documents),
                chunks=len(qa.retriever.index.chunks),
            )
            for name, qa in served.items()
        ]
    )


@router.get("/documents", response_model=DocumentList)
def list_documents(state: StateDep, collection: Collection = None) -> DocumentList:
    """Every document in the knowledge base, with its title and chunk count."""
    index = state.pipeline(collection).retriever.index
    counts = Counter(chunk.source for chunk in index.chunks)
    return DocumentList(
        documents=[
            DocumentSummary(source=d.source, title=d.title, chars=len(d.text), chunks=counts[s])
            for s, d in sorted(index.documents.items())
        ]
    )


@router.get("/documents/{source}", response_model=DocumentDetail)
def get_document(source: str, state: StateDep, collection: Collection = None) -> DocumentDetail:
    """One document's text (what citation offsets index into) and its chunks."""
    index = state.pipeline(collection).retriever.index
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


@router.post("/documents", response_model=DocumentUpdate, status_code=201)
def add_document(
    file: FileField,
    state: StateDep,
    stated: Stated,
    collection: Collection = None,
) -> DocumentUpdate:
    """Add a document (multipart field `file`); its `source` is its file name.

    Only this document is chunked and embedded; it answers questions once this returns.
    """
    source = source_name(file.filename or "")
    return _apply(state, collection, "add", source, _read(source, file, stated))


@router.put("/documents/{source}", response_model=DocumentUpdate)
def replace_document(
    source: str,
    file: FileField,
    state: StateDep,
    stated: Stated,
    collection: Collection = None,
) -> DocumentUpdate:
    """Replace a document's content (and metadata) under its existing name."""
    source = source_name(source)
    state.pipeline(collection)  # the collection must exist
    return _apply(state, collection, "replace", source, _read(source, file, stated))


@router.delete("/documents/{source}", response_model=DocumentUpdate)
def remove_document(source: str, state: StateDep, collection: Collection = None) -> DocumentUpdate:
    """Remove a document; it never appears in results again."""
    state.pipeline(collection)  # the collection must exist
    return _apply(state, collection, "remove", source_name(source), None)


def _read(source: str, file: UploadFile, stated: dict[str, str | None]) -> tuple[Document, bytes]:
    data = file.file.read()
    return with_stated(load_bytes(source, data), stated), data


def _apply(
    state: StateDep,
    collection: str | None,
    action: Action,
    source: str,
    upload: tuple[Document, bytes] | None,
) -> DocumentUpdate:
    settings = state.settings.collection(collection)
    loaded = state.pipeline().retriever  # one model and tokeniser serve every collection
    document, data = upload if upload else (None, None)
    result = update(
        settings.corpus_dir,
        settings.index_dir,
        settings.embedding_model,
        loaded.embedder,
        action,
        source,
        document,
        data,
        tokenizer=loaded.tokenizer,
    )
    state.install(result.index, collection)
    chunks = sum(1 for c in result.index.chunks if c.source == source)
    return DocumentUpdate(
        action=action,
        source=source,
        title=document.title if document else None,
        chunks=chunks,
        embedded=result.embedded,
        documents=len(result.index.documents),
        seconds=round(result.seconds, 3),
    )
