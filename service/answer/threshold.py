"""Thresholds in force: a setting, else the index's calibration.json, else the default.

`zhice eval --calibrate` writes the file (service.eval.calibration); this module only
reads it, so answering never imports the evaluation tooling.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from service.config import Settings

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
Threshold = Literal["refusal_threshold", "faq_threshold"]


def threshold(settings: Settings, name: Threshold) -> float | None:
    """ZHICE_<NAME> if set, else the index's calibration.json, else the default."""
    default: float | None = getattr(settings, name)
    if name in settings.model_fields_set:
        return default
    calibration = load_calibration(settings.index_dir, name)
    if calibration is None:
        return default
    log.info("%s %.4f from %s", name, calibration, settings.index_dir)
    return calibration


def load_calibration(index_dir: Path, name: Threshold = "refusal_threshold") -> float | None:
    """A calibrated threshold of an index directory, or None if there is none."""
    path = index_dir / CALIBRATION_FILE
    value = (read_calibration(path) or {}).get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        log.warning("ignoring calibration %s: %s %r not in [0, 1]", path, name, value)
        return None
    return float(value)


def read_calibration(path: Path) -> dict[str, Any] | None:
    """The calibration file as a JSON object, or None if missing or unreadable."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable calibration %s: %s", path, exc)
        return None
    if not isinstance(value, dict):
        log.warning("ignoring calibration %s: not a JSON object", path)
        return None
    return value
