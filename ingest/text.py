"""Chinese text handling: decoding, matching normalisation and sentence spans."""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Iterator

# Sentence ends: Chinese and ASCII terminal punctuation, the Chinese semicolon and
# the ellipsis; closing quotes/brackets right after an end belong to that sentence.
_SENTENCE_END = re.compile(r"[。！？；!?;…]+[”’」』）)\]】]*|\n+")
# A title in book-title marks is never cut, whatever it holds: 《卡拉OK.LIVE！‧台北‧我》.
_BOOK_TITLE = re.compile(r"《[^《》\n]{1,80}》")


def decode(data: bytes) -> str:
    """Decode report bytes: UTF-8 or UTF-16 with a BOM, strict UTF-8, else GB18030 or UTF-16.

    Raises ValueError for bytes that are none of these.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    else:
        # ASCII in UTF-16 without a BOM is valid UTF-8 too, interleaved with NULs.
        if "\x00" not in text:
            return text
    from charset_normalizer import from_bytes

    # Only the encodings Chinese reports come in: open detection reads short GBK texts
    # as Korean (cp949). NULs tell the two apart: UTF-16 has one in every ASCII character,
    # GB18030 (a superset of GBK and GB2312) never; the detector then picks UTF-16's byte
    # order and rejects bytes that decode only to noise.
    gb, utf16 = ["gb18030"], ["utf_16_le", "utf_16_be"]
    for candidates in (utf16, gb) if b"\x00" in data else (gb, utf16):
        best = from_bytes(data, cp_isolation=candidates).best()
        if best is not None:
            return str(best)
    raise ValueError("not UTF-8, UTF-16 or GB18030/GBK text")


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
    titles = [m.span() for m in _BOOK_TITLE.finditer(text, start, stop)]
    for match in _SENTENCE_END.finditer(text, start, stop):
        if any(a < match.start() < b for a, b in titles):
            continue
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
