"""Curated question–answer pairs (常见问题) that win over the reports when they match."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ingest.embedding import Embedder
from ingest.text import clean, decode, normalize
from service.errors import FAQError

log = logging.getLogger(__name__)


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


# What a question asks for, by its interrogative; questions of different forms about
# the same thing ("算力券是什么？" and "如何申请算力券？") are different questions.
_FORMS = (
    ("when", re.compile(r"什么时候|何时|哪年|哪一年|哪天|几月|几号|日期")),
    ("how", re.compile(r"如何|怎么|怎样|流程|步骤|哪里|去哪|在哪")),
    ("what", re.compile(r"是什么|什么是|什么意思|指什么|代表什么|含义|定义")),
    ("amount", re.compile(r"多少|多大|多长|多久|几")),
    ("who", re.compile(r"谁|哪个部门|哪家|哪个单位|哪些单位|哪些部门")),
    ("which", re.compile(r"哪些|哪个|哪份|哪项|哪类")),
    ("whether", re.compile(r"吗[？?]?$|能否|可否|是否|能不能|可不可以|有没有")),
)


def question_form(text: str) -> str:
    """when | how | what | amount | who | which | whether | other."""
    return next((form for form, pattern in _FORMS if pattern.search(text)), "other")


class FAQ:
    """Matches questions against the entries' questions and paraphrases by embedding.

    Embeddings rank "算力券是什么？" and "北京的算力券是哪个部门出台的？" close to
    "如何申请算力券？" — closer than its real paraphrases. So a match also needs the
    question's form (`question_form`) to be one of the entry's, and its anchors
    (places, names, figures — `Tokenizer.anchors`) to occur in the entry: a question
    asking something else, or about something the entry does not mention, is a
    different question. The file is re-read when its modification time changes, so
    operators edit it without restarting the service.
    """

    def __init__(
        self,
        path: Path,
        embedder: Embedder,
        threshold: float,
        anchors: Callable[[str], list[str]] = lambda text: [],
    ) -> None:
        self.path = path
        self.embedder = embedder
        self.threshold = threshold
        self._anchors = anchors
        self._lock = threading.Lock()
        self._mtime = -1.0
        self._entries: list[Entry] = []
        self._rows: list[tuple[int, str, str]] = []  # (entry index, normalised text, form)
        self._owners = np.zeros(0, np.int64)  # per row: its entry's index
        self._views: list[tuple[set[str], str]] = []  # per entry: its forms and texts
        self._vectors: npt.NDArray[np.float32] = np.zeros((0, embedder.dimension), np.float32)
        self.reload()

    def reload(self) -> int:
        """Re-read the file if it changed; return the number of entries in force.

        A file that cannot be read fails loudly the first time; later, while the
        service runs, a broken edit is logged and the previous entries stay in force.
        """
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = 0.0
        with self._lock:
            if mtime == self._mtime:
                return len(self._entries)
            first = self._mtime < 0
            self._mtime = mtime
            try:
                entries = read_entries(self.path) if mtime else []
            except (FAQError, OSError) as exc:
                if first:
                    raise
                log.error("keeping the previous %d FAQ entries: %s", len(self._entries), exc)
                return len(self._entries)
            texts = [(i, t) for i, e in enumerate(entries) for t in (e.question, *e.paraphrases)]
            self._entries = entries
            self._rows = [(i, normalize(t), question_form(t)) for i, t in texts]
            self._owners = np.asarray([i for i, _ in texts], np.int64)
            self._views = _entry_views(self._rows, len(entries))
            self._vectors = self._embed([t for _, t in texts])
            log.info("loaded %d FAQ entries from %s", len(entries), self.path)
            return len(entries)

    def match(self, question: str, vector: npt.NDArray[np.float32]) -> Match | None:
        """The best entry for a question (and its embedding), if it is close enough."""
        self.reload()
        with self._lock:
            scores = self._vectors @ vector
            best = self._best(scores, self._eligible(question))
            if best is None or scores[best] < self.threshold:
                return None
            return Match(self._entries[self._rows[best][0]], float(scores[best]))

    def scores(self, questions: list[str]) -> tuple[list[float], list[float]]:
        """Similarities for calibration: (held-out paraphrases, other questions).

        Each entry text is matched against the *other* texts of its own entry, as if it
        were a paraphrase nobody listed; each of `questions` (which no entry should
        answer) against every entry. The same rules as `match` apply to both.
        """
        self.reload()
        with self._lock:
            owners = self._owners
            positives = []
            for row, (owner, text, _) in enumerate(self._rows):
                own = (owners == owner) & (np.arange(len(owners)) != row)
                if own.any():  # an entry with one text has nothing to hold out
                    scores = self._vectors @ self._vectors[row]
                    positives.append(self._score(scores, own & self._eligible(text, row)))
            negatives = []
            for question, vector in zip(questions, self._embed(questions), strict=True):
                negatives.append(self._score(self._vectors @ vector, self._eligible(question)))
        return positives, negatives

    def _eligible(self, question: str, exclude: int = -1) -> npt.NDArray[np.bool_]:
        """Rows whose entry (without row `exclude`) has the question's form and anchors."""
        form, anchors = question_form(question), [normalize(a) for a in self._anchors(question)]
        views = (
            self._views if exclude < 0 else _entry_views(self._rows, len(self._entries), exclude)
        )
        ok = np.asarray(
            [form in forms and all(a in texts for a in anchors) for forms, texts in views],
            np.bool_,
        )
        eligible = ok[self._owners] if len(ok) else np.zeros(len(self._owners), np.bool_)
        if exclude >= 0:
            eligible[exclude] = False
        return eligible

    @classmethod
    def _score(cls, scores: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_]) -> float:
        """The best allowed score; 0 when nothing is allowed (no match at any threshold)."""
        best = cls._best(scores, allowed)
        return float(scores[best]) if best is not None else 0.0

    @staticmethod
    def _best(scores: npt.NDArray[np.float32], allowed: npt.NDArray[np.bool_]) -> int | None:
        if not allowed.any():
            return None
        return int(np.argmax(np.where(allowed, scores, -np.inf)))

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.embedder.dimension), np.float32)
        return self.embedder.embed_batch([self.embedder.query_prompt + t for t in texts])


def _entry_views(
    rows: list[tuple[int, str, str]], entries: int, exclude: int = -1
) -> list[tuple[set[str], str]]:
    """Per entry, the forms and the joined texts of its rows (leaving out row `exclude`)."""
    views: list[tuple[set[str], str]] = [(set(), "") for _ in range(entries)]
    for row, (owner, text, form) in enumerate(rows):
        if row != exclude:
            forms, texts = views[owner]
            forms.add(form)
            views[owner] = (forms, f"{texts}\n{text}")
    return views
