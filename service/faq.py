"""Curated question–answer pairs (常见问题) that win over the reports when they match."""

from __future__ import annotations

import csv
import io
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ingest.embedding import Embedder
from ingest.errors import ZhiceError
from ingest.text import clean, decode

log = logging.getLogger(__name__)


class FAQError(ZhiceError):
    """The FAQ file cannot be read."""

    status = 400
    code = "invalid_faq"


@dataclass(frozen=True)
class Entry:
    """One curated answer and the questions it answers."""

    id: str
    question: str
    answer: str
    paraphrases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """An FAQ entry matched to a question, with the cosine similarity of the match."""

    entry: Entry
    similarity: float


def read_entries(path: Path) -> list[Entry]:
    """Entries from JSONL ({"question", "answer", "id"?, "paraphrases"?}) or CSV."""
    text = clean(decode(path.read_bytes()))
    rows = _csv_rows(text) if path.suffix.lower() == ".csv" else _jsonl_rows(text, path)
    entries = []
    for n, row in enumerate(rows, start=1):
        question, answer = str(row.get("question", "")).strip(), str(row.get("answer", "")).strip()
        if not question or not answer:
            raise FAQError(f"{path}: entry {n} needs a question and an answer")
        raw = row.get("paraphrases") or []
        # CSV cells list paraphrases separated by |; JSONL gives a list.
        items = raw.split("|") if isinstance(raw, str) else raw
        if not isinstance(items, list):
            raise FAQError(f"{path}: entry {n}: paraphrases must be a list")
        paraphrases = tuple(str(p).strip() for p in items if str(p).strip())
        entries.append(Entry(str(row.get("id") or n), question, answer, paraphrases))
    return entries


def _jsonl_rows(text: str, path: Path) -> list[dict[str, object]]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise FAQError(f"{path}:{n}: not JSON ({exc})") from exc
            if not isinstance(row, dict):
                raise FAQError(f"{path}:{n}: expected an object")
            rows.append(row)
    return rows


def _csv_rows(text: str) -> list[dict[str, object]]:
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


class FAQ:
    """Matches questions against the entries' questions and paraphrases by embedding.

    The file is re-read when its modification time changes, so operators edit it
    without restarting the service.
    """

    def __init__(self, path: Path, embedder: Embedder, threshold: float) -> None:
        self.path = path
        self.embedder = embedder
        self.threshold = threshold
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._entries: list[Entry] = []
        self._owners: list[int] = []  # row of _vectors -> entry index
        self._vectors: npt.NDArray[np.float32] = np.zeros((0, embedder.dimension), np.float32)
        self.reload()

    def reload(self) -> int:
        """Re-read the file (if it changed) and return the number of entries."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        with self._lock:
            if mtime == self._mtime:
                return len(self._entries)
            entries = read_entries(self.path) if mtime else []
            texts = [(i, t) for i, e in enumerate(entries) for t in (e.question, *e.paraphrases)]
            vectors = (
                self.embedder.embed_batch([self.embedder.query_prompt + t for _, t in texts])
                if texts
                else np.zeros((0, self.embedder.dimension), np.float32)
            )
            self._entries, self._owners, self._vectors = entries, [i for i, _ in texts], vectors
            self._mtime = mtime
            log.info("loaded %d FAQ entries from %s", len(entries), self.path)
            return len(entries)

    def match(self, query: npt.NDArray[np.float32]) -> Match | None:
        """The best entry for an embedded question, if it is close enough."""
        self.reload()
        with self._lock:
            if not len(self._vectors):
                return None
            scores = self._vectors @ query
            best = int(np.argmax(scores))
            similarity = float(scores[best])
            entry = self._entries[self._owners[best]]
        return Match(entry, similarity) if similarity >= self.threshold else None
