from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.answer.build import threshold
from service.config import Settings


def test_default_threshold_without_calibration(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path)
    default = Settings.model_fields["refusal_threshold"].default
    assert threshold(settings, "refusal_threshold") == default


def test_calibration_file_overrides_the_default(tmp_path: Path) -> None:
    (tmp_path / "calibration.json").write_text(json.dumps({"refusal_threshold": 0.42}))
    assert threshold(Settings(index_dir=tmp_path), "refusal_threshold") == 0.42


def test_environment_overrides_the_calibration_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "calibration.json").write_text(json.dumps({"refusal_threshold": 0.42}))
    monkeypatch.setenv("ZHICE_REFUSAL_THRESHOLD", "0.2")
    assert threshold(Settings(index_dir=tmp_path), "refusal_threshold") == 0.2


def test_faq_threshold_reads_its_own_key(tmp_path: Path) -> None:
    (tmp_path / "calibration.json").write_text(
        json.dumps({"refusal_threshold": 0.42, "faq_threshold": 0.93})
    )
    settings = Settings(index_dir=tmp_path)
    assert threshold(settings, "faq_threshold") == 0.93
    assert threshold(settings, "refusal_threshold") == 0.42
