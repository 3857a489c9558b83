"""`zhice eval`: question sets, calibration and CMRC 2018 over the answering pipeline."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from service.cli.base import cli, errors_to_exit
from service.config import Settings

# The bundled question sets: dev for tuning and fitting, test held out (never tuned on).
DEFAULT_SPLITS = (Path("eval/dev.jsonl"), Path("eval/test.jsonl"))

if TYPE_CHECKING:
    from ingest.embedding import Embedder
    from service.answer.retrieval import Mode
    from service.eval.evaluation import Outcome


@cli.command("eval")
@click.argument("questions", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--retriever",
    "retrievers",
    type=click.Choice(["hybrid", "dense", "bm25"]),
    multiple=True,
    help="Configurations to compare side by side (default: all three).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write report.json, report.md and PNG charts into this directory.",
)
@click.option("--url", help="Evaluate a running server (POST URL/ask) instead of in-process.")
@click.option(
    "--calibrate",
    is_flag=True,
    help="Choose the refusal threshold from the set; write INDEX_DIR/calibration.json.",
)
@click.option(
    "--calibrate-faq",
    is_flag=True,
    help="Choose the FAQ match threshold from ZHICE_FAQ_PATH's paraphrases (held out) and "
    "the set's questions (which must not match); write INDEX_DIR/calibration.json.",
)
@click.option(
    "--cmrc",
    "cmrc_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Benchmark retrieval and answers on a CMRC 2018 (SQuAD-format) JSON file.",
)
@click.option("--cmrc-sample", type=click.IntRange(1), help="Only N CMRC questions (seeded).")
@click.option(
    "--cmrc-paragraphs",
    type=click.IntRange(1),
    help="Index only the sampled questions' paragraphs plus distractors, M in all.",
)
@click.option(
    "--cmrc-workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the CMRC corpus and index here, reused when current (default: temporary).",
)
@click.pass_obj
@errors_to_exit
def evaluate(
    settings: Settings,
    questions: tuple[Path, ...],
    retrievers: tuple[str, ...],
    as_json: bool,
    report_dir: Path | None,
    url: str | None,
    calibrate: bool,
    calibrate_faq: bool,
    cmrc_path: Path | None,
    cmrc_sample: int | None,
    cmrc_paragraphs: int | None,
    cmrc_workdir: Path | None,
) -> None:
    """Measure quality on question sets (JSONL), or on CMRC 2018 with --cmrc.

    With no QUESTIONS, eval/dev.jsonl and eval/test.jsonl side by side, with their gap.
    """
    if cmrc_path is not None:
        if questions or url or calibrate or calibrate_faq or retrievers:
            raise click.UsageError("--cmrc takes no QUESTIONS, --url, --calibrate* or --retriever")
        options = {"questions": cmrc_sample, "paragraphs": cmrc_paragraphs, "workdir": cmrc_workdir}
        _eval_cmrc(settings, cmrc_path, options, as_json, report_dir)
        return
    if not questions:
        questions = tuple(p for p in DEFAULT_SPLITS if p.is_file())
        if len(questions) != len(DEFAULT_SPLITS):
            raise click.UsageError("give question files FILE.jsonl … (or --cmrc PATH)")
    if len(questions) > 1:
        if calibrate or calibrate_faq or set(retrievers) - {"hybrid"}:
            raise click.UsageError(
                "several QUESTIONS are compared on hybrid retrieval without calibrating: "
                "calibrate on the dev split alone (zhice eval --calibrate eval/dev.jsonl)"
            )
        _eval_splits(settings, questions, url, as_json, report_dir)
        return
    (question_file,) = questions
    if url and set(retrievers) - {"hybrid"}:
        raise click.UsageError("--url evaluates the server's own hybrid retrieval only")
    modes = retrievers or ("hybrid", "dense", "bm25")
    if calibrate and "hybrid" not in modes:
        modes = ("hybrid", *modes)
    # The model loaded for FAQ calibration serves the evaluation too.
    embedder = _calibrate_faq(settings, question_file) if calibrate_faq else None
    (runs,), threshold = _eval_runs(settings, questions, modes, url, embedder)
    _eval_output(settings, runs, threshold, question_file, as_json, report_dir, calibrate)


def _eval_splits(
    settings: Settings,
    questions: tuple[Path, ...],
    url: str | None,
    as_json: bool,
    report_dir: Path | None,
) -> None:
    """Hybrid figures of each question file side by side; the gap when there are two."""
    from service.eval.evaluation import summary
    from service.eval.report import write_report

    all_runs, threshold = _eval_runs(settings, questions, ("hybrid",), url)
    names = [p.stem for p in questions]
    summaries = {
        n: summary(next(iter(runs.values()))) for n, runs in zip(names, all_runs, strict=True)
    }
    if as_json:
        click.echo(json.dumps(summaries, ensure_ascii=False, indent=1))
    else:
        columns = {n: s["overall"] for n, s in summaries.items()}
        if len(names) == 2:
            first, second = (columns[n] for n in names)
            gap = {m: round(first[m] - second[m], 4) for m in first if m in second}
            columns[f"{names[0]}−{names[1]}"] = gap
        click.echo(_table(columns))
        click.echo(f"\nrefusal threshold in force {threshold}")
    if report_dir is not None:
        for name, path, runs in zip(names, questions, all_runs, strict=True):
            paths = write_report(
                report_dir / name,
                runs,
                {m: summary(o) for m, o in runs.items()},
                threshold=threshold,
                questions_file=str(path),
            )
            click.echo(f"report: {', '.join(str(p) for p in paths)}", err=True)


def _eval_runs(
    settings: Settings,
    questions: tuple[Path, ...],
    modes: tuple[str, ...],
    url: str | None,
    embedder: Embedder | None = None,
) -> tuple[list[dict[str, list[Outcome]]], float | None]:
    """For each question file, outcomes per configuration; and the refusal threshold."""
    from service.eval.evaluation import read_questions, relevant_counts, run, run_with

    sets = [read_questions(path) for path in questions]
    if url:
        from service.eval.client import RemoteAsker

        asker = RemoteAsker(url)
        out = []
        try:
            texts = asker.passage_texts()
            for items in sets:
                relevant = relevant_counts(items, texts) if texts is not None else None
                with _progress(len(items), "server") as bar:
                    out.append({"server": run_with(asker, items, lambda: bar.update(1), relevant)})
        finally:
            asker.close()
        return out, asker.threshold
    from service.answer.build import build_qa

    qa = build_qa(settings, embedder)
    out = []
    for items in sets:
        runs = {}
        for mode in modes:
            with _progress(len(items), mode) as bar:
                runs[mode] = run(qa, items, cast("Mode", mode), on_progress=lambda: bar.update(1))
        out.append(runs)
    return out, qa.composer.threshold


def _eval_output(
    settings: Settings,
    runs: dict[str, list[Outcome]],
    threshold: float | None,
    questions: Path,
    as_json: bool,
    report_dir: Path | None,
    calibrate: bool,
) -> None:
    """Print the tables (or JSON), write the calibration and the report."""
    from service.eval.evaluation import summary
    from service.eval.report import primary, write_report

    summaries = {name: summary(outcomes) for name, outcomes in runs.items()}
    main = primary(list(runs))
    if as_json:
        click.echo(json.dumps(summaries, ensure_ascii=False, indent=1))
    else:
        click.echo(_table({name: s["overall"] for name, s in summaries.items()}))
        click.echo(f"\n{main} by question type")
        click.echo(_table(summaries[main]["by_type"]))
        click.echo(_calibration_line(summaries[main].get("calibration"), threshold))
    if calibrate:
        _write_calibration(settings, runs[main], main)
    if report_dir is not None:
        paths = write_report(
            report_dir, runs, summaries, threshold=threshold, questions_file=str(questions)
        )
        click.echo(f"report: {', '.join(str(p) for p in paths)}", err=True)


def _calibration_line(calibration: dict[str, Any] | None, threshold: float | None) -> str:
    if not calibration:
        return "\nno refusal calibration (needs answerable and unanswerable questions)"
    c = calibration
    return (
        f"\nrefusal threshold in force {threshold}; calibrated {c['refusal_threshold']:.4f} "
        f"(false refusal {c['false_refusal']:.4f}, refusal recall {c['refusal_recall']:.4f}, "
        f"precision {c['refusal_precision']:.4f})"
    )


def _write_calibration(settings: Settings, outcomes: list[Outcome], name: str) -> None:
    from service.eval.calibration import write_calibration
    from service.eval.evaluation import calibration

    chosen = calibration(outcomes)
    if chosen is None:
        raise click.ClickException(
            "cannot calibrate: the set needs answerable and unanswerable questions, and a "
            "threshold with at most 5% false refusals"
        )
    path = write_calibration(settings.index_dir, chosen.as_dict())
    click.echo(
        f"calibrated on {name}: refusal threshold {chosen.refusal_threshold:.4f} → {path} "
        "(ZHICE_REFUSAL_THRESHOLD overrides it)",
        err=True,
    )


def _calibrate_faq(settings: Settings, questions: Path) -> Embedder:
    """Calibrate the FAQ threshold; return the model it loaded, for the evaluation."""
    from ingest.tokenize import Tokenizer
    from service.answer.build import embedder_for
    from service.answer.faq import FAQ
    from service.eval.calibration import calibrate_faq, write_calibration
    from service.eval.evaluation import read_questions

    if not settings.faq_path.is_file():
        raise click.UsageError(f"--calibrate-faq: no FAQ file {settings.faq_path} (ZHICE_FAQ_PATH)")
    embedder = embedder_for(settings)
    faq = FAQ(settings.faq_path, embedder, settings.faq_threshold, Tokenizer().anchors)
    paraphrases, others = faq.scores([q.question for q in read_questions(questions)])
    chosen = calibrate_faq(paraphrases, others)
    path = write_calibration(settings.index_dir, chosen)
    figures = chosen["faq"]
    click.echo(
        f"calibrated FAQ threshold {chosen['faq_threshold']:.4f} → {path} "
        f"(held-out paraphrases matched {figures['paraphrase_recall']:.4f} of "
        f"{figures['paraphrases']}, questions falsely matched {figures['false_match']:.4f} "
        f"of {figures['questions']}; ZHICE_FAQ_THRESHOLD overrides it)",
        err=True,
    )
    return embedder


def _eval_cmrc(
    settings: Settings,
    path: Path,
    options: dict[str, Any],
    as_json: bool,
    report_dir: Path | None,
) -> None:
    """Index the CMRC paragraphs, ask every question, print the figures."""
    import time

    from service.eval import cmrc

    with cmrc.open_bench(path, settings, **options) as bench:
        began = time.perf_counter()
        with _progress(len(bench.questions), "cmrc") as bar:
            outcomes = cmrc.run(bench, on_progress=lambda: bar.update(1))
        seconds = time.perf_counter() - began
    result = {
        **cmrc.summarise(outcomes),
        "fusion": settings.fusion,
        "index": bench.build,
        "query_seconds": round(seconds, 1),
    }
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        full = {**result, "misses": cmrc.misses(outcomes)}
        out = report_dir / "cmrc.json"
        out.write_text(json.dumps(full, ensure_ascii=False, indent=1), encoding="utf-8")
        click.echo(f"report: {out}", err=True)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        _print_cmrc(result)


def _print_cmrc(result: dict[str, Any]) -> None:
    """Retrieval per configuration, answer scores, and where the time went."""
    click.echo(_table(result["retrieval"]))
    click.echo("")
    click.echo(_table({"answers": result["answers"]}))
    build = result["index"]
    click.echo(
        f"\n{result['questions']} questions over {build['paragraphs']} paragraphs "
        f"({build['chunks']} chunks, {build['embedded']} embedded in {build['index_seconds']} s, "
        f"model load {build['model_load_seconds']} s); questions took {result['query_seconds']} s"
    )


def _progress(length: int, label: str) -> Any:
    """A progress bar on stderr, so stdout stays clean for tables and JSON."""
    return click.progressbar(length=length, label=f"{label:>6}", file=sys.stderr)


def _table(columns: dict[str, dict[str, float]]) -> str:
    """Metrics as rows, configurations as columns."""
    names = list(columns)
    metrics = list(dict.fromkeys(m for figures in columns.values() for m in figures))
    width = max(10, *(len(n) + 2 for n in names))
    lines = [f"{'metric':<22}" + "".join(f"{n:>{width}}" for n in names)]
    for metric in metrics:
        values = [columns[n].get(metric) for n in names]
        cells = "".join(f"{'–':>{width}}" if v is None else f"{v:>{width}.4g}" for v in values)
        lines.append(f"{metric:<22}{cells}")
    return "\n".join(lines)


@cli.command("fit")
@click.option(
    "--questions",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=DEFAULT_SPLITS[0],
    show_default=True,
    help="The dev split to fit on (never the test split).",
)
@click.option(
    "--cmrc-trial",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("../shared/benchmarks/cmrc2018/cmrc2018_trial.json"),
    show_default=True,
    help="CMRC 2018 trial: questions over their own paragraphs for sentence selection, "
    "and as off-topic negatives and names for near misses (skipped when absent).",
)
@click.option(
    "--cmrc-workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("build/cmrc-trial"),
    show_default=True,
    help="Where the CMRC trial paragraphs are indexed (reused while current).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("service/answer/data/answerability.json"),
    show_default=True,
    help="Where to write the answerability parameters.",
)
@click.option(
    "--selection-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("service/answer/data/selection.json"),
    show_default=True,
    help="Where to write the sentence-selection parameters.",
)
@click.pass_obj
@errors_to_exit
def fit_command(
    settings: Settings,
    questions: Path,
    cmrc_trial: Path,
    cmrc_workdir: Path,
    out: Path,
    selection_out: Path,
) -> None:
    """Fit sentence selection (CMRC trial + dev), then answerability (dev + near misses)."""
    from service.answer.build import build_qa
    from service.eval import fit
    from service.eval.cmrc import load_cmrc, open_bench
    from service.eval.evaluation import read_questions

    if questions.resolve() == DEFAULT_SPLITS[1].resolve():
        raise click.UsageError("the test split is held out: fit on eval/dev.jsonl")
    items = read_questions(questions)
    cmrc_questions: list[str] = []
    paragraphs: list[str] = []
    golds: list[fit.Gold] = []
    if cmrc_trial.is_file():
        trial = load_cmrc(cmrc_trial)
        cmrc_questions = [q.question for q in trial.questions]
        paragraphs = list(trial.paragraphs.values())
        golds = [fit.Gold(q.id, q.question, q.answers, False) for q in trial.questions]
    else:
        click.echo(f"no {cmrc_trial}: fitting without CMRC trial questions", err=True)
    sentences = fit.sentences(build_qa(settings), fit.dev_gold(items))
    if golds:
        with open_bench(cmrc_trial, settings, workdir=cmrc_workdir) as bench:
            sentences += fit.sentences(bench.qa, golds)
    selection = fit.fit_selection(sentences)
    click.echo(json.dumps(selection["fit"], ensure_ascii=False, indent=1))
    click.echo(f"sentence selection → {fit.write(selection, selection_out)}", err=True)
    # Answerability describes the evidence the new selection picks.
    fitted = settings.model_copy(update={"selection_path": selection_out})
    positives: list[fit.Example] = []
    if golds:
        with open_bench(cmrc_trial, fitted, workdir=cmrc_workdir) as bench:
            positives = fit.answered(bench.qa, golds)
    qa = build_qa(fitted)
    with _progress(len(items) * 3 + fit.CMRC_NEGATIVES, "fit") as bar:
        data = fit.examples(qa, items, cmrc_questions, paragraphs, lambda: bar.update(1))
    data += positives
    parameters = fit.fit(data)
    path = fit.write(parameters, out)
    summary = parameters["fit"]
    click.echo(json.dumps(summary, ensure_ascii=False, indent=1))
    click.echo(f"threshold {parameters['threshold']} → {path}", err=True)
