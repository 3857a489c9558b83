"""Filtered list questions over the policy tables, over real HTTP with the real model.

The expected rows are read from the report's tables here, independently of the
chunker: a filtered question must return every matching row and only those.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from tests.conftest import CORPUS

pytestmark = pytest.mark.e2e

SOURCE = "000_b09d076724004418.txt"
Row = Mapping[str, str]


def _tables(text: str) -> list[Row]:
    """Every row of the report's ` | ` tables as {column: value, "line": row text}."""
    rows: list[Row] = []
    header: list[str] | None = None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.count("|") < 3:
            header = None
        elif header is None:
            header = cells
        else:
            rows.append({**dict(zip(header, cells, strict=False)), "line": line.strip()})
    return rows


ROWS = _tables((CORPUS / SOURCE).read_text(encoding="utf-8"))
POLICIES = {row["政策名称"] for row in ROWS}


def _year(row: Row) -> str:
    return row["发布时间"].split("年")[0]


def _expected(keep: Callable[[Row], bool]) -> list[Row]:
    expected = [row for row in ROWS if keep(row)]
    assert expected, "the table holds rows for this filter"
    return expected


def _search(url: str, filters: Mapping[str, Any]) -> list[str]:
    body = {"query": "大模型相关政策", "top_k": 100, "filters": filters}
    response = httpx.post(f"{url}/search", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return [p["text"] for p in response.json()["passages"]]


def _ask(url: str, question: str, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "top_k": 3}
    if filters is not None:
        body["filters"] = filters
    response = httpx.post(f"{url}/ask", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _assert_lists_exactly(url: str, answer: Mapping[str, Any], expected: list[Row]) -> None:
    """Every expected policy named and cited by its own row; no other policy named."""
    assert not answer["refused"], answer["answer"]
    assert len(answer["citations"]) == len(expected)
    text = answer["answer"]
    quotes = {c["quote"]: c for c in answer["citations"]}
    for row in expected:
        assert row["政策名称"] in text, row["政策名称"]
        citation = quotes[row["line"]]
        line = next(line for line in text.splitlines() if row["政策名称"] in line)
        assert re.search(rf"\[{citation['id']}\]$", line), line
        document = httpx.get(f"{url}/documents/{citation['source']}", timeout=30).json()
        assert document["text"][citation["start"] : citation["end"]] == row["line"]
    others = POLICIES - {row["政策名称"] for row in expected}
    assert not [name for name in others if name in text]


def test_the_table_is_parsed() -> None:
    assert len(ROWS) == 24
    assert {"省市", "发布部门"} <= {key for row in ROWS for key in row}


GUANGDONG_2024 = {"region": "广东", "date_from": "2024", "date_to": "2024"}


def _guangdong_2024(row: Row) -> bool:
    return "广东" in row.get("省市", "") and _year(row) == "2024"


def test_search_under_region_and_year_returns_exactly_the_rows(live_server: str) -> None:
    expected = _expected(_guangdong_2024)
    assert sorted(_search(live_server, GUANGDONG_2024)) == sorted(r["line"] for r in expected)


@pytest.mark.parametrize("filters", [None, GUANGDONG_2024], ids=["implied", "explicit"])
def test_guangdong_2024_question_lists_every_policy(
    live_server: str, filters: Mapping[str, Any] | None
) -> None:
    answer = _ask(live_server, "2024年广东省发布了哪些大模型相关政策？", filters)
    _assert_lists_exactly(live_server, answer, _expected(_guangdong_2024))


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({"region": "北京"}, lambda row: "北京" in row.get("省市", "")),
        (
            {"region": "上海市", "date_from": "2024-08"},
            lambda row: (
                "上海" in row.get("省市", "") and row["发布时间"] in {"2024年9月", "2024年10月"}
            ),
        ),
        ({"department": "国务院"}, lambda row: "国务院" in row.get("发布部门", "")),
        ({"department": "工信部"}, lambda row: "工业和信息化部" in row.get("发布部门", "")),
        (
            {"date_from": "2024-01", "date_to": "2024-01"},
            lambda row: row["发布时间"] == "2024年1月",
        ),
    ],
    ids=["beijing", "shanghai-since-august", "state-council", "miit-alias", "january-2024"],
)
def test_other_filters_generalise(
    live_server: str, filters: Mapping[str, Any], keep: Callable[[Row], bool]
) -> None:
    expected = _expected(keep)
    lines = {r["line"] for r in expected}
    # Other chunks may pass a date-only filter through their document's date; rows may not.
    found = {text for text in _search(live_server, filters) if " | " in text}
    assert found == lines
    answer = _ask(live_server, "有哪些大模型相关政策？", filters)
    _assert_lists_exactly(live_server, answer, expected)


def test_place_and_year_in_the_question_alone_filter(live_server: str) -> None:
    answer = _ask(live_server, "2023年北京发布了哪些大模型政策？")
    beijing_2023 = _expected(lambda row: "北京" in row.get("省市", "") and _year(row) == "2023")
    _assert_lists_exactly(live_server, answer, beijing_2023)


def test_explicit_filter_is_never_dropped(live_server: str) -> None:
    # The question names 广东 but the filter says 北京: 北京 rows of 2024 there are none.
    answer = _ask(live_server, "2024年广东省发布了哪些大模型相关政策？", {"region": "北京"})
    assert not any(row["政策名称"] in answer["answer"] for row in ROWS if "广东" in row["line"])


def test_no_matching_rows_is_refused(live_server: str) -> None:
    answer = _ask(live_server, "2024年河南省发布了哪些大模型相关政策？")
    assert answer["refused"] and answer["citations"] == []


@pytest.mark.parametrize(
    ("filters", "status", "code"),
    [
        ({"date_from": "2024年"}, 422, "validation_error"),
        ({"date_to": "2024-13"}, 422, "validation_error"),
        ({"date_from": "2024-06", "date_to": "2024-05"}, 422, "validation_error"),
        ({"region": ""}, 422, "validation_error"),
        ({"province": "广东"}, 422, "validation_error"),
        ({"source": ["nope.txt"], "region": "广东"}, 400, "unknown_source"),
    ],
)
def test_bad_filters_are_rejected(
    live_server: str, filters: Mapping[str, Any], status: int, code: str
) -> None:
    for path, key in (("/ask", "question"), ("/search", "query")):
        body = {key: "大模型政策", "filters": filters}
        response = httpx.post(f"{live_server}{path}", json=body, timeout=30)
        assert response.status_code == status, response.text
        error = response.json()["error"]
        assert error["code"] == code and error["message"]
