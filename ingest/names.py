"""Document names: one Unicode normalisation, and the checks a name passes before any work.

A document's `source` is its file name in corpus/, exactly as the operator chose it —
checked, never rewritten — so a citation names the file. Every name that arrives
(upload field, URL path, filter, command line) is normalised to NFC here, once, so
"é" typed precomposed or decomposed names one document.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePath

from ingest.errors import InvalidSourceError, UnsupportedFormatError
from ingest.loaders import SUFFIXES

# Linux allows 255 bytes in a file name. Tools that copy or edit corpus/ make their
# temporary files beside it named from it (rsync's `.name.XXXXXX`, 8 bytes more), so a
# name leaves room for that; zhice's own temporary files are never named from a name.
NAME_MAX_BYTES = 255
TEMPORARY_AFFIX_BYTES = 8
MAX_SOURCE_BYTES = NAME_MAX_BYTES - TEMPORARY_AFFIX_BYTES
# Separators, and what shells, URLs and Windows file systems treat specially.
_FORBIDDEN = re.compile(r'[/\\:*?"<>|#%]')
# Unicode categories refused anywhere in a name: controls (Cc), invisible format
# characters such as U+202E RIGHT-TO-LEFT OVERRIDE or zero-width spaces (Cf), which make
# a name read as another, lone surrogates (Cs), and line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def normalize_name(name: str) -> str:
    """The one normalisation of names: Unicode NFC."""
    return unicodedata.normalize("NFC", name)


def source_name(filename: str) -> str:
    """The document name for an uploaded file name: its base name, checked.

    Names with a directory part (`../x.txt`, `/etc/x.txt`, `a\\b.txt`), hidden names,
    control or format characters, more than MAX_SOURCE_BYTES bytes of UTF-8 or an
    unsupported suffix are rejected, not silently altered.
    """
    name = normalize_name(filename).strip()
    if not name or name in {".", ".."} or _FORBIDDEN.search(name):
        raise InvalidSourceError(
            f"file name {filename!r} must be a plain file name without a directory part "
            'or any of / \\ : * ? " < > | # %'
        )
    refused = sorted({f"U+{ord(c):04X}" for c in name if _refused(c)})
    if refused:
        raise InvalidSourceError(
            f"file name {filename!r} holds control or invisible format characters "
            f"({', '.join(refused)})"
        )
    size = len(name.encode("utf-8"))
    if size > MAX_SOURCE_BYTES:
        raise InvalidSourceError(
            f"file name is {size} bytes in UTF-8 (a Chinese character takes 3); at most "
            f"{MAX_SOURCE_BYTES} fit, e.g. {(MAX_SOURCE_BYTES - 4) // 3} Chinese characters "
            "and .txt"
        )
    if name.startswith("."):
        raise InvalidSourceError(f"file name {filename!r} must not start with a dot")
    if PurePath(name).suffix.lower() not in SUFFIXES:
        raise UnsupportedFormatError(
            f"{name!r}: unsupported file type; supported: {', '.join(sorted(SUFFIXES))}"
        )
    return name


def _refused(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES
