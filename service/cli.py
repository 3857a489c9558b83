"""The `zhice` command line: a thin layer over ingest and service."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ingest.errors import ZhiceError
from ingest.settings import Settings

if TYPE_CHECKING:
    from ingest.embedding import Embedder
    from ingest.types import Document
    from ingest.update import Action
    from service.evaluation import Outcome
    from service.retrieval import Mode

F = TypeVar("F", bound=Callable[..., Any])


def _errors_to_exit(func: F) -> F:
    """Turn a ZhiceError into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ZhiceError as exc:
            raise click.ClickException(exc.message) from exc

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("--corpus-dir", type=click.Path(path_type=Path), help="[env ZHICE_CORPUS_DIR]")
@click.option("--index-dir", type=click.Path(path_type=Path), help="[env ZHICE_INDEX_DIR]")
@click.option("--model", "embedding_model", help="Embedding model [env ZHICE_EMBEDDING_MODEL]")
@click.option(
    "--collection",
    help="Work on this collection: ZHICE_COLLECTIONS_DIR/NAME/{corpus,index} (ingest, add, "
    "remove, ask, search, eval).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.version_option(package_name="zhice")
@click.pass_context
def cli(ctx: click.Context, /, verbose: bool, collection: str | None, **overrides: Any) -> None:
    """知策 zhice: cited answers from Chinese policy and industry reports."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    try:
        ctx.obj = settings.collection(collection)
    except ZhiceError as exc:
        raise click.BadParameter(exc.message, param_hint="--collection") from exc


@cli.command("prepare-model")
@click.pass_obj
@_errors_to_exit
def prepare_model(settings: Settings) -> None:
    """Convert (once) and load the embedding model, then report its dimension."""
    from service.runtime import embedder_for

    embedder = embedder_for(settings)
    click.echo(f"model {embedder.name} ready (dimension {embedder.dimension})")


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild even if the index is current.")
@click.pass_obj
@_errors_to_exit
def ingest(settings: Settings, force: bool) -> None:
    """Build the index from the corpus (skips when nothing changed)."""
    from ingest.pipeline import ingest as run_ingest
    from service.runtime import embedder_for

    result = run_ingest(
        settings.corpus_dir,
        settings.index_dir,
        settings.embedding_model,
        lambda: embedder_for(settings),
        batch_size=settings.batch_size,
        force=force,
    )
    for name, reason in result.skipped.items():
        click.echo(f"skipped {name}: {reason}", err=True)
    if not result.rebuilt:
        click.echo(f"index is up to date ({result.chunks} chunks); nothing to do")
        return
    click.echo(
        f"indexed {result.documents} documents, {result.chunks} chunks "
        f"({result.embedded} embedded, {result.reused} reused) in {result.seconds:.1f} s "
        f"→ {result.path}"
    )


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", "replacing", is_flag=True, help="Replace the document of that name.")
@click.option("--title", help="Title to show in citations (default: from the text).")
@click.option("--date", help="Publish date, e.g. 2024-01-05.")
@click.option("--department", help="Issuing department.")
@click.option("--region", help="Region it applies to.")
@click.pass_obj
@_errors_to_exit
def add(settings: Settings, /, path: Path, replacing: bool, **fields: str | None) -> None:
    """Add one document (PDF, DOCX, HTML, Markdown, TXT) to the index, live."""
    from ingest.loaders import load_bytes, with_stated
    from ingest.update import source_name

    source = source_name(path.name)
    data = path.read_bytes()
    document = with_stated(load_bytes(source, data), fields)
    _update(settings, "replace" if replacing else "add", source, document, data)


@cli.command()
@click.argument("source")
@click.pass_obj
@_errors_to_exit
def remove(settings: Settings, source: str) -> None:
    """Remove one document from the index (and the corpus), live."""
    from ingest.update import source_name

    _update(settings, "remove", source_name(source), None, None)


def _update(
    settings: Settings,
    action: Action,
    source: str,
    document: Document | None,
    data: bytes | None,
) -> None:
    from ingest.update import update
    from service.runtime import embedder_for

    result = update(settings, embedder_for(settings), action, source, document, data)
    click.echo(
        f"{action} {source}: {result.embedded} chunks embedded, {len(result.index.documents)} "
        f"documents and {result.chunks} chunks in the index ({result.seconds:.1f} s); a "
        "running service picks it up at its next request"
    )


@cli.command()
@click.option("--host", help="Bind address [env ZHICE_HOST, default 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="[env ZHICE_PORT, default 8000]")
@click.pass_obj
@_errors_to_exit
def serve(settings: Settings, host: str | None, port: int | None) -> None:
    """Serve the HTTP API (index and model load in the background; see /readyz)."""
    import uvicorn

    from service.app import create_app
    from service.requestid import uvicorn_log_config

    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level="info",
        log_config=uvicorn_log_config(logging.getLogger().level),
    )


@cli.command()
@click.argument("question")
@click.option("--top-k", type=click.IntRange(1, 50), default=None, help="Passages to use.")
@click.option("--source", multiple=True, help="Only search these documents.")
@click.option("--json", "as_json", is_flag=True, help="Print the /ask response JSON.")
@click.pass_obj
@_errors_to_exit
def ask(
    settings: Settings, question: str, top_k: int | None, source: tuple[str, ...], as_json: bool
) -> None:
    """Answer QUESTION with citations."""
    from service.filters import Filter
    from service.runtime import build_qa

    if not question.strip():
        raise click.BadParameter("the question is blank", param_hint="QUESTION")
    where = Filter(sources=source) if source else None
    result = build_qa(settings).ask(question.strip(), top_k or settings.top_k, where)
    if as_json:
        payload = {
            "answer": result.answer,
            "refused": result.refused,
            "citations": [c.__dict__ for c in result.citations],
            "timings_ms": result.timings_ms,
        }
        click.echo(json.dumps(payload, ensure_ascii=False, indent=1))
        return
    click.echo(result.answer)
    for c in result.citations:
        click.echo(f"[{c.id}] {c.source} {c.start}–{c.end}: {c.quote}")


@cli.command()
@click.argument("query")
@click.option("--top-k", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option("--retriever", type=click.Choice(["hybrid", "dense", "bm25"]), default="hybrid")
@click.option("--json", "as_json", is_flag=True, help="Print passages as JSON lines.")
@click.pass_obj
@_errors_to_exit
def search(settings: Settings, query: str, top_k: int, retriever: str, as_json: bool) -> None:
    """Show the passages retrieved for QUERY."""
    from service.runtime import build_qa

    hits, _ = build_qa(settings).search(query, top_k, None, cast("Mode", retriever))
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        if as_json:
            row = {"rank": n, "chunk_id": c.chunk_id, "score": hit.score, "text": c.text}
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(f"{n:2d}. {hit.score:.3f} {c.source} [{c.start}:{c.end}] {c.text[:80]}")


@cli.command("eval")
@click.argument(
    "questions", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
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
@_errors_to_exit
def evaluate(
    settings: Settings,
    questions: Path | None,
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
    """Measure quality on a question set (JSONL), or on CMRC 2018 with --cmrc."""
    if cmrc_path is not None:
        if questions or url or calibrate or calibrate_faq or retrievers:
            raise click.UsageError("--cmrc takes no QUESTIONS, --url, --calibrate* or --retriever")
        options = {"questions": cmrc_sample, "paragraphs": cmrc_paragraphs, "workdir": cmrc_workdir}
        _eval_cmrc(settings, cmrc_path, options, as_json, report_dir)
        return
    if questions is None:
        raise click.UsageError("give a question file FILE.jsonl (or --cmrc PATH)")
    if url and set(retrievers) - {"hybrid"}:
        raise click.UsageError("--url evaluates the server's own hybrid retrieval only")
    modes = retrievers or ("hybrid", "dense", "bm25")
    if calibrate and "hybrid" not in modes:
        modes = ("hybrid", *modes)
    # The model loaded for FAQ calibration serves the evaluation too.
    embedder = _calibrate_faq(settings, questions) if calibrate_faq else None
    runs, threshold = _eval_runs(settings, questions, modes, url, embedder)
    _eval_output(settings, runs, threshold, questions, as_json, report_dir, calibrate)


def _eval_runs(
    settings: Settings,
    questions: Path,
    modes: tuple[str, ...],
    url: str | None,
    embedder: Embedder | None = None,
) -> tuple[dict[str, list[Outcome]], float | None]:
    """Outcomes per configuration, and the refusal threshold in force."""
    from service.evaluation import read_questions, relevant_counts, run, run_with

    items = read_questions(questions)
    if url:
        from service.remote import RemoteAsker

        asker = RemoteAsker(url)
        try:
            texts = asker.passage_texts()
            relevant = relevant_counts(items, texts) if texts is not None else None
            with _progress(len(items), "server") as bar:
                outcomes = run_with(asker, items, lambda: bar.update(1), relevant)
        finally:
            asker.close()
        return {"server": outcomes}, asker.threshold
    from service.runtime import build_qa

    qa = build_qa(settings, embedder)
    runs = {}
    for mode in modes:
        with _progress(len(items), mode) as bar:
            runs[mode] = run(qa, items, cast("Mode", mode), on_progress=lambda: bar.update(1))
    return runs, qa.composer.threshold


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
    from service.evaluation import summary
    from service.report import primary, write_report

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
    from service.calibration import write_calibration
    from service.evaluation import calibration

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
    from service.calibration import calibrate_faq, write_calibration
    from service.evaluation import read_questions
    from service.faq import FAQ
    from service.runtime import embedder_for

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

    from service import cmrc

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


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="zhice")
