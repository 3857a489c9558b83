from __future__ import annotations

import math
from pathlib import Path

import numpy as np
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


def test_top_ranks_like_scores_among_alive_and_allowed_chunks() -> None:
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(30)]
    corpus = [list(rng.choice(words, size=rng.integers(1, 12))) for _ in range(400)]
    first, second = Postings.build(corpus[:300]), Postings.build(corpus[300:])
    alive = rng.random(400) > 0.2
    bm25 = BM25([first, second], alive)
    allowed = np.flatnonzero(rng.random(int(alive.sum())) > 0.5).astype(np.int64)
    query = ["w1", "w2", "w7", "unseen"]
    boosts = {"w7": 0.5}
    for where in (None, allowed):
        scores = bm25.scores(query, boosts)
        candidates = np.arange(len(scores)) if where is None else where
        expected = sorted((i for i in candidates if scores[i] > 0), key=lambda i: (-scores[i], i))
        ids, top = bm25.top(query, 10, boosts, where)
        assert ids.tolist() == expected[:10]
        assert top.tolist() == pytest.approx([scores[i] for i in expected[:10]])
    # a chunk's score counts only alive chunks in the statistics
    assert bm25.n_docs == int(alive.sum()) == len(bm25.scores(query))
