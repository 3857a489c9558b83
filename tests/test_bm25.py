from __future__ import annotations

import math
from pathlib import Path

import pytest

from ingest.bm25 import BM25, Postings
from ingest.tokenize import Tokenizer


def test_scores_match_hand_computation() -> None:
    corpus = [["a", "b"], ["a", "a", "c"], ["d"]]
    bm25 = BM25.build(corpus)
    avg = 2.0
    idf_a = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    tf_part = 2 * 2.2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 3 / avg))
    scores = bm25.scores(["a"])
    assert scores[1] == pytest.approx(idf_a * tf_part, rel=1e-5)
    assert scores[2] == 0.0
    assert scores[0] > 0


def test_save_and_load_roundtrip(tmp_path: Path) -> None:
    bm25 = BM25.build([["大模型", "算力"], ["政务", "服务"]])
    bm25.segments[0].save(tmp_path)
    loaded = BM25([Postings.load(tmp_path)])
    assert loaded.scores(["算力"]).tolist() == bm25.scores(["算力"]).tolist()
    assert loaded.vocabulary == bm25.vocabulary


def test_unknown_terms_score_zero_and_have_max_idf() -> None:
    bm25 = BM25.build([["甲"], ["乙"]])
    assert bm25.scores(["丙"]).tolist() == [0.0, 0.0]
    assert bm25.term_idf("丙") > bm25.term_idf("甲")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("请问大模型有哪些政策？", {"大模型", "政策"}),
        ("算力券怎么申请", {"算力券"}),
        ("推动高效办成一件事", {"高效办成一件事"}),
        ("ＬＬＭ的计算能力", {"llm", "计算能力"}),
    ],
)
def test_tokenizer_keeps_domain_terms_and_drops_filler(text: str, expected: set[str]) -> None:
    tokens = Tokenizer().tokenize(text)
    assert expected <= set(tokens)
    assert not {"请问", "哪些", "怎么", "的", "？"} & set(tokens)
