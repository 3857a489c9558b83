from __future__ import annotations

from pathlib import Path

import pytest

from ingest.chunking import ChunkerParams, chunk_document
from ingest.loaders import load_document
from ingest.types import Document

CORPUS = Path(__file__).resolve().parents[1] / "corpus"

POLICY_TABLE = (
    "我国大模型行业相关政策\n"
    "2023-2024年我国大模型行业部分相关政策情况\n"
    "发布时间 | 发布部门 | 政策名称 | 主要内容 |\n"
    "2024年1月 | 国务院 | 关于进一步优化政务服务的指导意见 | 探索应用自然语言大模型等技术。 |\n"
    "2024年4月 | 国家矿山安监局 | 关于矿山智能化的指导意见 | 加快矿山大模型的算法优化。 |\n"
    "资料来源:观研天下整理\n"
)


def _doc(text: str) -> Document:
    return Document(source="t.txt", title="t", text=text, sha256="x")


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.name)
def test_every_chunk_reproduces_its_source_span(path: Path) -> None:
    doc = load_document(path)
    chunks = chunk_document(doc)
    assert chunks
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text.strip() == chunk.text


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.name)
def test_prose_chunks_stay_within_size(path: Path) -> None:
    params = ChunkerParams()
    for chunk in chunk_document(load_document(path), params):
        if chunk.kind == "text":
            assert len(chunk.text) <= params.max_chars + 2 * params.heading_max_chars


def test_table_rows_become_records_with_caption_and_fields() -> None:
    rows = [c for c in chunk_document(_doc(POLICY_TABLE)) if c.kind == "table_row"]
    assert len(rows) == 2
    first = rows[0]
    assert first.text.startswith("2024年1月 | 国务院")
    assert first.context == "2023-2024年我国大模型行业部分相关政策情况"
    assert dict(first.metadata) == {
        "date": "2024年1月",
        "department": "国务院",
        "policy": "关于进一步优化政务服务的指导意见",
        "content": "探索应用自然语言大模型等技术。",
    }
    assert "2024年1月 国务院《关于进一步优化政务服务的指导意见》：探索应用" in first.search_text


def test_tab_table_fills_merged_cells_down() -> None:
    text = "基准\nCategory\tBenchmark\tScore\nCode\tHumanEval\t72.6\n\tMBPP\t72.8\n"
    rows = [c for c in chunk_document(_doc(text)) if c.kind == "table_row"]
    assert [dict(r.metadata) for r in rows] == [
        {"Category": "Code", "Benchmark": "HumanEval", "Score": "72.6"},
        {"Category": "Code", "Benchmark": "MBPP", "Score": "72.8"},
    ]


def test_headings_are_context_of_following_prose() -> None:
    body = "算力是大模型发展的基础。" * 20
    chunks = chunk_document(_doc(f"算力券政策\n{body}\n数据要素\n{body}"))
    assert any(c.context == "算力券政策" for c in chunks)
    assert chunks[-1].context == "数据要素" or chunks[-1].text.startswith("数据要素")


def test_long_sentence_is_cut_at_clause_breaks() -> None:
    sentence = "，".join(["大模型产业发展迅速"] * 80) + "。"
    chunks = chunk_document(_doc(sentence), ChunkerParams(max_chars=200))
    assert len(chunks) > 1
    assert all(len(c.text) <= 200 for c in chunks)


def test_chunk_ids_are_stable_and_content_addressed() -> None:
    a = chunk_document(_doc(POLICY_TABLE))
    b = chunk_document(_doc(POLICY_TABLE))
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert len({c.chunk_id for c in a}) == len(a)


def test_two_line_table_header_is_merged() -> None:
    text = (
        "大模型算力需求测算\n"
        "模型\t参数\t训练阶段\t\t推理阶段\n"
        "\t\t算力\t电费(万元/天)\t耗时(天)\n"
        "文心一言\t2.6E+11\t5.17E+09\t121.24\t149\n"
    )
    rows = [c for c in chunk_document(_doc(text)) if c.kind == "table_row"]
    assert [dict(r.metadata) for r in rows] == [
        {
            "模型": "文心一言",
            "参数": "2.6E+11",
            "算力": "5.17E+09",
            "电费(万元/天)": "121.24",
            "耗时(天)": "149",
        }
    ]


def test_a_lone_pipe_line_stays_prose() -> None:
    text = "前肛鳗是一种鱼类。\n辐鳍鱼纲|鲈形目|鲈亚目|笛鲷科\n分布于西太平洋。"
    chunks = chunk_document(_doc(text))
    assert chunks and all(c.kind == "text" for c in chunks)
    assert "鲈形目" in " ".join(c.text for c in chunks)
