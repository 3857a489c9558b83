"""Filters: which chunks a question may be answered from (source, department, region, date).

A chunk passes when every given criterion holds, reading the chunk's own metadata (a
table row's fields) first and its document's metadata second; a chunk with no value
for a filtered field does not pass. Dates are ISO prefixes (`2024`, `2024-01`,
`2024-01-05`) and a chunk's date must lie wholly inside the range: a row of 2024年1月
is inside 2024…2024-12, a row of plain 2024 is not inside 2024-06…2024-12.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from ingest.metadata import normalize_date
from ingest.tables import ChunkTable
from ingest.text import normalize
from ingest.types import Chunk, Document, effective_metadata

_PLACE_SUFFIX = re.compile(r"(回族自治区|壮族自治区|维吾尔自治区|特别行政区|自治区|省|市)$")
# The policy tables name one ministry two ways (国家发展改革委, 国家发展和改革委员会) and
# users write the short forms; each group's forms stand for one another.
_DEPARTMENT_ALIASES = (
    ("工业和信息化部", "工信部"),
    ("发展和改革委员会", "发展改革委", "发改委"),
)
_QUESTION_DATE = re.compile(r"(?<!\d)(?:19|20)\d\d\s*年(?:\s*\d{1,2}\s*月)?")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class Filter:
    """Criteria a chunk must all meet; None means any value."""

    sources: tuple[str, ...] | None = None
    department: str | None = None
    region: str | None = None
    date_from: str | None = None
    date_to: str | None = None

    @property
    def dated(self) -> bool:
        """True when a date range (either end or both) is given."""
        return self.date_from is not None or self.date_to is not None

    @property
    def on_metadata(self) -> bool:
        """True when a department, region or date criterion is given."""
        return self.department is not None or self.region is not None or self.dated

    @property
    def empty(self) -> bool:
        """True when nothing is restricted."""
        return self.sources is None and not self.on_metadata

    def or_else(self, implied: Filter) -> Filter:
        """This filter, with the criteria it leaves open taken from `implied`.

        The date range is one criterion: an explicit date_from is never paired with an
        implied date_to.
        """
        dates = self if self.dated else implied
        return Filter(
            sources=self.sources if self.sources is not None else implied.sources,
            department=self.department or implied.department,
            region=self.region or implied.region,
            date_from=dates.date_from,
            date_to=dates.date_to,
        )

    def matches(self, metadata: Mapping[str, str]) -> bool:
        """True when a chunk's metadata (see `effective_metadata`) meets every criterion."""
        department, region = metadata.get("department"), metadata.get("region")
        return (
            (self.department is None or department_matches(self.department, department))
            and (self.region is None or region_matches(self.region, region))
            and (not self.dated or self._in_range(normalize_date(metadata.get("date", ""))))
        )

    def _in_range(self, iso: str | None) -> bool:
        if iso is None:
            return False
        first, last = period(iso)
        return (self.date_from is None or period(self.date_from)[0] <= first) and (
            self.date_to is None or last <= period(self.date_to)[1]
        )


def period(iso: str) -> tuple[str, str]:
    """The first and last day of an ISO prefix, as comparable strings.

    `2024` → 2024-01-01 … 2024-12-31; the last day is always 31, which orders
    correctly against every real date of that month.
    """
    first = iso + "-01" * (2 - iso.count("-"))
    last = iso + ("-12-31", "-31", "")[iso.count("-")]
    return first, last


def region_matches(wanted: str, value: str | None) -> bool:
    """广东 matches 广东省 and 广东省 matches 广东: substring after the suffix is dropped."""
    if not value:
        return False
    key = _compact(wanted)
    key = _PLACE_SUFFIX.sub("", key) or key
    return key in _compact(value)


def department_matches(wanted: str, value: str | None) -> bool:
    """Substring match, with 工信部 standing for 工业和信息化部 (and back)."""
    if not value:
        return False
    have = _compact(value)
    return any(form in have for form in _department_forms(_compact(wanted)))


def implied_filter(question: str, places: Sequence[str]) -> Filter | None:
    """The region and year (or month) a question names, when it names one of each."""
    text = normalize(question)
    named = [p for p in places if p in text]
    dates = _QUESTION_DATE.findall(text)
    if len(named) != 1 or len(dates) != 1:
        return None
    iso = normalize_date(dates[0])
    return Filter(region=named[0], date_from=iso, date_to=iso) if iso else None


def named_spans(text: str, places: Sequence[str], where: Filter) -> list[tuple[int, int]]:
    """Where text names what `where` decides: places for a region, dates, the department."""
    names = [*places, where.region] if where.region else []
    if where.department:
        names += _department_forms(_compact(where.department))
    spans = [m.span() for name in names for m in re.finditer(re.escape(name), text)]
    if where.dated:
        spans += [m.span() for m in _QUESTION_DATE.finditer(text)]
    return spans


class FilterIndex:
    """Each chunk's filterable values, stored once per distinct value.

    A filter is tested against the distinct values only (a few hundred, however large
    the index) and the answer spread to the chunks by array indexing; the ids a filter
    allows are cached, as the same few filters recur.
    """

    def __init__(self, chunks: Sequence[Chunk], documents: Mapping[str, Document]) -> None:
        if isinstance(chunks, ChunkTable):  # values stored as codes: no chunk is read
            facets = chunks.facets
            self._sources = _Column.of_codes(facets.source_codes, facets.sources)
            self._metadata = _Column.of_codes(facets.facet_codes, facets.facets)
        else:
            self._sources = _Column([c.source for c in chunks])
            self._metadata = _Column(
                [tuple(effective_metadata(c, documents.get(c.source)).items()) for c in chunks]
            )
        self._size = len(chunks)
        self._cache: dict[Filter, npt.NDArray[np.int64]] = {}

    def allowed(self, where: Filter | None) -> npt.NDArray[np.int64] | None:
        """Ascending ids of the chunks `where` allows; None when it restricts nothing."""
        if where is None or where.empty:
            return None
        ids = self._cache.get(where)
        if ids is None:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            ids = np.flatnonzero(self._mask(where)).astype(np.int64)
            ids.setflags(write=False)
            self._cache[where] = ids
        return ids

    def _mask(self, where: Filter) -> npt.NDArray[np.bool_]:
        mask = np.ones(self._size, dtype=bool)
        if where.sources is not None:
            mask &= self._sources.test(set(where.sources).__contains__)
        if where.on_metadata:
            mask &= self._metadata.test(lambda fields: where.matches(dict(fields)))
        return mask


_Value = TypeVar("_Value", bound=Hashable)


class _Column(Generic[_Value]):
    """One value per chunk, as codes into the distinct values."""

    def __init__(self, values: Sequence[_Value]) -> None:
        codes: dict[_Value, int] = {}
        self.codes = np.fromiter(
            (codes.setdefault(v, len(codes)) for v in values), dtype=np.int64, count=len(values)
        )
        self.values = list(codes)

    @classmethod
    def of_codes(cls, codes: npt.NDArray[np.int64], values: Sequence[_Value]) -> _Column[_Value]:
        """A column already coded (values may repeat; codes index them)."""
        column = cls([])
        column.codes, column.values = codes, list(values)
        return column

    def test(self, keep: Callable[[_Value], bool]) -> npt.NDArray[np.bool_]:
        """Per chunk: whether its value is kept."""
        kept = np.fromiter((keep(v) for v in self.values), dtype=bool, count=len(self.values))
        return kept[self.codes]


def _department_forms(wanted: str) -> set[str]:
    forms = {wanted}
    for group in _DEPARTMENT_ALIASES:
        for name in group:
            if name in wanted:
                forms.update(wanted.replace(name, other) for other in group)
    return forms


def _compact(text: str) -> str:
    return "".join(normalize(text).split())
