"""Answer behaviour that once went wrong, with the real model over the bundled reports."""

from __future__ import annotations

import pytest

from ingest.text import sentence_spans
from service.answer.compose import _attach_headings
from service.answer.qa import QA

pytestmark = pytest.mark.e2e


def test_a_sentence_the_reports_repeat_is_quoted_once(real_qa: QA) -> None:
    # 004 states Beijing's target twice, nearly word for word.
    result = real_qa.ask("北京到2025年人工智能产业规模要达到多少？", 5)
    assert not result.refused and "3000亿元" in result.answer
    assert result.answer.count("3000亿元") == 1 and len(result.citations) == 1


@pytest.mark.parametrize(
    "question",
    ["上海到2025年人工智能产业规模要达到多少？", "2024年广东省发布了哪些量子计算政策？"],
)
def test_sentences_about_other_places_do_not_answer(real_qa: QA, question: str) -> None:
    result = real_qa.ask(question, 5)
    assert all(place not in result.answer for place in ("北京", "山东", "湖北"))


def test_a_place_and_year_with_no_policy_is_refused(real_qa: QA) -> None:
    # No 2025 Guangdong policy in the reports; Beijing's (2023-2025年) plan must not do.
    assert real_qa.ask("2025年广东省发布了哪些大模型相关政策？", 5).refused


@pytest.mark.parametrize(
    ("question", "items"),
    [
        ("白皮书指出大模型落地面临哪些挑战？", ["供不应求", "高质量数据", "幻觉问题", "同质化"]),
        ("构建和运营智算集群需要重点关注哪四个性能？", ["有效性", "稳定性", "低碳性", "可用性"]),
    ],
)
def test_an_enumeration_is_answered_to_its_last_item(
    real_qa: QA, question: str, items: list[str]
) -> None:
    result = real_qa.ask(question, 5)
    assert all(item in result.answer for item in items), result.answer
    # Each item is its own cited sentence.
    assert len(result.citations) >= len(items)


def test_each_part_of_a_compound_question_is_answered_to_its_last_item(real_qa: QA) -> None:
    # Two asks, each of an enumeration; the second opens on a sentence that only
    # announces its items ("需重点关注四个核心性能"), numbered 1–4 after it.
    result = real_qa.ask(
        "白皮书指出大模型落地面临哪些挑战？构建和运营智算集群需要重点关注哪四个性能？", 5
    )
    assert result.intent == "multi"
    for item in ("供不应求", "幻觉问题", "同质化", "有效性", "稳定性", "低碳性", "可用性"):
        assert item in result.answer, result.answer
    assert len(result.citations) >= 8


def test_a_nearby_enumeration_of_something_else_is_not_followed(real_qa: QA) -> None:
    # 002 numbers its trends (一是…四是) right after its challenges; asked for the
    # challenges, the trends' later items are not appended.
    answer = real_qa.ask("中国AI大模型产业目前面临哪些主要挑战？", 5).answer
    assert "三是AI大模型将广泛开源" not in answer and "四是AI高性能" not in answer


def test_a_heading_at_a_chunk_end_is_answered_with_the_lines_under_it(real_qa: QA) -> None:
    # 001's slide lists each batch as a heading line, then its cities on the next line.
    answer = real_qa.ask("第一批国家人工智能创新应用先导区包括哪些地方？", 5).answer
    assert all(city in answer for city in ("浦东新区", "济南", "深圳"))
    assert "第二批" not in answer and "北京" not in answer  # another batch is another answer


def test_a_count_of_something_the_reports_do_not_count_is_refused(real_qa: QA) -> None:
    # The reports name Llama 3.1 405B but never its GPUs: a sentence with 405B and a
    # number ("三种参数规模") is not an answer to "多少块GPU".
    assert real_qa.ask("Llama 3.1 405B训练时用了多少块GPU？", 5).refused
    # …while a count the reports do give is answered (央企 = 中央企业).
    assert not real_qa.ask("国资委的AI专题推进会上有多少家央企签了倡议书？", 5).refused


def test_a_chunk_ending_on_thousands_of_heading_lines_reads_on_a_bounded_window() -> None:
    # A slide dump of short lines: reading on past a final heading stops within its window.
    text = "\n".join(f"项目{i}" for i in range(20000)) + "\n这是正文。"
    spans = list(sentence_spans(text, 0, 20))
    joined = _attach_headings(text, spans)
    assert joined and joined[-1][1] <= 20 + 8 * 40
