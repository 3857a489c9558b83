"""Multi-part questions split into the asks they join (service.answer.parts)."""

from __future__ import annotations

import pytest

from ingest.tokenize import Tokenizer
from service.answer.parts import split_parts


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        # Two questions in one.
        (
            "文心一言是什么时候备案的？2024年5月月活多少？",
            ["文心一言是什么时候备案的", "2024年5月月活多少"],
        ),
        # Two asking clauses: the later one leans on the first's subject.
        (
            "文心一言是哪年发布的，由多少个部门发布？",
            ["文心一言是哪年发布的", "文心一言由多少个部门发布"],
        ),
        # 分别 over places: one part per place, the year shared.
        (
            "湖北和北京到2026年的人工智能产业规模目标分别是多少？",
            [
                "湖北到2026年的人工智能产业规模目标分别是多少？",
                "北京到2026年的人工智能产业规模目标分别是多少？",
            ],
        ),
        # 各 over two things joined by 和: the sides widen to the shared head word.
        (
            "北京通用大模型和行业大模型的厂商各有多少家？",
            ["北京通用大模型的厂商各有多少家？", "北京行业大模型的厂商各有多少家？"],
        ),
        # Sides of one word each.
        ("训练和推理分别需要多少算力？", ["训练分别需要多少算力？", "推理分别需要多少算力？"]),
    ],
)
def test_compound_questions_split(question: str, parts: list[str], tokenizer: Tokenizer) -> None:
    assert [p.text for p in split_parts(question, tokenizer)] == parts


@pytest.mark.parametrize(
    "question",
    [
        "国务院哪份文件提出用大模型改进政务线上客服？",  # one ask
        "大模型发展的“一横一纵”两条路径分别指什么？",  # 分别 with nothing joined by 和
        "训练和推理需要多少算力？",  # joined, but no 分别/各: one ask about both
        "各地对大模型和算力有什么支持？",  # 各 before the 和: not over its sides
    ],
)
def test_single_asks_stay_whole(question: str, tokenizer: Tokenizer) -> None:
    assert split_parts(question, tokenizer) == []
