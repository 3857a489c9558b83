"""How much one document may cost: text and chunks, charged while it is read.

A limit checked after reading protects nothing — the memory and time are spent by
then — so readers charge what they extract to a `Budget` as they go, and the moment a
document passes a limit its reading stops with DocumentTooLargeError. The budget is
also where an update is stopped when its client has gone: every charge first checks
`stop`.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

from ingest.errors import DocumentTooLargeError, UpdateCancelledError

# XML elements a DOCX may hold per character of its text allowance. Reading markup is
# work too (a file of empty paragraphs has no text at all); Word writes one or two.
ELEMENTS_PER_CHAR = 2


@dataclass(frozen=True)
class Limits:
    """Per document: characters of extracted text, and chunks."""

    chars: int = sys.maxsize
    chunks: int = sys.maxsize


class Budget:
    """One document's allowance, spent while it is read; `stop` cancels at the next charge."""

    def __init__(
        self, source: str, limits: Limits = Limits(), stop: threading.Event | None = None
    ) -> None:
        self.source = source
        self.limits = limits
        self.stop = stop or threading.Event()
        self.chars = 0
        self.elements = 0

    def check(self) -> None:
        """Raise UpdateCancelledError once `stop` is set."""
        if self.stop.is_set():
            raise UpdateCancelledError(f"{self.source}: cancelled, the client has gone")

    def expect(self, chars: int) -> None:
        """Refuse now if the text will be at least `chars` more characters (not spent yet)."""
        self.check()
        if self.chars + chars > self.limits.chars:
            raise self._too_large(f"more than {self.limits.chars:,} characters of text")

    def spend(self, chars: int) -> None:
        """Charge `chars` characters of extracted text."""
        self.expect(chars)
        self.chars += chars

    def markup(self, elements: int = 1) -> None:
        """Charge XML elements read (see ELEMENTS_PER_CHAR)."""
        self.elements += elements
        if self.elements % 4096 < elements:  # now and then: markup comes fast
            self.check()
        allowed = ELEMENTS_PER_CHAR * self.limits.chars
        if self.elements > allowed:
            raise self._too_large(f"more than {allowed:,} XML elements")

    def chunk(self, count: int) -> None:
        """Refuse once the document has more than the allowed number of chunks."""
        if count > self.limits.chunks:
            raise self._too_large(f"more than {self.limits.chunks:,} chunks")

    def _too_large(self, what: str) -> DocumentTooLargeError:
        return DocumentTooLargeError(f"{self.source} is too large to index: {what}")
