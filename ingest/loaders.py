"""Read report files into Documents, choosing the format reader by file suffix."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path, PurePath

from ingest.errors import CorpusError, EmptyDocumentError, UnsupportedFormatError
from ingest.formats import Extracted, read_docx, read_html, read_pdf, read_text
from ingest.limits import Budget
from ingest.metadata import document_metadata
from ingest.screening import screen, screen_sentence
from ingest.types import Document

READERS: Mapping[str, Callable[[str, bytes, Budget], Extracted]] = {
    ".txt": read_text,
    ".md": read_text,
    ".markdown": read_text,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".html": read_html,
    ".htm": read_html,
}
SUFFIXES = frozenset(READERS)
_TITLE_LINE = re.compile(r"^\s*(?:标题|题目|title)\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_MAX_TITLE = 60


def corpus_files(corpus_dir: Path) -> list[Path]:
    """The readable report files of a corpus directory, sorted by name."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus directory {corpus_dir} does not exist (ZHICE_CORPUS_DIR)")
    return sorted(p for p in corpus_dir.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def load_document(path: Path) -> Document:
    """Read one report file; its file name is the document's source."""
    return load_bytes(path.name, path.read_bytes())


def load_bytes(name: str, data: bytes, budget: Budget | None = None) -> Document:
    """Read one report from its bytes, in the format its name's suffix says.

    The text is kept verbatim (line ends unified) for text files and extracted for
    the others; empty, damaged, scanned and unknown files raise a CorpusError, and
    text past the `budget` (default: unlimited) DocumentTooLargeError as it is read.
    """
    suffix = PurePath(name).suffix.lower()
    reader = READERS.get(suffix)
    if reader is None:
        known = ", ".join(sorted(SUFFIXES))
        raise UnsupportedFormatError(
            f"{name}: unsupported format ({suffix or 'no suffix'}); readable: {known}"
        )
    if not data:
        raise EmptyDocumentError(f"{name} is empty")
    text, title, pages = reader(name, data, budget or Budget(name))
    if not text.strip():
        raise EmptyDocumentError(f"{name} holds no text")
    title = title or guess_title(text, PurePath(name).stem)
    if screen_sentence(title) is not None:  # a title is shown with every citation
        title = PurePath(name).stem
    return Document(
        source=name,
        title=title,
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
        metadata=document_metadata(text, title),
        pages=pages,
        flags=screen(text),
    )


def with_stated(document: Document, stated: Mapping[str, str | None]) -> Document:
    """The document with metadata its uploader stated (`title` among them) taking precedence.

    Values are trimmed; blank or missing ones leave the document's own.
    """
    given = {k: v.strip() for k, v in stated.items() if v and v.strip()}
    title = given.pop("title", document.title)
    return replace(document, title=title, metadata={**document.metadata, **given})


def guess_title(text: str, fallback: str) -> str:
    """An explicit `标题:` line, else the first short line, else the file stem."""
    match = _TITLE_LINE.search(text)
    if match:
        return match.group(1).strip()
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line and len(line) <= _MAX_TITLE:
            return line
    return fallback
