"""`zhice ask` and `zhice search`: answering from the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, cast

import click

from service.cli.base import cli, errors_to_exit
from service.config import Settings

if TYPE_CHECKING:
    from service.answer.retrieval import Mode


@cli.command()
@click.argument("question")
@click.option("--top-k", type=click.IntRange(1, 50), default=None, help="Passages to use.")
@click.option("--source", multiple=True, help="Only search these documents.")
@click.option("--json", "as_json", is_flag=True, help="Print the /ask response JSON.")
@click.pass_obj
@errors_to_exit
def ask(
    settings: Settings, question: str, top_k: int | None, source: tuple[str, ...], as_json: bool
) -> None:
    """Answer QUESTION with citations."""
    from service.answer.build import build_qa
    from service.answer.filters import Filter

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
@errors_to_exit
def search(settings: Settings, query: str, top_k: int, retriever: str, as_json: bool) -> None:
    """Show the passages retrieved for QUERY."""
    from service.answer.build import build_qa

    hits, _ = build_qa(settings).search(query, top_k, None, cast("Mode", retriever))
    for n, hit in enumerate(hits, start=1):
        c = hit.chunk
        if as_json:
            row = {"rank": n, "chunk_id": c.chunk_id, "score": hit.score, "text": c.text}
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(f"{n:2d}. {hit.score:.3f} {c.source} [{c.start}:{c.end}] {c.text[:80]}")
