"""Pydantic models of the HTTP contract (the only place pydantic meets the API)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ingest.metadata import normalize_date
from ingest.names import normalize_name
from service.answer.filters import period
from service.api.schemas.errors import ErrorDetail

MAX_QUESTION_CHARS = 2000


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


# A question or query: 1–2,000 characters, not only white space, trimmed.
Text = Annotated[
    str, Field(min_length=1, max_length=MAX_QUESTION_CHARS), AfterValidator(_not_blank)
]


def whole_number(value: object) -> object:
    """20.0 → 20: JSON has one number type, and many clients write whole numbers as floats."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer, given as such or as a float with no fractional part (not as a string).
Integer = Annotated[int, BeforeValidator(whole_number)]


# Bounds sit on `int`, before the validator: on the wrapped type pydantic writes them
# into the OpenAPI schema as "ge"/"le", words JSON Schema does not know.
Positive = Annotated[int, Field(ge=1), BeforeValidator(whole_number)]


def _iso_date(value: str) -> str:
    if normalize_date(value) != value:
        raise ValueError("must be a date as YYYY, YYYY-MM or YYYY-MM-DD")
    return value


# A metadata value to match (a department or a region): 1–100 characters, trimmed.
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_not_blank)]
IsoDate = Annotated[
    str,
    Field(
        max_length=10,
        pattern=r"^(19|20)\d{2}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$",
        examples=["2024", "2024-05", "2024-05-31"],
    ),
    AfterValidator(_iso_date),
]
# A collection name: the schema states the pattern; the service checks it (400
# `invalid_collection`, as for the query parameter and the chat header).
COLLECTION_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
CollectionName = Annotated[
    str, Field(max_length=40, json_schema_extra={"pattern": COLLECTION_PATTERN})
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Filters(_Strict):
    """Restrict retrieval and answers: every given criterion must hold.

    A chunk is judged by its own metadata (a table row's fields) first and its
    document's second; a chunk without a value for a filtered field is left out.
    """

    source: list[Annotated[str, AfterValidator(normalize_name)]] | None = Field(
        None, min_length=1, max_length=100, description="Document names (normalised to NFC)."
    )
    department: Name | None = Field(None, description="Issuing department, matched as a substring.")
    region: Name | None = Field(None, description="Province or city; 广东 matches 广东省.")
    date_from: IsoDate | None = Field(None, description="Earliest date, inclusive.")
    date_to: IsoDate | None = Field(
        None, description="Latest date, inclusive (2024 = to 2024-12-31)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> Filters:
        if self.date_from and self.date_to and period(self.date_from)[0] > period(self.date_to)[1]:
            raise ValueError("date_from is after date_to")
        return self


class Message(_Strict):
    """One turn of an earlier conversation."""

    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=MAX_QUESTION_CHARS * 4)


class AskRequest(_Strict):
    """A question, optionally with filters and the conversation so far."""

    question: Text
    top_k: Annotated[int, Field(ge=1, le=50), BeforeValidator(whole_number)] | None = Field(
        None, description="Passages to retrieve (1–50)."
    )
    filters: Filters | None = None
    collection: CollectionName | None = Field(
        None, description="Which knowledge base (default: `default`)."
    )
    history: list[Message] = Field(default_factory=list, max_length=50)
    debug: bool = Field(False, description="Include retrieval ranks and the rewritten query.")


class SearchRequest(_Strict):
    """A retrieval-only query."""

    query: Text
    top_k: Integer = Field(10, ge=1, le=100)
    filters: Filters | None = None
    collection: CollectionName | None = Field(
        None, description="Which knowledge base (default: `default`)."
    )
    retriever: Literal["hybrid", "dense", "bm25"] = "hybrid"
    debug: bool = False


class CitationPublic(BaseModel):
    """`quote` is exactly the source document's text[start:end]."""

    id: int
    source: str
    title: str
    start: int
    end: int
    quote: str
    page: int | None = Field(None, description="The page the quote starts on (PDF documents).")


class Ranks(BaseModel):
    """Per-retriever ranks (1 = best) and raw scores, for debugging fusion."""

    dense_rank: int | None
    bm25_rank: int | None
    dense_score: float | None = Field(description="Cosine similarity, −1…1.")
    bm25_score: float | None = Field(description="Okapi BM25 score, unbounded.")


class PassagePublic(BaseModel):
    """A retrieved chunk; `score` is reciprocal-rank fusion scaled to 0…1."""

    chunk_id: str
    source: str
    title: str
    start: int
    end: int
    text: str
    score: float
    ranks: Ranks | None = None


class AskDebug(BaseModel):
    """How the answer came about."""

    query: str = Field(description="The question as retrieved (after multi-turn rewriting).")
    intent: str
    evidence: float = Field(description="Evidence strength 0…1; refused below threshold.")
    threshold: float


class AskResponse(BaseModel):
    """A cited answer, or a refusal (`refused: true`)."""

    answer: str
    refused: bool
    citations: list[CitationPublic]
    passages: list[PassagePublic]
    timings_ms: dict[str, float]
    intent: str = Field(
        "fact",
        description="fact | list | multi (answered from the reports), faq (a curated answer), "
        "greeting | thanks | out_of_scope (a short reply, no retrieval).",
    )
    composer: str = Field(
        "extractive",
        description="Who wrote the answer: extractive (sentences of the reports), llm (the "
        "configured LLM, every sentence checked against its citation), faq, or reply.",
    )
    llm_fallback: str | None = Field(
        None,
        description="Why the configured LLM's answer was not used (timeout, error, nothing "
        "supported); the extractive answer stands.",
    )
    debug: AskDebug | None = None


class SearchResponse(BaseModel):
    """Retrieved passages, best first."""

    passages: list[PassagePublic]
    timings_ms: dict[str, float]


class DocumentSummary(BaseModel):
    """A document in the knowledge base."""

    source: str
    title: str
    chars: int
    chunks: int


class DocumentList(BaseModel):
    """All documents in the knowledge base."""

    documents: list[DocumentSummary]


class ChunkPublic(BaseModel):
    """A chunk's span within its document."""

    chunk_id: str
    start: int
    end: int
    kind: str
    context: str
    metadata: dict[str, str]


class FlaggedSentence(BaseModel):
    """A sentence screened out at ingest: in no chunk, answer or citation."""

    start: int
    end: int
    reason: Literal["instruction", "solicitation"] = Field(
        description="instruction: addressed to an assistant (忽略以上指令, 你现在是…); "
        "solicitation: asks for personal data or payment with a contact address."
    )
    text: str = Field(description="The sentence, `text[start:end]`.")


class DocumentDetail(BaseModel):
    """A document's full text: chunk and citation offsets index into `text`."""

    source: str
    title: str
    text: str
    metadata: dict[str, str]
    chunks: list[ChunkPublic]
    flagged: list[FlaggedSentence] = Field(
        default_factory=list, description="Sentences kept out of the index, in text order."
    )


class CollectionSummary(BaseModel):
    """A knowledge base served by this instance."""

    name: str
    documents: int
    chunks: int


class CollectionList(BaseModel):
    """Every collection: `default` (ZHICE_CORPUS_DIR/ZHICE_INDEX_DIR), then the others."""

    collections: list[CollectionSummary]


class DocumentUpdate(BaseModel):
    """What an upload, replacement or removal did; the change is live once this is shown."""

    action: Literal["add", "replace", "remove"]
    source: str = Field(description="The document's name, as citations show it.")
    title: str | None = Field(None, description="Its title (not for a removal).")
    chunks: int = Field(description="Chunks of this document now indexed (0 when removed).")
    embedded: int = Field(description="Chunks embedded by this update (only this document's).")
    documents: int = Field(description="Documents in the knowledge base now.")
    seconds: float


class JobPublic(BaseModel):
    """A document update in the ingestion queue: `result` once done, `error` once failed."""

    id: str
    status: Literal["queued", "running", "done", "failed"]
    action: Literal["add", "replace", "remove"]
    source: str
    collection: str | None
    result: DocumentUpdate | None = None
    error: ErrorDetail | None = None


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: str | None = None
