"""Pure helpers of the chat API: token estimates, stop/length cuts, stream pieces."""

from __future__ import annotations

import json
import re

import pytest

from service.api.chat_text import MAX_PIECE, cut, estimate_tokens, markers, pieces
from tests.conftest import QUESTIONS

ANSWERS = [
    "《关于推动未来产业创新发展的实施意见》（2024年1月，工业和信息化部等七部门）：加快突破GPU芯片、"
    "集群低时延互连网络、异构资源管理等技术,建设超大规模智算中心,满足大模型迭代训练和应用推理需求。[1]",
    "共找到2项：\n1. 《甲》：内容一。[1]\n2. 《乙》：内容二。[2]",
    "没有标点的一段很长很长很长很长很长很长很长很长很长很长很长很长的文字[12]接着写[3]",
    "知识库中没有找到能回答这个问题的内容。",
    "GPT-4可以处理多达128K个文本令牌。[1]",
    "",
]
ANSWERS += [json.loads(line)["answer"] for line in QUESTIONS.read_text("utf-8").splitlines()]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("", 0), ("大模型", 3), ("GPT-4 大模型", 6), ("128K个", 3), ("用了 2.2万 块", 7)],
)
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


@pytest.mark.parametrize("text", ANSWERS)
def test_pieces_concatenate_to_the_answer(text: str) -> None:
    parts = pieces(text)
    assert "".join(parts) == text
    assert all(parts)
    assert all(len(p) <= MAX_PIECE + 4 for p in parts)  # a marker may overhang


@pytest.mark.parametrize("text", ANSWERS)
def test_markers_are_never_split(text: str) -> None:
    for part in pieces(text):
        assert part.count("[") == part.count("]"), part
        assert not re.search(r"\[\d*$|^\d*\]", part)


def test_pieces_end_at_clauses() -> None:
    assert pieces("第一句。[1]第二句，还有。[2]") == ["第一句。[1]", "第二句，", "还有。[2]"]


def test_cut_before_the_first_stop_string() -> None:
    assert cut("甲乙丙丁", ["丙", "乙"], None).text == "甲"
    assert cut("甲乙丙丁", ["戊", ""], None).text == "甲乙丙丁"
    assert cut("甲乙丙丁", [], None).finish_reason == "stop"


def test_cut_at_max_tokens() -> None:
    result = cut("大模型 GPT-4 发布。[1]", [], 4)
    assert result.text == "大模型 GPT"
    assert result.finish_reason == "length"
    assert cut("大模型", [], 3).finish_reason == "stop"


def test_markers() -> None:
    assert markers("甲[1]乙[12]丙[x]") == {1, 12}
