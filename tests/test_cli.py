"""The CLI through click's runner: real model and index, one-line errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ingest.pipeline import ingest
from ingest.update import update
from service.cli import cli
from service.config import Settings
from tests.conftest import store_env
from tests.fakes import HashEmbedder


@pytest.fixture
def env(real_settings: Settings) -> dict[str, str]:
    return {
        "ZHICE_INDEX_DIR": str(real_settings.index_dir),
        "ZHICE_CORPUS_DIR": str(real_settings.corpus_dir),
        **store_env(real_settings),
    }


@pytest.mark.e2e
def test_ask_prints_answer_and_citations(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["ask", "哪份文件提出建设超大规模智算中心？"], env=env)
    assert result.exit_code == 0, result.output
    assert "关于推动未来产业创新发展的实施意见" in result.output
    assert "[1] 000_b09d076724004418.txt" in result.output


@pytest.mark.e2e
def test_search_json_lines(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["search", "算力券", "--top-k", "3", "--json"], env=env)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert any("算力券" in r["text"] for r in rows)


@pytest.mark.e2e
def test_ingest_is_a_no_op_when_nothing_changed(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["ingest"], env=env)
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_missing_index_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env = {"ZHICE_INDEX_DIR": str(tmp_path / "none")}
    result = CliRunner().invoke(cli, ["ask", "算力券"], env=env)
    assert result.exit_code == 1
    assert "zhice ingest" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_names_the_setting(tmp_path: Path) -> None:
    env = {"ZHICE_EMBEDDING_MODEL": str(tmp_path / "no-such-model")}
    result = CliRunner().invoke(cli, ["prepare-model"], env=env)
    assert result.exit_code == 1
    assert "ZHICE_EMBEDDING_MODEL" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args", [["ask", "   "], ["ask", "问", "--top-k", "0"], ["search", "x", "--retriever", "magic"]]
)
def test_bad_parameters_exit_2(args: list[str]) -> None:
    assert CliRunner().invoke(cli, args).exit_code == 2


def test_bad_setting_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["ask", "问"], env={"ZHICE_TOP_K": "0"})
    assert result.exit_code == 2


@pytest.mark.local_store("merging the local index's delta segment")
def test_merge_merges_the_live_changes_once(fake_settings: Settings) -> None:
    corpus, index = fake_settings.corpus_dir, fake_settings.index_dir
    ingest(corpus, index, "fake-hash", HashEmbedder, progress=False)
    update(corpus, index, "fake-hash", HashEmbedder(), "remove", "002_d31665734ab7f792.txt")
    env = {
        "ZHICE_INDEX_DIR": str(index),
        "ZHICE_CORPUS_DIR": str(corpus),
        "ZHICE_EMBEDDING_MODEL": "fake-hash",
    }
    merged = CliRunner().invoke(cli, ["merge"], env=env)
    assert merged.exit_code == 0, merged.output
    assert merged.output.startswith("merged 279 chunks into one segment (0 added")
    again = CliRunner().invoke(cli, ["merge"], env=env)
    assert again.exit_code == 0 and again.output.startswith("nothing merged")
