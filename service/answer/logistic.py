"""A logistic model over standardised, named features: the form of every fitted model here.

`zhice fit` (service.eval.fit) learns the weights; the read path only evaluates them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Logistic:
    """P(y = 1 | x) = σ(intercept + Σ weight · (x − mean) / scale)."""

    names: tuple[str, ...]
    weights: Mapping[str, float]
    intercept: float
    means: Mapping[str, float]
    scales: Mapping[str, float]

    def probability(self, values: Sequence[float]) -> float:
        """The probability for feature values in `names` order, rounded to 1e-4."""
        z = self.intercept
        for name, value in zip(self.names, values, strict=True):
            z += self.weights[name] * (value - self.means[name]) / self.scales[name]
        return round(1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z)))), 4)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], names: Sequence[str]) -> Logistic:
        """Read fitted parameters; every feature must have a weight, a mean and a scale."""
        for part in ("weights", "means", "scales"):
            missing = set(names) - set(data[part])
            if missing:
                raise ValueError(f"model parameters lack features in {part}: {sorted(missing)}")
        return cls(
            names=tuple(names),
            weights={n: float(data["weights"][n]) for n in names},
            intercept=float(data["intercept"]),
            means={n: float(data["means"][n]) for n in names},
            scales={n: float(data["scales"][n]) or 1.0 for n in names},
        )


def read_parameters(name: str, path: Path | None = None) -> dict[str, Any]:
    """A parameters file: `path`, or the one shipped in service/answer/data/."""
    if path is not None:
        text = path.read_text("utf-8")
    else:
        text = resources.files("service.answer").joinpath("data", name).read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
