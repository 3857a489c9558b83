"""`zhice eval --report DIR`: report.json, report.md and PNG charts of one evaluation run."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from service.eval.evaluation import Outcome

# Passages listed per failed question in report.md (report.json keeps all ten).
_MD_PASSAGES = 5
_MD_CHARS = 120
_REASONS = (
    "Failure reasons: `missed@5` no passage holding an evidence string in the top 5; "
    "`false_refusal` an answerable question refused; `keywords` gold keywords missing from "
    "the answer; `citation` no citation quotes an evidence string; `not_refused` an "
    "unanswerable question answered. ✓ marks a retrieved passage holding an evidence string."
)


def primary(names: Sequence[str]) -> str:
    """The configuration the service runs (hybrid) when present, else the first."""
    return "hybrid" if "hybrid" in names else names[0]


def failure(o: Outcome) -> dict[str, Any]:
    """A failed question with what was retrieved and answered."""
    q = o.question
    return {
        "id": q.id,
        "type": q.type,
        "question": q.question,
        "reasons": o.failures,
        "expected": q.answer,
        "keywords": list(q.keywords),
        "evidence_strings": list(q.evidence),
        "sources": list(q.sources),
        "answer": o.answer,
        "refused": o.refused,
        "evidence": o.evidence,
        "first_relevant_rank": o.ranks[0] if o.ranks else None,
        "citations": o.quotes,
        "retrieved": [
            {"rank": n, "chunk_id": cid, "relevant": n in o.ranks, "text": text}
            for n, (cid, text) in enumerate(zip(o.retrieved, o.texts, strict=False), start=1)
        ],
    }


def build(
    runs: Mapping[str, Sequence[Outcome]],
    summaries: Mapping[str, Mapping[str, Any]],
    *,
    threshold: float | None,
    questions_file: str,
) -> dict[str, Any]:
    """The report.json document."""
    main = primary(list(runs))
    return {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "questions_file": questions_file,
        "questions": len(next(iter(runs.values()), [])),
        "threshold": threshold,
        "primary": main,
        "configurations": dict(summaries),
        "calibration": summaries[main].get("calibration"),
        "failures": {
            name: [failure(o) for o in outcomes if o.failures] for name, outcomes in runs.items()
        },
    }


def write_report(
    directory: Path,
    runs: Mapping[str, Sequence[Outcome]],
    summaries: Mapping[str, Mapping[str, Any]],
    *,
    threshold: float | None,
    questions_file: str,
) -> list[Path]:
    """Write report.json, report.md and the charts into directory; return the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    report = build(runs, summaries, threshold=threshold, questions_file=questions_file)
    paths = _charts(directory, runs[report["primary"]], report)
    report["charts"] = [p.name for p in paths]
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    md_path = directory / "report.md"
    md_path.write_text(markdown(report), encoding="utf-8")
    return [json_path, md_path, *paths]


def _charts(directory: Path, main: Sequence[Outcome], report: Mapping[str, Any]) -> list[Path]:
    """The three PNGs; evidence scores are those of the primary configuration."""
    from service.eval import charts

    configs: Mapping[str, Mapping[str, Any]] = report["configurations"]
    lines = {}
    if report["threshold"] is not None:
        lines["threshold in force"] = float(report["threshold"])
    if report["calibration"]:
        lines["calibrated"] = float(report["calibration"]["refusal_threshold"])
    return [
        charts.metrics_chart(
            directory / "metrics.png", {n: c["overall"] for n, c in configs.items()}
        ),
        charts.types_chart(
            directory / "by_type.png", {n: c["by_type"] for n, c in configs.items()}
        ),
        charts.evidence_chart(
            directory / "evidence.png",
            [o.evidence for o in main if o.question.answerable],
            [o.evidence for o in main if not o.question.answerable],
            lines,
            title=f"Evidence scores ({report['primary']})",
        ),
    ]


def markdown(report: Mapping[str, Any]) -> str:
    """report.md: tables first, then charts, then every failure with what was retrieved."""
    configs: Mapping[str, Mapping[str, Any]] = report["configurations"]
    out = [
        "# zhice evaluation report",
        "",
        f"{report['questions']} questions from `{report['questions_file']}`, "
        f"generated {report['generated_at']}; refusal threshold in force: "
        f"{report['threshold']}.",
        "",
        "## Metrics",
        "",
        md_table({n: c["overall"] for n, c in configs.items()}),
        "",
    ]
    for name, summary in configs.items():
        out += [f"### {name} by question type", "", md_table(summary["by_type"]), ""]
    out += ["## Refusal calibration", "", *_calibration_lines(configs), ""]
    out += ["## Charts", ""] + [f"![{c}]({c})" for c in report.get("charts", [])] + [""]
    out += [_REASONS, ""]
    for name, failures in report["failures"].items():
        out += [f"## Failures: {name} ({len(failures)})", ""]
        out += [line for f in failures for line in _failure_lines(f)]
    return "\n".join(out) + "\n"


def md_table(columns: Mapping[str, Mapping[str, float]]) -> str:
    """Metrics as rows and columns side by side, as a Markdown table."""
    names = list(columns)
    metrics = list(dict.fromkeys(m for figures in columns.values() for m in figures))
    rows = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in metrics:
        cells = [_cell(columns[n].get(metric)) for n in names]
        rows.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _calibration_lines(configs: Mapping[str, Mapping[str, Any]]) -> list[str]:
    rows = [
        "| configuration | threshold | false refusal | refusal recall | refusal precision "
        "| plateau |",
        "|---|---|---|---|---|---|",
    ]
    for name, summary in configs.items():
        c = summary.get("calibration")
        if not c:
            rows.append(f"| {name} | – | – | – | – | – |")
            continue
        lo, hi = c["plateau"]
        rows.append(
            f"| {name} | {c['refusal_threshold']:.4f} | {c['false_refusal']:.4f} "
            f"| {c['refusal_recall']:.4f} | {c['refusal_precision']:.4f} | ({lo:.4f}, {hi:.4f}] |"
        )
    return rows


def _failure_lines(f: Mapping[str, Any]) -> list[str]:
    answer = " ".join(str(f["answer"]).split())[:200]
    lines = [
        f"### {f['id']} [{f['type']}] {f['question']}",
        "",
        f"- failed: {', '.join(f['reasons'])}; evidence score {f['evidence']:.4f}; "
        f"first relevant rank: {f['first_relevant_rank'] or '—'}",
        f"- expected: {f['expected']}",
        f"- answered{' (refused)' if f['refused'] else ''}: {answer}",
        "- retrieved:",
    ]
    for p in f["retrieved"][:_MD_PASSAGES]:
        text = " ".join(str(p["text"]).split())[:_MD_CHARS]
        mark = "✓" if p["relevant"] else "✗"
        lines.append(f"  {p['rank']}. {mark} `{p['chunk_id']}` {text}")
    return [*lines, ""]
