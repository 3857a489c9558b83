"""Metadata and filters: date normalisation, extraction, matching rules, filtered lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from ingest.chunking import chunk_document
from ingest.loaders import load_document
from ingest.metadata import document_metadata, normalize_date
from ingest.types import Chunk, Document
from service.answer.filters import (
    Filter,
    FilterIndex,
    department_matches,
    effective_metadata,
    implied_filter,
    period,
    region_matches,
)
from service.answer.qa import QA
from service.api.schemas.core import Filters

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
PLACES = ("北京", "上海", "广东", "宁夏", "临港")


@pytest.mark.parametrize(
    ("value", "iso"),
    [
        ("2024年1月", "2024-01"),
        ("2023年12月", "2023-12"),
        ("2024年1月5日", "2024-01-05"),
        ("2024年1月5号", "2024-01-05"),
        ("2023.11", "2023-11"),
        ("2024-01-05", "2024-01-05"),
        ("2024/3/28", "2024-03-28"),
        ("2024-04-28 04:47:31", "2024-04-28"),
        ("２０２４年１月", "2024-01"),
        ("2024年", "2024"),
        ("2024", "2024"),
        ("2024年底", "2024"),
        (" 2024年5月 ", "2024-05"),
    ],
)
def test_normalize_date_reads_the_reports_formats(value: str, iso: str) -> None:
    assert normalize_date(value) == iso


@pytest.mark.parametrize(
    "value",
    ["2023-2024年", "2024年1月至3月", "2024年13月", "2024-02-30", "20245", "约2024年", "", "今年"],
)
def test_normalize_date_refuses_ranges_and_impossible_dates(value: str) -> None:
    assert normalize_date(value) is None


def test_every_row_date_in_the_corpus_normalises() -> None:
    dates = [
        chunk.metadata["date"]
        for path in sorted(CORPUS.glob("*.txt"))
        for chunk in chunk_document(load_document(path))
        if "date" in chunk.metadata
    ]
    assert len(dates) >= 30
    assert [d for d in dates if normalize_date(d) is None] == []


@pytest.mark.parametrize(
    ("text", "title", "expected"),
    [
        (
            "2024中国AI大模型产业发展报告发布\n\n"
            "发布时间:2024-04-28 04:47:31 来源: sp20240428\n正文",
            "2024中国AI大模型产业发展报告发布",
            {"date": "2024-04-28"},
        ),
        (
            "人工智能技术、产业和政策态势\n\n中国信通院 徐志发\n\n2024.12\n\n目录",
            "态势",
            {"date": "2024-12"},
        ),
        (
            "通知\n发布日期：2023年11月29日\n来源：工业和信息化部\n",
            "通知",
            {
                "date": "2023-11-29",
                "department": "工业和信息化部",
            },
        ),
        (
            "广东省关于人工智能赋能千行百业的若干措施\n正文。",
            "广东省关于人工智能赋能千行百业的若干措施",
            {"region": "广东省"},
        ),
        ("标题\n正文", "2024年宁夏回族自治区全面推进方案", {"region": "宁夏回族自治区"}),
        # A place later in the title is what the report is about, not where it applies.
        ("标题\n正文", "我国10亿+参数大模型供给方已达254家 北京约占一半", {}),
        # A bare year line is as likely a figure as the publication year.
        ("标题\n2023\n正文", "标题", {}),
        # A date in the body is another document's date.
        ("标题\n" + "正文。\n" * 10 + "发布时间：2020-01-01\n", "标题", {}),
        ("标题\n正文。\n资料来源:观研天下整理\n", "标题", {}),
    ],
)
def test_document_metadata_states_only_what_the_text_says(
    text: str, title: str, expected: dict[str, str]
) -> None:
    assert document_metadata(text, title) == expected


def test_period_spans_the_whole_prefix() -> None:
    assert period("2024") == ("2024-01-01", "2024-12-31")
    assert period("2024-02") == ("2024-02-01", "2024-02-31")
    assert period("2024-02-29") == ("2024-02-29", "2024-02-29")


@pytest.mark.parametrize(
    ("wanted", "value", "ok"),
    [
        ("广东", "广东省", True),
        ("广东省", "广东省", True),
        ("广东省", "广东", True),
        ("宁夏", "宁夏回族自治区", True),
        ("宁夏回族自治区", "宁夏回族自治区", True),
        ("北京市", "北京市", True),
        ("广州", "广东省", False),
        ("广东", "", False),
        ("广东", None, False),
    ],
)
def test_region_matching(wanted: str, value: str | None, ok: bool) -> None:
    assert region_matches(wanted, value) is ok


@pytest.mark.parametrize(
    ("wanted", "value", "ok"),
    [
        ("国务院", "国务院", True),
        ("工信部", "工业和信息化部等七部门", True),
        ("工业和信息化部", "工信部", True),
        ("发改委", "国家发展改革委等部门", True),
        ("国家发改委", "工业和信息化部、国家发展和改革委员会等部门", True),
        ("应急管理部", "国家矿山安监局、应急管理部等部门", True),
        ("财政部", "国务院", False),
        ("国务院", None, False),
    ],
)
def test_department_matching(wanted: str, value: str | None, ok: bool) -> None:
    assert department_matches(wanted, value) is ok


@pytest.mark.parametrize(
    ("where", "metadata", "ok"),
    [
        (Filter(date_from="2024", date_to="2024-12"), {"date": "2024年1月"}, True),
        (Filter(date_from="2024", date_to="2024"), {"date": "2023年12月"}, False),
        (Filter(date_from="2024-01"), {"date": "2024年1月5日"}, True),
        (Filter(date_to="2023"), {"date": "2024年1月"}, False),
        # A chunk dated only by year is not known to be inside half a year.
        (Filter(date_from="2024-06", date_to="2024-12"), {"date": "2024年"}, False),
        (Filter(date_from="2024"), {"date": "2023-2024年"}, False),
        (Filter(date_from="2024"), {}, False),
        (Filter(region="广东", date_from="2024"), {"region": "广东省", "date": "2024年5月"}, True),
        (Filter(region="广东", date_from="2024"), {"region": "广东省", "date": "2023年5月"}, False),
        (Filter(department="国务院"), {"region": "北京市"}, False),
        (Filter(sources=("a.txt",)), {}, True),
    ],
)
def test_filter_matches_every_criterion(where: Filter, metadata: dict[str, str], ok: bool) -> None:
    assert where.matches(metadata) is ok


def _chunk(source: str, n: int, metadata: dict[str, str] | None = None) -> Chunk:
    kind = "table_row" if metadata else "text"
    return Chunk(f"{source}#{n}", source, "t", 0, 1, "x", kind, "", metadata or {})


def _document(source: str, metadata: dict[str, str]) -> Document:
    return Document(source, "t", "x", "sha", metadata)


def test_chunk_metadata_comes_first_and_the_document_fills_gaps() -> None:
    doc = _document("a.txt", {"date": "2024-04-28", "department": "人民网"})
    row = _chunk("a.txt", 0, {"date": "2023年5月", "region": "北京市"})
    assert effective_metadata(row, doc) == {
        "department": "人民网",
        "region": "北京市",
        "date": "2023年5月",
    }
    assert effective_metadata(_chunk("a.txt", 1), None) == {}


def test_filter_index_allows_exactly_the_matching_chunks() -> None:
    chunks = [
        _chunk("a.txt", 0),
        _chunk("a.txt", 1, {"date": "2024年5月", "region": "广东省"}),
        _chunk("a.txt", 2, {"date": "2023年5月", "region": "广东省"}),
        _chunk("b.txt", 3),
        _chunk("b.txt", 4, {"date": "2024年7月", "region": "上海市"}),
    ]
    documents = {"b.txt": _document("b.txt", {"region": "广东", "date": "2024-03"})}
    index = FilterIndex(chunks, documents)
    assert index.allowed(None) is None
    assert index.allowed(Filter()) is None
    where = Filter(region="广东", date_from="2024", date_to="2024")
    allowed = index.allowed(where)
    assert allowed is not None and allowed.tolist() == [1, 3]
    assert index.allowed(where) is allowed  # cached
    assert not allowed.flags.writeable
    only_b = index.allowed(Filter(sources=("b.txt",), date_from="2024-07"))
    assert only_b is not None and only_b.tolist() == [4]
    none = index.allowed(Filter(department="国务院"))
    assert none is not None and none.dtype == np.int64 and none.size == 0


def test_explicit_criteria_win_over_implied_ones() -> None:
    implied = Filter(region="广东", date_from="2024", date_to="2024")
    assert Filter().or_else(implied) == implied
    explicit = Filter(sources=("a.txt",), region="北京", date_from="2023")
    assert explicit.or_else(implied) == Filter(
        sources=("a.txt",), region="北京", date_from="2023", date_to=None
    )
    assert Filter(department="国务院").or_else(implied) == Filter(
        department="国务院", region="广东", date_from="2024", date_to="2024"
    )


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        (
            "2024年广东省发布了哪些大模型相关政策？",
            Filter(region="广东", date_from="2024", date_to="2024"),
        ),
        (
            "上海市2024年5月出台了哪些政策？",
            Filter(region="上海", date_from="2024-05", date_to="2024-05"),
        ),
        ("广东省发布了哪些大模型相关政策？", None),
        ("2024年发布了哪些大模型相关政策？", None),
        ("2023年和2024年广东省发布了哪些政策？", None),
        ("2024年上海临港有哪些智算中心？", None),
    ],
)
def test_implied_filter_needs_one_place_and_one_date(
    question: str, expected: Filter | None
) -> None:
    assert implied_filter(question, PLACES) == expected


@pytest.mark.parametrize(
    "payload",
    [
        {"date_from": "2024年"},
        {"date_from": "2024-1"},
        {"date_to": "2024-02-30"},
        {"date_to": "2024-05-01 10:00"},
        {"date_from": "2024-06", "date_to": "2024-05-31"},
        {"region": ""},
        {"department": "  "},
        {"region": "北京", "city": "北京"},
    ],
)
def test_filters_schema_rejects_bad_values(payload: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Filters.model_validate(payload)


def test_filters_schema_accepts_iso_prefixes() -> None:
    filters = Filters.model_validate(
        {"region": " 广东 ", "date_from": "2024", "date_to": "2024-12-31"}
    )
    assert (filters.region, filters.date_from, filters.date_to) == ("广东", "2024", "2024-12-31")
    assert Filters.model_validate({"date_from": "2024-05", "date_to": "2024-05"}).date_to


def test_filtered_search_returns_only_matching_chunks(fake_qa: QA) -> None:
    hits, _ = fake_qa.search("大模型政策", 50, Filter(region="上海", date_from="2024"))
    assert len(hits) == 3
    assert all(h.chunk.metadata["region"] == "上海市" for h in hits)


def test_list_question_names_every_filtered_row(fake_qa: QA) -> None:
    result = fake_qa.ask("2024年广东省发布了哪些大模型相关政策？", 1)
    assert not result.refused and result.intent == "list"
    assert len(result.citations) == 2
    for n, citation in enumerate(result.citations, start=1):
        assert citation.quote.startswith("2024年5月 | 广东省 | ")
        assert f"[{n}]" in result.answer
    assert "低空经济" in result.answer and "赋能千行百业" in result.answer


def test_list_rows_keep_to_the_question_topic(fake_qa: QA) -> None:
    result = fake_qa.ask("2024年上海有哪些算力相关政策？", 5)
    assert [c.quote.split(" | ")[2] for c in result.citations] == [
        "优化上海市融资信用服务平台建设 提升中小微企业融资便利水平实施方案"
    ]
