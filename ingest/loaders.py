"""Read report files into Documents (text and Markdown; more formats plug in here)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ingest.errors import CorpusError
from ingest.text import clean, decode
from ingest.types import Document

SUFFIXES = frozenset({".txt", ".md", ".markdown"})
_TITLE_LINE = re.compile(r"^\s*(?:标题|题目|title)\s*[:：]\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_MAX_TITLE = 60


def corpus_files(corpus_dir: Path) -> list[Path]:
    """The readable report files of a corpus directory, sorted by name."""
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus directory {corpus_dir} does not exist (ZHICE_CORPUS_DIR)")
    return sorted(p for p in corpus_dir.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)


def load_document(path: Path) -> Document:
    """Decode one file, keep its text verbatim (line ends unified) and find its title."""
    data = path.read_bytes()
    text = clean(decode(data))
    return Document(
        source=path.name,
        title=guess_title(text, path.stem),
        text=text,
        sha256=hashlib.sha256(data).hexdigest(),
    )


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
