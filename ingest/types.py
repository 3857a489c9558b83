"""The shared vocabulary passed between stages: documents, chunks, hits."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

ChunkKind = Literal["text", "table_row"]
FlagReason = Literal["instruction", "solicitation"]


@dataclass(frozen=True)
class Flag:
    """A sentence of a document that is kept out of every chunk, answer and citation.

    `instruction`: addressed to an assistant (忽略以上指令, 你现在是…); `solicitation`:
    asks for personal data or payment with a contact address.
    """

    start: int
    end: int
    reason: FlagReason


@dataclass(frozen=True)
class Document:
    """A loaded report: its normalised text is what every offset indexes into.

    `pages` holds, for a paged format (PDF), the offset in `text` where each page
    starts: page n+1 starts at pages[n]. Other formats have none. `flags` are the
    sentences screened out at ingest, in text order.
    """

    source: str
    title: str
    text: str
    sha256: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    pages: tuple[int, ...] = ()
    flags: tuple[Flag, ...] = ()

    def __post_init__(self) -> None:
        # Read back from documents.jsonl the offsets arrive as a list, flags as dicts.
        object.__setattr__(self, "pages", tuple(self.pages))
        flags = tuple(f if isinstance(f, Flag) else Flag(**f) for f in self.flags)
        object.__setattr__(self, "flags", flags)


# The chunk metadata key of a paged document's page number (1-based, as a string).
PAGE_KEY = "page"


def page_at(doc_or_pages: Document | Sequence[int], offset: int) -> int | None:
    """The 1-based page holding text offset `offset`, or None when there are no pages."""
    pages = doc_or_pages.pages if isinstance(doc_or_pages, Document) else doc_or_pages
    return bisect_right(pages, offset) if pages else None


@dataclass(frozen=True)
class Chunk:
    """A retrievable span of one document.

    `text` is exactly `document.text[start:end]`; `context` is the heading or table
    caption (and header) the span sits under, used for search but never cited.
    """

    chunk_id: str
    source: str
    title: str
    start: int
    end: int
    text: str
    kind: ChunkKind = "text"
    context: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def search_text(self) -> str:
        """The text embedded and BM25-indexed: context first, then the span."""
        if self.kind == "table_row":
            return table_row_sentence(self.context, self.metadata)
        return f"{self.context}\n{self.text}" if self.context else self.text


# The metadata keys filters read (table-row fields, see FIELD_KEYS).
FILTER_FIELDS = ("department", "region", "date")


def effective_metadata(chunk: Chunk, document: Document | None) -> dict[str, str]:
    """The filterable fields of a chunk: its own where it has them, else its document's."""
    inherited = document.metadata if document else {}
    return {
        key: value
        for key in FILTER_FIELDS
        if (value := chunk.metadata.get(key) or inherited.get(key, ""))
    }


@dataclass(frozen=True)
class Hit:
    """A chunk retrieved for a query, with its fused score and per-retriever ranks."""

    chunk: Chunk
    score: float
    dense_rank: int | None = None
    bm25_rank: int | None = None
    dense_score: float | None = None
    bm25_score: float | None = None


@dataclass(frozen=True)
class Citation:
    """An exact span of a source document that supports part of an answer."""

    id: int
    source: str
    title: str
    start: int
    end: int
    quote: str


# Row-field names recognised in the reports' policy tables, mapped to metadata keys
# that filters understand.
FIELD_KEYS: Mapping[str, str] = {
    "发布时间": "date",
    "时间": "date",
    "发布部门": "department",
    "部门": "department",
    "省市": "region",
    "地区": "region",
    "政策名称": "policy",
    "名称": "policy",
    "主要内容": "content",
    "内容": "content",
}


def table_row_sentence(caption: str, fields: Mapping[str, str]) -> str:
    """Render a table row as a sentence: `2024年1月 国务院《名称》：内容` for policy rows."""
    if "policy" not in fields:
        pairs = "；".join(
            f"{name}：{value}" for name, value in fields.items() if value and name != PAGE_KEY
        )
        return f"{caption}\n{pairs}" if caption else pairs
    who = fields.get("department") or fields.get("region") or ""
    head = " ".join(part for part in (fields.get("date", ""), who) if part)
    body = f"{head}《{fields['policy']}》"
    if fields.get("content"):
        body += f"：{fields['content']}"
    return f"{caption}\n{body}" if caption else body
