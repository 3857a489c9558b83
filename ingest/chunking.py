"""Split a document into chunks: sentence-packed prose, one chunk per table row."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import zip_longest

from ingest.limits import Budget
from ingest.text import sentence_spans
from ingest.types import FIELD_KEYS, PAGE_KEY, Chunk, ChunkKind, Document, Flag, page_at

_ENDS_SENTENCE = tuple("。！？；!?;…：:，,")
_MD_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
_CLAUSE_BREAK = re.compile(r"[，,、：:]")
_NUMERIC = re.compile(r"^[\d.,%+\-eE]+$")


@dataclass(frozen=True)
class ChunkerParams:
    """Sizes in characters; recorded in the index manifest."""

    version: int = 8  # bump when chunking logic changes, so indexes rebuild
    min_chars: int = 80
    max_chars: int = 220
    overlap_sentences: int = 1
    heading_max_chars: int = 40


@dataclass(frozen=True)
class _Line:
    start: int
    end: int
    kind: str  # "blank" | "heading" | "text" | "table" | "cut" (a flagged sentence)
    cells: tuple[str, ...] = ()
    flagged: bool = False  # a table row holding a flagged sentence: kept in place, not chunked


def chunk_document(
    doc: Document, params: ChunkerParams = ChunkerParams(), budget: Budget | None = None
) -> list[Chunk]:
    """Chunk one document; every chunk's text is exactly doc.text[start:end].

    A paged document's chunks carry the page their start is on as metadata["page"].
    Past the `budget`'s chunk limit, DocumentTooLargeError stops the chunking. The
    document's flagged sentences are in no chunk: prose is cut around them (no chunk
    spans one), and a table row holding one is left out of its table.
    """
    budget = budget or Budget(doc.source)
    lines = _classify(doc.text, params, doc.flags)
    pieces: list[tuple[int, int, ChunkKind, str, dict[str, str]]] = []
    i = 0
    heading = ""
    while i < len(lines):
        if lines[i].kind == "table":
            j = i
            while j < len(lines) and lines[j].kind == "table":
                j += 1
            if j - i < 2:  # a lone "row" (鲈形目|鲈亚目|笛鲷科) is prose, not a table
                kind = "cut" if lines[i].flagged else "text"
                lines[i] = _Line(lines[i].start, lines[i].end, kind)
                continue
            caption = _caption(doc.text, lines, i)
            pieces.extend(_table_rows(doc.text, lines[i:j], caption))
            budget.chunk(len(pieces))
            i = j
            continue
        if lines[i].kind == "cut":
            i += 1
            continue
        j = i
        while j < len(lines) and lines[j].kind not in ("table", "cut"):
            j += 1
        for start, end, context in _pack_prose(doc.text, lines[i:j], params, heading):
            pieces.append((start, end, "text", context, {}))
            budget.chunk(len(pieces))
        heading = _last_heading(doc.text, lines[i:j], heading)
        i = j
    return [_make_chunk(doc, n, piece) for n, piece in enumerate(pieces)]


def _make_chunk(
    doc: Document, n: int, piece: tuple[int, int, ChunkKind, str, dict[str, str]]
) -> Chunk:
    start, end, kind, context, metadata = piece
    if doc.pages:
        metadata = {**metadata, PAGE_KEY: str(page_at(doc, start))}
    chunk = Chunk(
        chunk_id="",
        source=doc.source,
        title=doc.title,
        start=start,
        end=end,
        text=doc.text[start:end],
        kind=kind,
        context=context,
        metadata=metadata,
    )
    digest = hashlib.sha1(chunk.search_text.encode("utf-8")).hexdigest()[:10]
    return Chunk(**{**chunk.__dict__, "chunk_id": f"{doc.source}#{n}:{digest}"})


def _classify(text: str, params: ChunkerParams, flags: Sequence[Flag] = ()) -> list[_Line]:
    lines: list[_Line] = []
    pos = 0
    for raw in text.split("\n"):
        start, end = pos, pos + len(raw)
        pos = end + 1
        stripped = raw.strip()
        cells = _cells(raw)
        if not stripped or _MD_RULE.match(raw) and set(stripped) <= set("|-: "):
            # A Markdown table's |---| rule under its header keeps the table in one piece.
            if not (stripped and lines and lines[-1].kind == "table"):
                lines.append(_Line(start, end, "blank"))
        elif cells:
            flagged = any(f.start < end and start < f.end for f in flags)
            lines.append(_Line(start, end, "table", cells, flagged))
        else:
            for piece_start, piece_end, cut in _pieces(start, end, flags):
                if cut:
                    lines.append(_Line(piece_start, piece_end, "cut"))
                else:
                    lines.append(_prose_line(text, piece_start, piece_end, params))
    return lines


def _pieces(start: int, end: int, flags: Sequence[Flag]) -> Iterator[tuple[int, int, bool]]:
    """A line as (start, end, is flagged) pieces: flagged sentences cut out of the rest."""
    pos = start
    for flag in flags:
        if flag.start < end and pos < flag.end:
            if pos < flag.start:
                yield pos, flag.start, False
            yield max(pos, flag.start), min(end, flag.end), True
            pos = min(end, flag.end)
    if pos < end or pos == start:
        yield pos, end, False


def _prose_line(text: str, start: int, end: int, params: ChunkerParams) -> _Line:
    stripped = text[start:end].strip()
    if not stripped:
        return _Line(start, end, "blank")
    if stripped.startswith("#") or (
        len(stripped) <= params.heading_max_chars and not stripped.endswith(_ENDS_SENTENCE)
    ):
        return _Line(start, end, "heading")
    return _Line(start, end, "text")


def _cells(line: str) -> tuple[str, ...]:
    """Table cells of a ` | `-separated or tab-separated row, else ()."""
    if line.count("|") >= 3:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
    elif line.count("\t") >= 2:
        cells = [c.strip() for c in line.rstrip().split("\t")]
    else:
        return ()
    return tuple(cells) if sum(1 for c in cells if c) >= 2 else ()


def _caption(text: str, lines: list[_Line], first: int) -> str:
    """The heading-like line just above a table (skipping blank lines)."""
    for line in reversed(lines[:first]):
        if line.kind == "blank":
            continue
        return text[line.start : line.end].strip() if line.kind == "heading" else ""
    return ""


def _table_rows(
    text: str, rows: list[_Line], caption: str
) -> Iterator[tuple[int, int, ChunkKind, str, dict[str, str]]]:
    if rows[0].flagged:  # its header would name every row's fields
        return
    names, body = list(rows[0].cells), rows[1:]
    # A two-line header: the second line starts blank and holds no figures.
    if body and not body[0].cells[0] and not any(_NUMERIC.search(c) for c in body[0].cells):
        second = body[0].cells
        names = [b or a for a, b in zip_longest(names, second, fillvalue="")]
        body = body[1:]
    header = [FIELD_KEYS.get(name, name) for name in names]
    previous: list[str] = []
    for row in body:
        values = list(row.cells)
        # A blank leading cell continues a merged cell from the row above.
        for k, value in enumerate(values):
            if value or k >= len(previous) or any(values[:k]):
                break
            values[k] = previous[k]
        previous = values
        if row.flagged:
            continue
        fields = {
            name: value for name, value in zip(header, values, strict=False) if name and value
        }
        if fields:
            line_start, line_end = _strip_span(text, row.start, row.end)
            yield line_start, line_end, "table_row", caption, fields


def _strip_span(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _last_heading(text: str, lines: list[_Line], current: str) -> str:
    for line in reversed(lines):
        if line.kind == "heading":
            return text[line.start : line.end].strip()
    return current


def _units(text: str, lines: list[_Line], max_chars: int) -> Iterator[tuple[int, int, bool]]:
    """Sentences (and headings) of a prose block as (start, end, is_heading)."""
    for line in lines:
        if line.kind == "blank":
            continue
        if line.kind == "heading":
            yield *_strip_span(text, line.start, line.end), True
            continue
        for start, end in sentence_spans(text, line.start, line.end):
            for piece in _split_long(text, start, end, max_chars):
                piece_start, piece_end = _strip_span(text, *piece)
                if piece_end > piece_start:
                    yield piece_start, piece_end, False


def _split_long(text: str, start: int, end: int, max_chars: int) -> Iterator[tuple[int, int]]:
    """Cut a sentence longer than max_chars at clause breaks, else hard."""
    while end - start > max_chars:
        window = text[start : start + max_chars]
        breaks = [m.end() for m in _CLAUSE_BREAK.finditer(window) if m.end() > max_chars // 2]
        cut = start + (breaks[-1] if breaks else max_chars)
        yield start, cut
        start = cut
    yield start, end


def _pack_prose(
    text: str, lines: list[_Line], params: ChunkerParams, heading: str
) -> Iterator[tuple[int, int, str]]:
    """Pack sentences into chunks of min..max chars with a sentence of overlap."""
    current: list[tuple[int, int, bool]] = []
    context = heading
    for unit in _units(text, lines, params.max_chars):
        start, end, is_heading = unit
        size = end - current[0][0] if current else 0
        if current and (
            (is_heading and size >= params.min_chars) or end - current[0][0] > params.max_chars
        ):
            yield current[0][0], current[-1][1], context
            context = _context_for(text, current, context)
            keep = [] if is_heading else current[-params.overlap_sentences :]
            current = [u for u in keep if not u[2] and end - u[0] <= params.max_chars]
        current.append(unit)
    if current:
        yield current[0][0], current[-1][1], context


def _context_for(text: str, emitted: list[tuple[int, int, bool]], context: str) -> str:
    """The heading in force after the emitted units."""
    for start, end, is_heading in reversed(emitted):
        if is_heading:
            return text[start:end]
    return context
