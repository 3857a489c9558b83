"""Schemathesis with every check against a real server: the OpenAPI contract holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.answer.build import with_index
from service.answer.qa import QA
from service.answer.store import load_store
from service.api.app import create_app
from service.config import Settings
from tests.conftest import private_copy, running

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Enough generated cases to reach every operation in each phase (about 1,500 requests,
# under a minute), fixed so that a failure reproduces.
EXAMPLES, SEED = 30, 1


def command(url: str, examples: int = EXAMPLES, seed: int = SEED) -> list[str]:
    """schemathesis with every check on every operation of the server at `url`."""
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(examples),
        "--seed",
        str(seed),
        "--no-color",
    ]


def test_every_check_passes_on_every_operation(
    real_settings: Settings, real_qa: QA, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kb = private_copy(real_settings, tmp_path, request)
    qa = with_index(real_qa, load_store(kb), kb)
    with running(create_app(kb, qa=qa)) as url:
        run = subprocess.run(
            command(url),
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # where it keeps its example database
        )
    summary = run.stdout[-3000:]
    assert run.returncode == 0, summary
    assert "failures" not in summary.splitlines()[-1], summary
