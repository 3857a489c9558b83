"""`zhice eval` end to end: the real model and index, the CLI, the report and calibration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.answer.answerability import load_scorer
from service.answer.qa import QA
from service.answer.selection import CLUE_NAMES, load_selector
from service.answer.threshold import load_calibration
from service.cli import cli
from service.config import Settings
from service.eval.evaluation import read_questions, run, summary
from tests.conftest import QUESTIONS, store_env
from tests.test_report import check_png

pytestmark = pytest.mark.e2e


@pytest.fixture
def index_copy(real_settings: Settings, tmp_path: Path) -> Path:
    """A private copy of the session index, so calibration.json lands nowhere shared."""
    target = tmp_path / "index"
    shutil.copytree(real_settings.index_dir, target, symlinks=True)
    return target


def test_eval_report_and_calibration(real_settings: Settings, index_copy: Path) -> None:
    report_dir = index_copy.parent / "report"
    env = {
        "ZHICE_INDEX_DIR": str(index_copy),
        "ZHICE_CORPUS_DIR": str(real_settings.corpus_dir),
        **store_env(real_settings),
    }
    args = ["eval", str(QUESTIONS), "--retriever", "hybrid", "--report", str(report_dir)]
    done = CliRunner().invoke(cli, [*args, "--calibrate"], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.splitlines()[0].split() == ["metric", "hybrid"]
    assert "hybrid by question type" in done.stdout
    assert "calibrated" in done.stdout

    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    overall = report["configurations"]["hybrid"]["overall"]
    assert overall["questions"] == len(read_questions(QUESTIONS))
    assert overall["hit@5"] >= 0.97
    assert set(report["configurations"]["hybrid"]["by_type"]) >= {"fact", "unanswerable"}
    assert report["failures"]["hybrid"], "expected the report to list some failed questions"
    assert all(f["retrieved"] and f["reasons"] for f in report["failures"]["hybrid"])
    md = (report_dir / "report.md").read_text(encoding="utf-8")
    assert "| hit@5 |" in md and "## Failures: hybrid" in md
    for name in ("metrics.png", "by_type.png", "evidence.png"):
        check_png(report_dir / name)

    calibration = json.loads((index_copy / "calibration.json").read_text(encoding="utf-8"))
    assert calibration == report["calibration"] | {"calibrated_at": calibration["calibrated_at"]}
    assert calibration["false_refusal"] <= 0.05
    assert load_calibration(index_copy) == calibration["refusal_threshold"]


def test_eval_against_a_live_server_agrees_with_in_process(
    live_server: str, real_qa: QA, tmp_path: Path
) -> None:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    subset = [r for r in rows if r["type"] != "unanswerable"][:6]
    subset += [r for r in rows if r["type"] == "unanswerable"][:3]
    path = tmp_path / "subset.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in subset), "utf-8")
    done = CliRunner().invoke(cli, ["eval", str(path), "--url", live_server, "--json"])
    assert done.exit_code == 0, done.output
    remote = json.loads(done.stdout)["server"]["overall"]
    local = summary(run(real_qa, read_questions(path)))["overall"]
    assert remote["questions"] == 9
    same = {k: v for k, v in local.items() if not k.startswith("latency")}
    assert {k: remote[k] for k in same} == same


def test_eval_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.chdir(tmp_path)  # no eval/dev.jsonl and eval/test.jsonl here
    no_splits = runner.invoke(cli, ["eval"])
    assert no_splits.exit_code == 2 and "give question files" in no_splits.output
    url_with_bm25 = ["eval", str(QUESTIONS), "--url", "http://x", "--retriever", "bm25"]
    assert runner.invoke(cli, url_with_bm25).exit_code == 2
    cmrc_with_questions = ["eval", str(QUESTIONS), "--cmrc", str(QUESTIONS)]
    assert runner.invoke(cli, cmrc_with_questions).exit_code == 2


def test_faq_calibration_writes_a_threshold_no_question_reaches(
    real_settings: Settings, index_copy: Path
) -> None:
    faq = Path(__file__).resolve().parents[1] / "eval" / "faq.jsonl"
    env = {
        "ZHICE_INDEX_DIR": str(index_copy),
        "ZHICE_CORPUS_DIR": str(real_settings.corpus_dir),
        "ZHICE_FAQ_PATH": str(faq),
        **store_env(real_settings),
    }
    args = ["eval", str(QUESTIONS), "--retriever", "bm25", "--calibrate-faq"]
    done = CliRunner().invoke(cli, args, env=env)
    assert done.exit_code == 0, done.output
    assert "calibrated FAQ threshold" in done.stderr
    calibration = json.loads((index_copy / "calibration.json").read_text(encoding="utf-8"))
    figures = calibration["faq"]
    assert figures["questions"] == len(read_questions(QUESTIONS)) and figures["false_match"] == 0
    assert figures["paraphrase_recall"] >= 0.8
    lo, hi = figures["plateau"]
    assert lo < calibration["faq_threshold"] < hi
    assert load_calibration(index_copy, "faq_threshold") == calibration["faq_threshold"]


def test_eval_compares_splits_side_by_side(real_settings: Settings, tmp_path: Path) -> None:
    """Several question files: one column each, the gap of two, and a report per file."""
    rows = QUESTIONS.read_text(encoding="utf-8").splitlines()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(rows[:4]) + "\n", encoding="utf-8")
    second.write_text("\n".join(rows[4:7]) + "\n", encoding="utf-8")
    env = {
        "ZHICE_INDEX_DIR": str(real_settings.index_dir),
        "ZHICE_CORPUS_DIR": str(real_settings.corpus_dir),
        **store_env(real_settings),
    }
    args = ["eval", str(first), str(second), "--report", str(tmp_path / "r")]
    done = CliRunner().invoke(cli, args, env=env)
    assert done.exit_code == 0, done.output
    header, questions = done.stdout.splitlines()[:2]
    assert header.split() == ["metric", "a", "b", "a−b"]
    assert questions.split() == ["questions", "4", "3", "1"]
    for name in ("a", "b"):
        assert (tmp_path / "r" / name / "report.json").is_file()
    refused = CliRunner().invoke(cli, ["eval", str(first), str(second), "--calibrate"], env=env)
    assert refused.exit_code == 2 and "calibrate on the dev split alone" in refused.output


def test_fit_writes_parameters_the_service_can_load(
    real_settings: Settings, tmp_path: Path
) -> None:
    """`zhice fit` on a few dev questions (no CMRC): a parameters file the scorer reads."""
    rows = [r for r in QUESTIONS.read_text(encoding="utf-8").splitlines() if '"history"' not in r]
    unanswerable = [r for r in rows if '"type": "unanswerable"' in r]
    few = tmp_path / "few.jsonl"
    few.write_text("\n".join(rows[:24] + unanswerable[:6]) + "\n", encoding="utf-8")
    out, selection = tmp_path / "answerability.json", tmp_path / "selection.json"
    env = {
        "ZHICE_INDEX_DIR": str(real_settings.index_dir),
        "ZHICE_CORPUS_DIR": str(real_settings.corpus_dir),
        **store_env(real_settings),
    }
    args = ["fit", "--questions", str(few), "--cmrc-trial", str(tmp_path / "none.json")]
    args += ["--out", str(out), "--selection-out", str(selection)]
    done = CliRunner().invoke(cli, args, env=env)
    assert done.exit_code == 0, done.output
    assert load_selector(selection).names == CLUE_NAMES
    parameters = json.loads(out.read_text(encoding="utf-8"))
    examples = parameters["fit"]["examples"]
    assert examples["answerable"] == 24 and examples["unanswerable"] == 6
    assert sum(v for k, v in examples.items() if k not in {"answerable", "unanswerable"}) > 0
    assert load_scorer(out).threshold == parameters["threshold"]
    held_out = CliRunner().invoke(cli, ["fit", "--questions", "eval/test.jsonl"], env=env)
    assert held_out.exit_code == 2 and "held out" in held_out.output
