"""Format readers: the text of PDF, DOCX, HTML and plain-text files.

Each reader takes a file's name (for messages) and bytes and returns its text, a title
when the file names one, and page offsets for paged formats. Tables come out as
Markdown pipe tables and headings as `#` lines, which the chunker understands. The
parsers are imported inside the readers, so importing ingest (and starting the
service) does not pay for them.
"""

from __future__ import annotations

import io
import logging
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

from ingest.errors import (
    EncryptedDocumentError,
    ScannedPDFError,
    UnreadableDocumentError,
    ZhiceError,
)
from ingest.limits import Budget
from ingest.text import clean, decode
from ingest.wordml import Table, read_wordml

log = logging.getLogger(__name__)

PAGE_BREAK = "\n\n"
_BLOCK_BREAK = "\n\n"
_WHITESPACE = re.compile(r"\s+")
# Some PDF fonts map common characters to Kangxi radicals (⼯ U+2F2F for 工), which
# look the same but match nothing; NFKC maps them back.
_RADICALS = re.compile("[\u2e80-\u2fdf]")
# Metadata titles that are a file name or a tool's default rather than a title.
_JUNK_TITLE = re.compile(r"^(?:untitled|Microsoft Word - .*|.*\.(?:docx?|wps|pdf|txt))$", re.I)
_DOCX_HEADING = re.compile(r"^(?:heading|标题)\s*([1-9])$", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_BLOCKS = frozenset(
    "address article blockquote body br caption center dd div dl dt figcaption figure footer "
    "header hr li main ol p pre section table td th tr ul".split()
)
_HTML_DROP = frozenset(
    "aside button canvas form iframe nav noscript object script select style svg template".split()
)
_ROLES_DROP = frozenset({"banner", "complementary", "contentinfo", "navigation", "search"})
# Class or id words that mark navigation and page furniture on sites without <nav>.
_CLASSES_DROP = frozenset(
    {"breadcrumb", "copyright", "footer", "menu", "nav", "navbar", "share", "sidebar"}
)
# <header>/<footer> are the page's banner only outside these (the HTML-ARIA mapping).
_SECTIONING = frozenset({"article", "aside", "main", "nav", "section"})
_MAX_SPAN = 50

# A DOCX whose parts unpack to more than this is refused rather than read.
MAX_UNPACKED_BYTES = 200 * 1024 * 1024
# A PDF line at least this full (of the page's widest) that ends mid-sentence wraps.
_WRAP_FILL = 0.85
_MIN_WRAP_WIDTH = 30
_SENTENCE_END = tuple("。！？；：.!?;:")


class Extracted(NamedTuple):
    """What a reader gets out of a file; `title` is empty when the file names none."""

    text: str
    title: str = ""
    pages: tuple[int, ...] = ()


def read_text(name: str, data: bytes, budget: Budget) -> Extracted:
    """Plain text or Markdown in UTF-8 (BOM or not), UTF-16 or GB18030/GBK."""
    # Every encoding read takes at most 4 bytes a character: refuse before decoding.
    budget.expect(len(data) // 4)
    text = clean(_decode(name, data))
    budget.spend(len(text))
    return Extracted(text)


def read_pdf(name: str, data: bytes, budget: Budget) -> Extracted:
    """A PDF's text layer, pages joined by a blank line; scanned PDFs are refused."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    with _reading(name, "PDF"):
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Most protected reports restrict copying only and open with an empty password.
            try:
                opened = bool(reader.decrypt(""))
            except PyPdfError:  # AES needs the cryptography package, which we do not ship
                opened = False
            if not opened:
                raise EncryptedDocumentError(
                    f"{name} is password-protected; save an unprotected copy first"
                )
        texts = []
        for page in reader.pages:
            texts.append(_unwrap(_fix_radicals(clean(page.extract_text() or "")).strip()))
            budget.spend(len(texts[-1]) + len(PAGE_BREAK))
        title = reader.metadata.title if reader.metadata else None
    if not any(texts):
        raise ScannedPDFError(f"{name} has no text layer (scanned?); OCR it first")
    if blank := sum(1 for text in texts if not text):
        log.warning("%s: %d of %d pages have no text layer", name, blank, len(texts))
    starts = [0]
    for text in texts[:-1]:
        starts.append(starts[-1] + len(text) + len(PAGE_BREAK))
    return Extracted(PAGE_BREAK.join(texts), _real_title(title), tuple(starts))


def read_docx(name: str, data: bytes, budget: Budget) -> Extracted:
    """A Word document's body: paragraphs, `#` headings and pipe tables in order."""
    with _reading(name, "DOCX"):
        _check_expansion(name, data)
        document = read_wordml(io.BytesIO(data), budget)
    blocks = [
        _pipe_table(block.rows)
        if isinstance(block, Table)
        else _heading(_docx_level(block.style), _squash(block.text))
        for block in document.blocks
    ]
    return Extracted(_BLOCK_BREAK.join(b for b in blocks if b), _real_title(document.title))


def _check_expansion(name: str, data: bytes) -> None:
    """Refuse a DOCX (a zip) that would unpack to far more than any report (a zip bomb)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > MAX_UNPACKED_BYTES:
        raise UnreadableDocumentError(
            f"{name} unpacks to {unpacked} bytes, more than {MAX_UNPACKED_BYTES}: not read"
        )


def read_html(name: str, data: bytes, budget: Budget) -> Extracted:
    """A web page's main text, without navigation, banners, footers, scripts or styles.

    The title is the first <h1> of the content, else <title>.
    """
    import lxml.html

    # Decoded like any text file rather than by <meta charset>, which is often stale
    # on pages re-encoded when a site moved to UTF-8.
    markup = _XML_DECLARATION.sub("", _decode(name, data))
    if not markup.strip():
        return Extracted("")
    with _reading(name, "HTML"):
        page = lxml.html.document_fromstring(markup)
    root = _content_root(page)
    doomed = [el for el in root.iterdescendants() if _is_boilerplate(el)]
    for el in doomed:
        el.drop_tree()
    h1 = next(root.iter("h1"), None)
    title = _squash(h1.text_content()) if h1 is not None else ""
    return Extracted(
        _BLOCK_BREAK.join(_html_blocks(root, budget)),
        title or _squash(page.findtext(".//title") or ""),
    )


@contextmanager
def _reading(name: str, kind: str) -> Iterator[None]:
    """Report a parser's failure on a damaged file as one clear error."""
    try:
        yield
    except ZhiceError:  # ours already: too large, cancelled, encrypted …
        raise
    # Parsers fail on damaged input with many types (PdfReadError, BadZipFile, KeyError…).
    except Exception as exc:
        raise UnreadableDocumentError(f"{name} is not a readable {kind} file: {exc}") from exc


def _decode(name: str, data: bytes) -> str:
    try:
        return decode(data)
    except ValueError as exc:
        raise UnreadableDocumentError(f"{name} cannot be decoded: {exc}") from exc


def _unwrap(page: str) -> str:
    """Re-join the lines a PDF hard-wrapped at the page margin.

    A line that fills (nearly) the page's widest line and does not end a sentence
    continues on the next one; short lines — titles, headings, a paragraph's last
    line — keep their breaks. Without this every wrapped line would read as a heading.
    """
    lines = page.split("\n")
    width = max((len(line) for line in lines), default=0)
    if width < _MIN_WRAP_WIDTH:
        return page
    out: list[str] = []
    joining = False
    for line in lines:
        if joining and out:
            glue = " " if out[-1][-1:].isascii() and line[:1].isascii() else ""
            out[-1] += glue + line.strip()
        else:
            out.append(line)
        stripped = line.rstrip()
        joining = (
            len(stripped) >= _WRAP_FILL * width and not stripped.endswith(_SENTENCE_END)
        ) and "|" not in stripped
    return "\n".join(out)


def _real_title(title: str | None) -> str:
    """A metadata title, or "" when it is blank, a file name or a tool's placeholder."""
    title = _squash(title or "")
    return "" if _JUNK_TITLE.match(title) else title


def _fix_radicals(text: str) -> str:
    return _RADICALS.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)


def _squash(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _heading(level: int, text: str) -> str:
    """A Markdown heading line; level 0 is body text, and an empty heading is nothing."""
    return f"{'#' * level} {text}" if text and level else text


def _docx_level(style: str) -> int:
    if style.lower() == "title":
        return 1
    match = _DOCX_HEADING.match(style)
    return int(match.group(1)) if match else 0


def _pipe_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as a Markdown pipe table: the first row is the header, a rule under it."""
    cells = [[_squash(cell).replace("|", "｜") for cell in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    lines = ["| " + " | ".join(row + [""] * (width - len(row))) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * width)
    return "\n".join(lines)


def _content_root(page: Any) -> Any:
    """The page's <main> (or role=main), else its first <article>, else <body>."""
    for path in ("//main", "//*[@role='main']", "//article", "//body"):
        found = page.xpath(path)
        if found:
            return found[0]
    return page


def _is_boilerplate(el: Any) -> bool:
    if not isinstance(el.tag, str):
        return False
    if el.tag in _HTML_DROP or el.get("role") in _ROLES_DROP:
        return True
    if el.tag in ("header", "footer"):
        return not any(a.tag in _SECTIONING for a in el.iterancestors())
    words = f"{el.get('class', '')} {el.get('id', '')}".lower().split()
    return not _CLASSES_DROP.isdisjoint(words)


def _html_blocks(root: Any, budget: Budget) -> list[str]:
    """The text of a cleaned content root, one string per block, headings as `#` lines."""
    blocks: list[str] = []
    inline: list[str] = []

    def add(block: str) -> None:
        budget.spend(len(block) + len(_BLOCK_BREAK))
        blocks.append(block)

    def flush() -> None:
        text = _squash("".join(inline))
        inline.clear()
        if text:
            add(text)

    def walk(el: Any) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""  # comments add no text
        if tag in _HEADINGS:
            flush()
            add(_heading(int(tag[1]), _squash(el.text_content())))
        elif tag == "table" and _is_data_table(el):
            flush()
            add(_pipe_table(_grid(el)))
        elif tag:
            if tag in _HTML_BLOCKS:
                flush()
            inline.append(el.text or "")
            for child in el:
                walk(child)
                inline.append(child.tail or "")
            if tag in _HTML_BLOCKS:
                flush()

    walk(root)
    flush()
    return [block for block in blocks if block]


def _is_data_table(table: Any) -> bool:
    """A table of data, not one laying out the page (nested tables, a single column)."""
    if table.xpath(".//table"):
        return False
    return sum(1 for tr in table.iter("tr") if len(tr.xpath("./th|./td")) >= 2) >= 2


def _grid(table: Any) -> list[list[str]]:
    """A table's cell texts row by row, spanned cells repeated so columns line up."""
    cells: dict[tuple[int, int], str] = {}
    rows = list(table.iter("tr"))
    for r, tr in enumerate(rows):
        c = 0
        for td in tr.xpath("./th|./td"):
            while (r, c) in cells:
                c += 1
            text = _squash(td.text_content())
            colspan, rowspan = _span(td, "colspan"), _span(td, "rowspan")
            for dr in range(rowspan):
                for dc in range(colspan):
                    cells.setdefault((r + dr, c + dc), text)
            c += colspan
    width = max((c for _, c in cells), default=-1) + 1
    return [[cells.get((r, c), "") for c in range(width)] for r in range(len(rows))]


def _span(cell: Any, attribute: str) -> int:
    value = str(cell.get(attribute, "1")).strip()
    return min(int(value), _MAX_SPAN) if value.isdigit() and int(value) > 0 else 1
