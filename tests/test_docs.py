"""The README cannot drift from the code: settings and commands are documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import cli
from service.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_every_setting_is_documented(name: str) -> None:
    assert f"`ZHICE_{name.upper()}`" in README


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_is_documented(command: str) -> None:
    assert f"zhice {command}" in README


def test_help_and_imports_load_no_model() -> None:
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from service.cli import cli\n"
        "import service.api.app, service.answer.build, ingest.pipeline, ingest.store\n"
        "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
        "heavy = {'torch', 'sentence_transformers', 'faiss', 'transformers', 'jieba'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


def test_every_field_is_described() -> None:
    assert all(field.description for field in Settings.model_fields.values())
