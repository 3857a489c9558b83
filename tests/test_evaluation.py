"""The metric code against a hand-made fixture whose figures are worked out by hand.

Six questions, answered by hand-built `Result`s (the real dataclasses, no mocks):

| q  | type         | relevant ranks | in index | refused | keywords | citation | evidence |
|----|--------------|----------------|----------|---------|----------|----------|----------|
| q1 | fact         | 2              | 1        | no      | ok       | ok       | 0.8      |
| q2 | multi        | 1, 3 (both)    | 3        | no      | missing  | wrong    | 0.6      |
| q3 | number       | —              | 1        | yes     | —        | —        | 0.2      |
| q4 | table        | 4              | 2        | no      | ok       | ok       | 0.9      |
| q5 | unanswerable | —              | 0        | yes     | —        | —        | 0.1      |
| q6 | unanswerable | —              | 0        | no      | —        | —        | 0.5      |

"In index" is how many passages of the whole index hold an evidence string (the
nDCG ideal). Latencies are 10, 20, … 60 ms.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ingest.types import Chunk, Citation, Hit
from service.answer.qa import Result
from service.answer.threshold import load_calibration
from service.eval.calibration import (
    CalibrationError,
    calibrate,
    calibrate_faq,
    choose,
    write_calibration,
)
from service.eval.cmrc import document_rank, retrieval_metrics
from service.eval.cmrc_metrics import contains, exact_match, f1, segments, strip_markers
from service.eval.evaluation import (
    Outcome,
    Question,
    by_type,
    judge,
    metrics,
    percentile,
    read_questions,
    relevant_counts,
    summary,
)

REFUSAL = "知识库中没有找到能回答这个问题的内容。"


def _hit(text: str, n: int, source: str = "a.txt") -> Hit:
    chunk = Chunk(f"{source}#{n}:x", source, "A", 0, len(text), text)
    return Hit(chunk, score=1.0 / n)


def _result(texts: list[str], answer: str, quotes: list[str], evidence: float) -> Result:
    refused = answer == REFUSAL
    citations = [Citation(i, "a.txt", "A", 0, len(q), q) for i, q in enumerate(quotes, start=1)]
    hits = [_hit(t, n) for n, t in enumerate(texts, start=1)]
    return Result(answer, refused, citations, hits, "q", "fact", evidence)


def _q(qid: str, qtype: str, evidence: tuple[str, ...], keywords: tuple[str, ...]) -> Question:
    return Question(qid, f"问题{qid}", qtype, ("a.txt",), evidence, "", keywords)


FIXTURE = [
    # (question, result, seconds, relevant passages in the index)
    (
        _q("q1", "fact", ("甲乙",), ("丙",)),
        _result(["无关一", "这里含甲乙两字", "无关二"], "丙丁[1]", ["这里含甲乙两字"], 0.8),
        0.010,
        1,
    ),
    (
        _q("q2", "multi", ("一号证据", "二号证据"), ("甲", "乙")),
        _result(["一号证据在此", "无关", "二号证据在此"], "只有甲[1]", ["无关的话"], 0.6),
        0.020,
        3,
    ),
    (
        _q("q3", "number", ("三号",), ("三",)),
        _result(["无关一", "无关二", "无关三"], REFUSAL, [], 0.2),
        0.030,
        1,
    ),
    (
        _q("q4", "table", ("四号",), ("四",)),
        # The quote is a substring of the evidence string: that counts as correct too.
        _result(["无", "无关", "无关的", "四号"], "四号是四[1]", ["四"], 0.9),
        0.040,
        2,
    ),
    (_q("q5", "unanswerable", (), ()), _result(["无关"], REFUSAL, [], 0.1), 0.050, 0),
    (_q("q6", "unanswerable", (), ()), _result(["无关"], "乱答[1]", ["无关"], 0.5), 0.060, 0),
]


@pytest.fixture
def outcomes() -> list[Outcome]:
    return [judge(q, r, seconds, relevant) for q, r, seconds, relevant in FIXTURE]


def _ndcg_by_hand() -> float:
    q1 = (1 / math.log2(3)) / 1
    q2 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    q4 = (1 / math.log2(5)) / (1 + 1 / math.log2(3))
    return (q1 + q2 + 0 + q4) / 4


def test_judge_ranks_and_flags(outcomes: list[Outcome]) -> None:
    assert [o.ranks for o in outcomes] == [[2], [1, 3], [], [4], [], []]
    assert [o.found for o in outcomes] == [1, 2, 0, 1, 0, 0]
    assert [o.keywords_ok for o in outcomes[:4]] == [True, False, False, True]
    assert [o.citation_ok for o in outcomes[:4]] == [True, False, False, True]
    assert [o.failures for o in outcomes] == [
        [],
        ["keywords", "citation"],
        ["missed@5", "false_refusal"],
        [],
        [],
        ["not_refused"],
    ]


def test_metrics_match_the_hand_computation(outcomes: list[Outcome]) -> None:
    assert metrics(outcomes) == {
        "questions": 6,
        "hit@1": 0.25,
        "hit@3": 0.5,
        "hit@5": 0.75,
        "hit@10": 0.75,
        "mrr@10": 0.4375,  # (1/2 + 1 + 0 + 1/4) / 4
        "ndcg@10": round(_ndcg_by_hand(), 4),
        "evidence_recall@10": 0.75,  # (1 + 2/2 + 0 + 1) / 4
        "keyword_accuracy": 0.5,  # q1, q4
        "citation_correct": 0.6667,  # q1, q4 of the answered q1, q2, q4
        "false_refusal": 0.25,  # q3
        "extra_sentence_rate": 0.0,  # q1, the one answered fact, cites one span
        "refusal_recall": 0.5,  # q5 of q5, q6
        "refusal_precision": 0.5,  # q5 of the refused q3, q5
        "latency_p50_ms": 30.0,
        "latency_p95_ms": 60.0,
        "latency_p99_ms": 60.0,
    }
    assert _ndcg_by_hand() == pytest.approx(0.39973, abs=1e-5)


def test_answer_length_and_unrelated_extra_sentences() -> None:
    def asked(qtype: str, gold: str, answer: str, quotes: list[str]) -> Outcome:
        q = Question("q", "问题", qtype, ("a.txt",), ("甲乙丙",), gold, ("丁",))
        return judge(q, _result(["甲乙丙丁"], answer, quotes, 0.9), 0.01)

    done = [
        # Twice the gold's length; a second citation holding the keyword is related.
        asked("fact", "甲乙丙丁", "甲乙丙丁戊己庚辛[1][2]", ["甲乙丙", "说到丁"]),
        # The gold's length; the second span holds neither evidence nor keyword.
        asked("number", "甲乙丙丁", "甲乙[1]无关[2]", ["甲乙丙", "无关的话"]),
        # A table answer may cite several spans: its length counts, not its extra spans.
        asked("table", "甲乙丙丁", "甲[1]无[2]", ["甲乙丙", "无关的话"]),
        asked("fact", "甲乙丙丁", REFUSAL, []),  # refused: neither figure
    ]
    figures = metrics(done)
    assert figures["answer_length_ratio"] == 1.0  # median of 2, 1 and 0.5
    assert figures["extra_sentence_rate"] == 0.5  # the number question of the two facts


def test_ranks_past_ten_do_not_count() -> None:
    q = _q("q", "fact", ("目标",), ())
    texts = [f"无关{n}" for n in range(1, 11)] + ["目标"]
    o = judge(q, _result(texts, "答", ["无关"], 0.5), 0.01, 1)
    figures = metrics([o])
    assert (o.ranks, o.found) == ([11], 0)
    assert (figures["hit@10"], figures["mrr@10"], figures["ndcg@10"]) == (0.0, 0.0, 0.0)


def test_ndcg_ideal_falls_back_to_what_was_seen_when_the_index_is_unknown() -> None:
    # Over HTTP the relevant count is unknown (0): two relevant passages retrieved
    # for one evidence string make an ideal of two, not one (which would give 1.0).
    q = _q("q", "fact", ("目标",), ())
    o = judge(q, _result(["无", "目标一", "目标二"], "答", [], 0.5), 0.01)
    expected = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics([o])["ndcg@10"] == round(expected, 4)


def test_per_type_breakdown(outcomes: list[Outcome]) -> None:
    types = by_type(outcomes)
    assert list(types) == ["fact", "table", "number", "multi", "unanswerable"]
    assert types["multi"]["ndcg@10"] == round(1.5 / (1.5 + 1 / math.log2(3)), 4)
    assert types["number"]["false_refusal"] == 1.0
    assert types["unanswerable"]["refusal_recall"] == 0.5
    assert types["unanswerable"]["refusal_precision"] == 1.0
    assert "hit@1" not in types["unanswerable"]


def test_relevant_counts() -> None:
    qs = [_q("a", "fact", ("甲", "乙"), ()), _q("b", "fact", ("丁",), ())]
    assert relevant_counts(qs, ["甲", "乙丙", "甲乙", "丙"]) == {"a": 3, "b": 0}


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [([10, 20, 30, 40], 50, 20), ([10, 20, 30, 40], 51, 30), ([5], 99, 5), ([3, 1, 2], 100, 3)],
)
def test_nearest_rank_percentile(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


def test_calibration_of_the_fixture(outcomes: list[Outcome]) -> None:
    # Four answerable questions: one refusal would be 25% > 5%, so none may be
    # refused (threshold <= 0.2); (0.1, 0.2] refuses q5 alone.
    calibration = summary(outcomes)["calibration"]
    assert calibration is not None
    assert calibration["refusal_threshold"] == 0.15
    assert calibration["plateau"] == [0.1, 0.2]
    assert calibration["false_refusal"] == 0.0
    assert calibration["refusal_recall"] == 0.5
    assert calibration["refusal_precision"] == 1.0
    assert (calibration["answerable"], calibration["unanswerable"]) == (4, 2)


def test_calibration_prefers_fewer_false_refusals_then_width() -> None:
    answerable = [0.3] + [0.8] * 19  # one false refusal is 1/20 = 5%: allowed
    unanswerable = [0.1, 0.2]
    # (0.2, 0.3] and (0.3, 0.8] both refuse every unanswerable question; the first
    # refuses no answerable one, so it wins although the second is wider.
    chosen = calibrate(answerable, unanswerable)
    assert chosen.refusal_threshold == 0.25
    assert chosen.plateau == (0.2, 0.3)
    assert (chosen.false_refusal, chosen.refusal_recall) == (0.0, 1.0)
    assert chosen.refusal_precision == 1.0


def test_calibration_avoids_knife_edge_plateaus() -> None:
    answerable = [0.3001] + [0.8] * 19
    unanswerable = [0.1, 0.3]
    # (0.3, 0.3001] would refuse no answerable question but is 0.0001 wide; the
    # stable plateau (0.3001, 0.8] costs one false refusal (5%, allowed).
    chosen = choose(answerable, unanswerable)
    assert (chosen.lo, chosen.hi) == (0.3001, 0.8)
    assert choose(answerable, unanswerable, max_false_refusal=0.04).hi == 0.3001


def test_calibration_needs_both_kinds_and_a_feasible_point() -> None:
    with pytest.raises(CalibrationError):
        calibrate([0.5, 0.6], [])
    with pytest.raises(CalibrationError, match="false refusals"):
        calibrate([0.0], [0.5])  # an answerable score of 0 is refused at any threshold


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    assert load_calibration(tmp_path) is None
    path = write_calibration(tmp_path / "index", calibrate([0.8, 0.9], [0.1, 0.2]).as_dict())
    data = json.loads(path.read_text(encoding="utf-8"))
    assert path.name == "calibration.json"
    assert {"refusal_threshold", "false_refusal", "refusal_recall", "questions"} <= set(data)
    assert data["calibrated_at"]
    assert load_calibration(tmp_path / "index") == 0.5
    assert load_calibration(tmp_path / "index", "faq_threshold") is None


def test_faq_calibration_merges_and_never_matches_other_questions(tmp_path: Path) -> None:
    write_calibration(tmp_path, calibrate([0.8, 0.9], [0.1, 0.2]).as_dict())
    # Held-out paraphrases score 0.90–0.99; other questions up to 0.93: the threshold
    # sits above 0.93, giving up the 0.90 paraphrase rather than matching a question.
    chosen = calibrate_faq([0.9, 0.95, 0.97, 0.99], [0.5, 0.8, 0.93])
    assert chosen["faq_threshold"] == 0.94
    assert chosen["faq"]["false_match"] == 0.0 and chosen["faq"]["paraphrase_recall"] == 0.75
    write_calibration(tmp_path, chosen)
    assert load_calibration(tmp_path, "faq_threshold") == 0.94
    assert load_calibration(tmp_path) == 0.5


@pytest.mark.parametrize("content", ["not json", '{"refusal_threshold": 2}', "{}", "[]"])
def test_bad_calibration_files_are_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / "calibration.json").write_text(content, encoding="utf-8")
    assert load_calibration(tmp_path) is None


def test_read_questions_with_history(tmp_path: Path) -> None:
    row = {
        "id": 7,
        "question": "那它呢？",
        "type": "fact",
        "source": ["a.txt", "b.txt"],
        "evidence": ["甲"],
        "answer": "乙",
        "keywords": ["乙"],
        "history": [{"role": "user", "content": "甲是什么？"}],
    }
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(row, ensure_ascii=False) + "\n\n", encoding="utf-8")
    (q,) = read_questions(path)
    assert (q.id, q.sources, q.history) == ("7", ("a.txt", "b.txt"), (("user", "甲是什么？"),))


# CMRC: document-level ranks and the official EM/F1.


def test_document_rank_counts_each_document_once() -> None:
    hits = [_hit("x", n, source) for n, source in enumerate("aabcbd", start=1)]
    assert [document_rank(hits, s) for s in "abcdx"] == [1, 2, 3, 4, None]


def test_retrieval_metrics_by_hand() -> None:
    assert retrieval_metrics([1, 3, None, 7, 12]) == {
        "R@1": 0.2,
        "R@5": 0.4,
        "R@10": 0.6,
        "MRR@10": round((1 + 1 / 3 + 1 / 7) / 5, 4),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("光荣和ω-force", ["光", "荣", "和", "ωforce"]),  # '-' dropped without ending the run
        ("第3.5版", ["第", "3.5", "版"]),
        ("Released in 2008, by Koei。", ["released", "in", "2008", ",", "by", "koei"]),
        ("《战国无双3》", ["战", "国", "无", "双", "3"]),
    ],
)
def test_mixed_segmentation(text: str, expected: list[str]) -> None:
    assert segments(text) == expected


def test_cmrc_em_and_f1_by_hand() -> None:
    assert strip_markers("甲乙[1]丙[12]") == "甲乙丙"
    assert exact_match("光荣和ω-force", ["光荣和ω-force"]) == 1.0
    assert exact_match("《光荣》", ["光荣"]) == 1.0
    assert exact_match("光荣公司", ["光荣"]) == 0.0
    # Longest common run 光荣 (2): precision 2/7, recall 2/4, F1 4/11.
    assert f1("本作由光荣开发", ["光荣和ω-force"]) == pytest.approx(4 / 11)
    # 5 tokens, one shared: precision 1/5, recall 1, F1 1/3.
    assert f1("released in 2008 by Koei", ["2008"]) == pytest.approx(1 / 3)
    # The best gold answer counts; runs must be contiguous (甲丙 is not a run of 甲乙丙).
    assert f1("村雨城", ["任天堂游戏谜之村雨城", "村雨城"]) == 1.0
    assert f1("甲x丙", ["甲乙丙"]) == pytest.approx(2 * (1 / 3) * (1 / 3) / (2 / 3))
    assert f1("", ["甲"]) == 0.0
    assert contains("本作由光荣和ω-force开发。", ["光荣和ω-force"]) == 1.0
    assert contains("本作由光荣开发", ["光荣和ω-force"]) == 0.0
