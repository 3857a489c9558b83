"""Refusal calibration: choose the evidence threshold from answerable vs unanswerable scores.

The composer refuses when a question's evidence score is below the threshold, so the
outcome of every question only changes where the threshold crosses one of the
scores. Between two consecutive distinct scores lies a *plateau* on which every
refusal decision is the same. We keep the plateaus whose false-refusal rate (answerable
questions refused) is at most the cap, take those refusing the most unanswerable
questions, and of those the widest; the threshold is its midpoint, as far as possible
from the scores on either side, so a small drift in scores does not flip decisions.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.answer.threshold import CALIBRATION_FILE, read_calibration
from service.errors import CalibrationError

log = logging.getLogger(__name__)

MAX_FALSE_REFUSAL = 0.05
# Narrowest score gap a threshold may sit in (evidence scores are rounded to 1e-4).
MIN_WIDTH = 0.005


@dataclass(frozen=True)
class Plateau:
    """A range of thresholds (lo, hi] with identical decisions, and its figures."""

    lo: float
    hi: float
    false_refusal: float
    refusal_recall: float
    refusal_precision: float

    @property
    def threshold(self) -> float:
        """The midpoint: refuses exactly the scores <= lo."""
        return round((self.lo + self.hi) / 2, 6)

    @property
    def width(self) -> float:
        """How far apart the scores either side are."""
        return self.hi - self.lo


@dataclass(frozen=True)
class Calibration:
    """The chosen threshold and the refusal figures it gives on the question set."""

    refusal_threshold: float
    false_refusal: float
    refusal_recall: float
    refusal_precision: float
    questions: int
    answerable: int
    unanswerable: int
    plateau: tuple[float, float]
    max_false_refusal: float = MAX_FALSE_REFUSAL
    calibrated_at: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {**asdict(self), "plateau": list(self.plateau)}


def plateaus(answerable: Sequence[float], unanswerable: Sequence[float]) -> list[Plateau]:
    """Every threshold range in [0, 1] with constant decisions, lowest first."""
    bounds = sorted({0.0, 1.0, *answerable, *unanswerable})
    out = []
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        refused_ok = sum(1 for s in unanswerable if s <= lo)
        refused_bad = sum(1 for s in answerable if s <= lo)
        refused = refused_ok + refused_bad
        out.append(
            Plateau(
                lo=lo,
                hi=hi,
                false_refusal=_ratio(refused_bad, len(answerable)),
                refusal_recall=_ratio(refused_ok, len(unanswerable)),
                refusal_precision=_ratio(refused_ok, refused) if refused else 1.0,
            )
        )
    return out


def choose(
    answerable: Sequence[float],
    unanswerable: Sequence[float],
    max_false_refusal: float = MAX_FALSE_REFUSAL,
) -> Plateau:
    """The plateau of best refusal recall with false refusals <= the cap.

    Among those, the fewest false refusals wins, then the widest; plateaus narrower
    than MIN_WIDTH are set aside while wider ones exist, so the threshold never sits on
    a knife edge between two questions' scores.
    """
    if not answerable or not unanswerable:
        raise CalibrationError("calibration needs both answerable and unanswerable questions")
    feasible = [
        p for p in plateaus(answerable, unanswerable) if p.false_refusal <= max_false_refusal
    ]
    if not feasible:
        raise CalibrationError(
            f"no threshold keeps false refusals at or below {max_false_refusal:.0%}"
        )
    best = max(p.refusal_recall for p in feasible)
    top = [p for p in feasible if p.refusal_recall == best]
    stable = [p for p in top if p.width >= MIN_WIDTH] or top
    # On equal false refusals and width the lower plateau wins.
    return max(stable, key=lambda p: (-p.false_refusal, p.width, -p.lo))


def calibrate(
    answerable: Sequence[float],
    unanswerable: Sequence[float],
    max_false_refusal: float = MAX_FALSE_REFUSAL,
) -> Calibration:
    """Choose the threshold and report its figures, time-stamped now."""
    chosen = choose(answerable, unanswerable, max_false_refusal)
    return Calibration(
        refusal_threshold=chosen.threshold,
        false_refusal=chosen.false_refusal,
        refusal_recall=chosen.refusal_recall,
        refusal_precision=chosen.refusal_precision,
        questions=len(answerable) + len(unanswerable),
        answerable=len(answerable),
        unanswerable=len(unanswerable),
        plateau=(chosen.lo, chosen.hi),
        max_false_refusal=max_false_refusal,
        calibrated_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def calibrate_faq(paraphrases: Sequence[float], questions: Sequence[float]) -> dict[str, Any]:
    """The FAQ threshold: no other question matches, then as many paraphrases as possible.

    The same plateau search as refusal, with the roles set so that a wrong curated
    answer (a question matched to an entry it is not about) costs more than a miss,
    which still gets an answer from the reports.
    """
    if not paraphrases or not questions:
        raise CalibrationError("FAQ calibration needs entries with paraphrases, and questions")
    chosen = choose(paraphrases, questions, max_false_refusal=1.0)
    return {
        "faq_threshold": chosen.threshold,
        "faq": {
            "paraphrases": len(paraphrases),
            "questions": len(questions),
            "paraphrase_recall": round(1 - chosen.false_refusal, 4),
            "false_match": round(1 - chosen.refusal_recall, 4),
            "plateau": [chosen.lo, chosen.hi],
            "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def write_calibration(index_dir: Path, fields: dict[str, Any]) -> Path:
    """Merge fields into `calibration.json` in the index directory, atomically."""
    index_dir.mkdir(parents=True, exist_ok=True)
    path = index_dir / CALIBRATION_FILE
    merged = {**(read_calibration(path) or {}), **fields}
    tmp = path.with_name(f".{CALIBRATION_FILE}.tmp")
    tmp.write_text(json.dumps(merged, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _ratio(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0
