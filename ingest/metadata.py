"""Document metadata a report states about itself: publish date, issuing department, region.

Extraction is conservative — no value rather than a wrong one: dates and departments
only from the first lines (where a web page or report states them, not where the body
cites another document's date), regions only from a title that opens with a place.
"""

from __future__ import annotations

import datetime
import functools
import re
from importlib.resources import files

from ingest.text import normalize

# A date at the start of a value: 2024年1月5日, 2024年1月, 2024年, 2024-01-05, 2024/3/28,
# 2023.11, 2024. A range (2023-2024年, 2024年1月至3月) is not one date.
_DATE = re.compile(
    r"(?P<year>(?:19|20)\d\d)\s*"
    r"(?:年\s*(?P<cm>\d{1,2})\s*月(?:\s*(?P<cd>\d{1,2})\s*[日号])?"
    r"|[-/.](?P<m>\d{1,2})(?:[-/.](?P<d>\d{1,2}))?(?!\d)"
    r"|年)?"
    r"(?![\d\-/.~～—–至到年])"
)
_HEAD_LINES = 8
_DATE_LABEL = re.compile(r"(?:^|\s)(?:发布|发文|成文|印发|更新)?(?:时间|日期)\s*[:：]\s*")
_DEPARTMENT_LABEL = re.compile(
    r"(?:^|\s)(?:来源|发布单位|发布部门|发布机构|发文单位|发文机关|发文部门|印发单位)\s*[:：]\s*(\S+)"
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_MAX_DEPARTMENT = 40
_PLACE_SUFFIX = ("回族自治区", "壮族自治区", "维吾尔自治区", "特别行政区", "自治区", "省", "市")
# A title may open with its year ("2024年广东省…").
_LEADING_YEAR = re.compile(r"^\s*(?:19|20)\d\d\s*年?\s*")


def normalize_date(value: str) -> str | None:
    """The ISO prefix (`2024`, `2024-01`, `2024-01-05`) of a date at the start of value.

    Reads 2024年1月5日, 2024年1月, 2024-01-05, 2024/3/28, 2023.11 and full-width digits;
    None for anything else, impossible dates (2024年13月) and ranges (2023-2024年).
    """
    found = _parse(normalize(value).strip())
    return found[0] if found else None


def document_metadata(text: str, title: str) -> dict[str, str]:
    """`date`, `department` and `region` where the report states them, else absent."""
    head = [line.strip() for line in text.splitlines() if line.strip()][:_HEAD_LINES]
    found = {
        "date": _stated_date(head),
        "department": _stated_department(head),
        "region": _title_region(title),
    }
    return {key: value for key, value in found.items() if value}


def _parse(text: str) -> tuple[str, int] | None:
    """The ISO prefix of the date text starts with, and where that date ends."""
    match = _DATE.match(text)
    if not match:
        return None
    month, day = match.group("cm") or match.group("m"), match.group("cd") or match.group("d")
    year = int(match.group("year"))
    try:
        datetime.date(year, int(month or 1), int(day or 1))
    except ValueError:
        return None
    iso = str(year)
    if month:
        iso += f"-{int(month):02d}"
    if day:
        iso += f"-{int(day):02d}"
    return iso, match.end()


def _stated_date(head: list[str]) -> str | None:
    """A labelled date (发布时间:2024-04-28 04:47:31), else a line that is only a date.

    An unlabelled date must give at least the month: a bare "2023" line near the top
    is as likely a figure or a timeline heading as the publication year.
    """
    for line in head:
        for label in _DATE_LABEL.finditer(line):
            found = _parse(normalize(line[label.end() :]))
            if found:
                return found[0]
    for line in map(normalize, head):
        found = _parse(line)
        if found and found[1] == len(line) and "-" in found[0]:
            return found[0]
    return None


def _stated_department(head: list[str]) -> str | None:
    """The value of a 来源/发布单位 line, when it names an organisation in Chinese."""
    for line in head:
        match = _DEPARTMENT_LABEL.search(line)
        # "来源: sp20240428" is a code, not a department.
        if match and _CJK.search(match.group(1)) and len(match.group(1)) <= _MAX_DEPARTMENT:
            return match.group(1)
    return None


def _title_region(title: str) -> str | None:
    """The place a title opens with (广东省…, 北京市…), with its suffix as written."""
    rest = _LEADING_YEAR.sub("", title)
    for place in _places():
        if rest.startswith(place):
            after = rest[len(place) :]
            suffix = next((s for s in _PLACE_SUFFIX if after.startswith(s)), "")
            return place + suffix
    return None


@functools.cache
def _places() -> tuple[str, ...]:
    """The gazetteer's places, longest first (so 呼和浩特 wins over a shorter prefix)."""
    text = files("ingest").joinpath("data", "places.txt").read_text(encoding="utf-8")
    words = {w for line in text.splitlines() for w in line.split("#", 1)[0].split()}
    return tuple(sorted(words, key=lambda w: (-len(w), w)))
