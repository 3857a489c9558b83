"""PNG charts of an evaluation (matplotlib's Agg canvas, imported only when drawing)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Rates in [0, 1] worth comparing at a glance; latencies have their own table.
RATE_METRICS = (
    "hit@1",
    "hit@5",
    "mrr@10",
    "ndcg@10",
    "evidence_recall@10",
    "keyword_accuracy",
    "citation_correct",
    "refusal_recall",
    "false_refusal",
)
TYPE_METRICS = ("hit@5", "mrr@10", "keyword_accuracy", "citation_correct", "refusal_recall")


def _figure(width: float, height: float) -> Any:
    """A pyplot-free figure on the Agg canvas (no global state, no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _grouped_bars(
    axes: Any,
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    legend: bool = True,
) -> None:
    """Bars for each series side by side within each group; missing values are gaps."""
    width = 0.8 / max(len(series), 1)
    for n, (name, values) in enumerate(series.items()):
        xs = [g + (n - (len(series) - 1) / 2) * width for g in range(len(groups))]
        axes.bar(xs, values, width, label=name)
    axes.set_xticks(range(len(groups)), groups, rotation=30, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    if legend:  # outside the plot, where it hides no bar
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))


def metrics_chart(path: Path, overall: Mapping[str, Mapping[str, float]]) -> Path:
    """Grouped bars: each rate metric, one bar per configuration."""
    groups = [m for m in RATE_METRICS if any(m in figures for figures in overall.values())]
    series = {
        name: [figures.get(m, float("nan")) for m in groups] for name, figures in overall.items()
    }
    figure = _figure(11, 4.5)
    _grouped_bars(figure.add_subplot(), groups, series, "Metrics per configuration")
    figure.savefig(path)
    return path


def types_chart(path: Path, by_type: Mapping[str, Mapping[str, Mapping[str, float]]]) -> Path:
    """One panel per configuration: question types as groups, a bar per metric."""
    figure = _figure(1.5 + 5 * max(len(by_type), 1), 4.5)
    for n, (name, types) in enumerate(by_type.items(), start=1):
        groups = list(types)
        series = {m: [types[t].get(m, float("nan")) for t in groups] for m in TYPE_METRICS}
        axes = figure.add_subplot(1, len(by_type), n)
        _grouped_bars(axes, groups, series, f"{name} by type", legend=n == len(by_type))
    figure.savefig(path)
    return path


def evidence_chart(
    path: Path,
    answerable: Sequence[float],
    unanswerable: Sequence[float],
    thresholds: Mapping[str, float],
    title: str = "Evidence scores",
) -> Path:
    """Overlaid histograms of evidence for answerable vs unanswerable, with threshold lines."""
    figure = _figure(8, 4.5)
    axes = figure.add_subplot()
    bins = [i / 40 for i in range(41)]
    axes.hist(answerable, bins=bins, alpha=0.6, label=f"answerable ({len(answerable)})")
    axes.hist(unanswerable, bins=bins, alpha=0.6, label=f"unanswerable ({len(unanswerable)})")
    for (name, value), style in zip(thresholds.items(), ("--", ":", "-."), strict=False):
        axes.axvline(value, color="black", linestyle=style, label=f"{name} {value:.3f}")
    axes.set_xlim(0, 1)
    axes.set_xlabel("evidence score (refused below the threshold)")
    axes.set_ylabel("questions")
    axes.set_title(title)
    axes.legend(fontsize="small", loc="upper center")
    figure.savefig(path)
    return path
