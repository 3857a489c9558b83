"""Chinese text handling: decoding, matching normalisation and sentence spans."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Sentence ends: Chinese and ASCII terminal punctuation, the Chinese semicolon and
# the ellipsis; closing quotes/brackets right after an end belong to that sentence.
_SENTENCE_END = re.compile(r"[。！？；!?;…]+[”’」』）)\]】]*|\n+")


def decode(data: bytes) -> str:
    """Decode report bytes: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # GB18030 is a superset of GBK and GB2312, so it reads all three.
        return data.decode("gb18030")


def clean(text: str) -> str:
    """Unify line ends; the result is the text all offsets and citations refer to."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def normalize(text: str) -> str:
    """Fold full-width forms and case for matching only (citations keep the original).

    NFKC maps full-width ASCII (ＡＩ，１２３) to half-width; it never changes length for
    CJK text, but may for ligatures, so callers must not use it for offsets.
    """
    return unicodedata.normalize("NFKC", text).lower()


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each sentence in text[start:end], whitespace trimmed."""
    stop = len(text) if end is None else end
    pos = start
    for match in _SENTENCE_END.finditer(text, start, stop):
        cut = match.start() if match.group().startswith("\n") else match.end()
        yield from _trimmed(text, pos, cut)
        pos = match.end()
    yield from _trimmed(text, pos, stop)


def _trimmed(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end
