from __future__ import annotations

import pytest

from ingest.text import clean, decode, normalize, sentence_spans


@pytest.mark.parametrize(
    "data",
    [
        "政务服务大模型".encode(),
        "\ufeff政务服务大模型".encode(),
        "政务服务大模型".encode("gbk"),
        "政务服务大模型".encode("gb18030"),
        "政务服务大模型".encode("utf-16"),
    ],
)
def test_decode_detects_encoding(data: bytes) -> None:
    assert decode(data) == "政务服务大模型"


def test_clean_unifies_line_ends() -> None:
    assert clean("甲\r\n乙\r丙\n") == "甲\n乙\n丙\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ＡＩ大模型１２３", "ai大模型123"), ("（算力）", "(算力)"), ("GPT-4o", "gpt-4o")],
)
def test_normalize_folds_width_and_case(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("第一句。第二句！第三句？", ["第一句。", "第二句！", "第三句？"]),
        ("他说：“好。”然后走了。", ["他说：“好。”", "然后走了。"]),
        ("标题\n\n正文一；正文二", ["标题", "正文一；", "正文二"]),
        ("  前后空白。  ", ["前后空白。"]),
        (
            "《卡拉OK.LIVE！‧台北‧我》是专辑。好！《甲》。",
            ["《卡拉OK.LIVE！‧台北‧我》是专辑。", "好！", "《甲》。"],
        ),
        ("《未闭合！后文。", ["《未闭合！", "后文。"]),
        ("没有句号的一行", ["没有句号的一行"]),
        ("", []),
    ],
)
def test_sentence_spans(text: str, sentences: list[str]) -> None:
    assert [text[a:b] for a, b in sentence_spans(text)] == sentences


def test_sentence_spans_respect_bounds() -> None:
    text = "前文。中间一句。后文。"
    spans = list(sentence_spans(text, 3, 8))
    assert [text[a:b] for a, b in spans] == ["中间一句。"]
