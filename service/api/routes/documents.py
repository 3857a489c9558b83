"""The knowledge base's documents: list, read, and add, replace or remove live.

Every route takes `?collection=NAME` (default: the default collection); an upload to
a collection that does not exist yet creates it.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import JSONResponse

from ingest.names import source_name
from ingest.tables import chunk_counts, chunks_of
from service.api.deps import StateDep
from service.api.jobs import Job
from service.api.middleware.writes import admission_of
from service.api.schemas.core import (
    ChunkPublic,
    CollectionList,
    CollectionSummary,
    DocumentDetail,
    DocumentList,
    DocumentSummary,
    DocumentUpdate,
    FlaggedSentence,
    JobPublic,
)
from service.api.schemas.errors import documented
from service.api.updates import UpdateRequest, apply_update
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
Prefer = Annotated[
    str | None,
    Header(
        description="`respond-async` (RFC 7240): answer 202 with the queued job at once "
        "(see GET /jobs/{id}) instead of waiting for the update to finish."
    ),
]
ACCEPTED: dict[str, Any] = {
    "model": JobPublic,
    "description": "Queued (with `Prefer: respond-async`); `Location` is the job.",
}


@router.get("/collections", response_model=CollectionList, responses=documented(503))
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


@router.get("/documents", response_model=DocumentList, responses=documented(400, 404, 422, 503))
def list_documents(state: StateDep, collection: Collection = None) -> DocumentList:
    """Every document in the knowledge base, with its title and chunk count."""
    index = state.pipeline(collection).retriever.index
    counts = chunk_counts(index.chunks)
    return DocumentList(
        documents=[
            DocumentSummary(source=d.source, title=d.title, chars=len(d.text), chunks=counts[s])
            for s, d in sorted(index.documents.items())
        ]
    )


@router.get(
    "/documents/{source}",
    response_model=DocumentDetail,
    responses=documented(400, 404, 422, 503),
)
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
            for c in chunks_of(index.chunks, source)
        ],
        flagged=[
            FlaggedSentence(
                start=f.start, end=f.end, reason=f.reason, text=doc.text[f.start : f.end]
            )
            for f in doc.flags
        ],
    )


@router.post(
    "/documents",
    response_model=DocumentUpdate,
    status_code=201,
    responses={202: ACCEPTED, **documented(400, 403, 404, 409, 413, 415, 422, 503)},
)
async def add_document(
    request: Request,
    file: FileField,
    state: StateDep,
    stated: Stated,
    collection: Collection = None,
    prefer: Prefer = None,
) -> DocumentUpdate | JSONResponse:
    """Add a document (multipart field `file`); its `source` is its file name.

    Only this document is chunked and embedded; it answers questions once this returns
    (or, with `Prefer: respond-async`, once its job is done).
    """
    source = source_name(file.filename or "")
    data = await file.read()
    update = UpdateRequest(collection, "add", source, data, stated)
    return await _queue(request, state, update, prefer)


@router.put(
    "/documents/{source}",
    response_model=DocumentUpdate,
    responses={202: ACCEPTED, **documented(400, 403, 404, 409, 413, 415, 422, 503)},
)
async def replace_document(
    request: Request,
    source: str,
    file: FileField,
    state: StateDep,
    stated: Stated,
    collection: Collection = None,
    prefer: Prefer = None,
) -> DocumentUpdate | JSONResponse:
    """Replace a document's content (and metadata) under its existing name."""
    source = source_name(source)
    data = await file.read()
    update = UpdateRequest(collection, "replace", source, data, stated)
    return await _queue(request, state, update, prefer)


@router.delete(
    "/documents/{source}",
    response_model=DocumentUpdate,
    responses={202: ACCEPTED, **documented(400, 403, 404, 409, 415, 422, 503)},
)
async def remove_document(
    request: Request,
    source: str,
    state: StateDep,
    collection: Collection = None,
    prefer: Prefer = None,
) -> DocumentUpdate | JSONResponse:
    """Remove a document; it never appears in results again."""
    update = UpdateRequest(collection, "remove", source_name(source))
    return await _queue(request, state, update, prefer)


async def _queue(
    request: Request, state: StateDep, update: UpdateRequest, prefer: str | None
) -> DocumentUpdate | JSONResponse:
    """Queue the update; wait for it, or answer 202 with its job when asked to."""
    job = Job(update.action, update.source, update.collection)
    work = partial(apply_update, state, update, job.stop)
    queued = state.jobs.submit(admission_of(request.scope), job, work)
    if not _respond_async(prefer):
        done = asyncio.wrap_future(queued)
        gone: asyncio.Future[Any] = asyncio.ensure_future(_disconnect(request))
        await asyncio.wait([done, gone], return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            job.stop.set()  # the client has gone: stop the work before it is committed
        gone.cancel()
        return await done
    location = str(request.url_for("get_job", job_id=job.id))
    return JSONResponse(
        job.public().model_dump(),
        status_code=202,
        headers={"Location": location, "Preference-Applied": "respond-async"},
    )


async def _disconnect(request: Request) -> None:
    """Return once the client has closed the connection (the body is read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _respond_async(prefer: str | None) -> bool:
    """Whether a `Prefer` header (RFC 7240) asks for `respond-async`."""
    tokens = (p.split(";")[0].split("=")[0].strip().lower() for p in (prefer or "").split(","))
    return "respond-async" in tokens
