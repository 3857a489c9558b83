"""`--report DIR` output on the hand-made fixture: JSON, Markdown and readable PNG charts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.eval.evaluation import Outcome, judge, summary
from service.eval.report import markdown, md_table, write_report
from tests.test_evaluation import FIXTURE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path) -> None:
    """A real PNG that matplotlib reads back as a non-trivial image."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = imread(path)
    height, width = pixels.shape[:2]
    assert height >= 200 and width >= 300
    assert pixels.std() > 0.01  # not a blank canvas


@pytest.fixture
def runs() -> dict[str, list[Outcome]]:
    outcomes = [judge(q, r, seconds, relevant) for q, r, seconds, relevant in FIXTURE]
    return {"hybrid": outcomes, "bm25": outcomes[:5]}  # without q6


def test_report_files(tmp_path: Path, runs: dict[str, list[Outcome]]) -> None:
    summaries = {name: summary(o) for name, o in runs.items()}
    paths = write_report(tmp_path, runs, summaries, threshold=0.31, questions_file="set.jsonl")
    names = sorted(p.name for p in paths)
    assert names == ["by_type.png", "evidence.png", "metrics.png", "report.json", "report.md"]
    for png in tmp_path.glob("*.png"):
        check_png(png)
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["primary"] == "hybrid"
    assert report["threshold"] == 0.31
    assert report["calibration"]["refusal_threshold"] == 0.15
    assert report["configurations"]["hybrid"]["overall"]["hit@5"] == 0.75
    failed = {f["id"]: f for f in report["failures"]["hybrid"]}
    assert sorted(failed) == ["q2", "q3", "q6"]
    assert failed["q3"]["reasons"] == ["missed@5", "false_refusal"]
    assert [p["relevant"] for p in failed["q2"]["retrieved"]] == [True, False, True]
    assert failed["q2"]["retrieved"][0]["text"] == "一号证据在此"
    assert sorted(f["id"] for f in report["failures"]["bm25"]) == ["q2", "q3"]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "## Failures: hybrid (3)" in md
    assert "### q2 [multi] 问题q2" in md
    assert "1. ✓ `a.txt#1:x` 一号证据在此" in md
    assert "![metrics.png](metrics.png)" in md


def test_markdown_table_side_by_side() -> None:
    table = md_table({"hybrid": {"hit@1": 0.5, "mrr@10": 0.75}, "bm25": {"hit@1": 0.25}})
    assert table.splitlines() == [
        "| metric | hybrid | bm25 |",
        "|---|---|---|",
        "| hit@1 | 0.5 | 0.25 |",
        "| mrr@10 | 0.75 | – |",
    ]


def test_markdown_without_calibration(runs: dict[str, list[Outcome]]) -> None:
    answerable_only = {"dense": [o for o in runs["hybrid"] if o.question.answerable]}
    summaries = {"dense": summary(answerable_only["dense"])}
    assert summaries["dense"]["calibration"] is None
    report = {
        "questions": 4,
        "questions_file": "x.jsonl",
        "generated_at": "now",
        "threshold": None,
        "configurations": summaries,
        "failures": {"dense": []},
    }
    assert "| dense | – | – | – | – | – |" in markdown(report)
