"""CMRC 2018 sample: open-domain retrieval over real Wikipedia paragraphs (real model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.eval.cmrc import corpus_for, load_cmrc, sample

pytestmark = pytest.mark.e2e

CMRC = Path(__file__).resolve().parents[2] / "shared/benchmarks/cmrc2018/cmrc2018_dev.json"
QUESTIONS = 40
# The sampled questions' own paragraphs plus distractors: enough to make retrieval
# a real choice, few enough to embed in about a minute.
PARAGRAPHS = 100


@pytest.fixture(scope="module")
def cmrc_path() -> Path:
    if not CMRC.is_file():
        pytest.skip(f"CMRC 2018 dev set not found at {CMRC}")
    return CMRC


def test_sample_and_corpus_are_deterministic(cmrc_path: Path) -> None:
    cmrc = load_cmrc(cmrc_path)
    assert (len(cmrc.paragraphs), len(cmrc.questions)) == (848, 3219)
    first, second = sample(cmrc.questions, QUESTIONS), sample(cmrc.questions, QUESTIONS)
    assert first == second and len(first) == QUESTIONS
    corpus = corpus_for(cmrc, first, PARAGRAPHS)
    assert len(corpus) == PARAGRAPHS
    assert {q.paragraph for q in first} <= set(corpus)
    assert corpus == corpus_for(cmrc, first, PARAGRAPHS)


def test_cmrc_sample_retrieval(cmrc_path: Path, tmp_path: Path) -> None:
    args = ["eval", "--cmrc", str(cmrc_path), "--cmrc-sample", str(QUESTIONS)]
    args += ["--cmrc-paragraphs", str(PARAGRAPHS), "--json", "--report", str(tmp_path)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["questions"] == QUESTIONS
    assert result["index"]["paragraphs"] == PARAGRAPHS
    retrieval = result["retrieval"]
    assert set(retrieval) == {"hybrid", "hybrid-rrf", "dense", "bm25"}
    assert retrieval["hybrid"]["R@5"] >= 0.9
    assert retrieval["hybrid"]["R@1"] >= 0.85
    answers = result["answers"]
    assert 0 <= answers["EM"] <= answers["F1"] <= 1
    assert answers["contains_gold"] > 0.3  # whole sentences: they often hold the span
    report = json.loads((tmp_path / "cmrc.json").read_text(encoding="utf-8"))
    assert all(m["ranks"]["hybrid"] != 1 for m in report["misses"])
