"""Commands that build the knowledge base: prepare-model, ingest, add, remove, merge,
migrate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click

from service.cli.base import cli, errors_to_exit
from service.config import Settings

if TYPE_CHECKING:
    from ingest.limits import Budget
    from ingest.types import Document
    from ingest.update import Action


@cli.command("prepare-model")
@click.pass_obj
@errors_to_exit
def prepare_model(settings: Settings) -> None:
    """Convert and export (once) and load the embedding model, then report its dimension."""
    from ingest.embedding import DEFAULT_MODEL, prepare_default_model
    from service.answer.build import embedder_for

    if settings.embedding_model == DEFAULT_MODEL:  # every backend's files, whichever is chosen
        prepare_default_model(settings.model_cache_dir)
    embedder = embedder_for(settings)
    click.echo(
        f"model {embedder.name} ready (dimension {embedder.dimension}, backend {embedder.backend})"
    )


@cli.command()
@click.option("--force", is_flag=True, help="Rebuild even if the index is current.")
@click.pass_obj
@errors_to_exit
def ingest(settings: Settings, force: bool) -> None:
    """Build the index from the corpus (skips when nothing changed)."""
    from ingest.pipeline import ingest as run_ingest
    from service.answer.build import embedder_for

    result = run_ingest(
        settings.corpus_dir,
        settings.index_dir,
        settings.embedding_model,
        lambda: embedder_for(settings),
        backend=settings.embedding_backend,
        batch_size=settings.batch_size,
        force=force,
        milvus=settings.milvus_target(),
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
@errors_to_exit
def add(settings: Settings, /, path: Path, replacing: bool, **fields: str | None) -> None:
    """Add one document (PDF, DOCX, HTML, Markdown, TXT) to the index, live.

    The per-document limits of uploads apply (ZHICE_MAX_DOCUMENT_CHARS, _CHUNKS).
    """
    from ingest.limits import Budget
    from ingest.loaders import load_bytes, with_stated
    from ingest.names import source_name

    source = source_name(path.name)
    data = path.read_bytes()
    budget = Budget(source, settings.limits())
    document = with_stated(load_bytes(source, data, budget), fields)
    _update(settings, "replace" if replacing else "add", source, document, data, budget)


@cli.command()
@click.option(
    "--to",
    "to",
    type=click.Choice(["milvus", "local"]),
    required=True,
    help="The store to move the index in force to (Milvus: ZHICE_MILVUS_URI).",
)
@click.pass_obj
@errors_to_exit
def migrate(settings: Settings, to: Literal["milvus", "local"]) -> None:
    """Move the knowledge base to the other store, reusing every stored vector."""
    from ingest.migrate import migrate as run_migrate

    moved = run_migrate(
        settings.index_dir,
        settings.embedding_model,
        settings.embedding_backend,
        to,
        settings.milvus_location(),
    )
    click.echo(
        f"moved {moved} chunks to the {to} store; serve it with ZHICE_STORE={to} "
        "(a running service on the other store stops serving this index)"
    )


@cli.command()
@click.argument("source")
@click.pass_obj
@errors_to_exit
def remove(settings: Settings, source: str) -> None:
    """Remove one document from the index (and the corpus), live."""
    from ingest.names import source_name

    _update(settings, "remove", source_name(source), None, None)


@cli.command()
@click.pass_obj
@errors_to_exit
def merge(settings: Settings) -> None:
    """Merge the live updates' delta segment into the large one (local store), beside
    any updates; a running service does it by itself after an update."""
    from ingest.merge import merge as run_merge

    if settings.store != "local":
        raise click.UsageError("only the local store has a delta segment to merge")
    merged = run_merge(settings.index_dir, settings.embedding_model, settings.embedding_backend)
    if merged is None:
        click.echo("nothing merged: no live changes since the last merge, or a merge is running")
        return
    manifest = merged.manifest
    click.echo(
        f"merged {manifest.chunk_count} chunks into one segment ({manifest.delta_chunks} added "
        f"during the merge in a delta) in {manifest.build_seconds:.1f} s → {merged.path}"
    )


def _update(
    settings: Settings,
    action: Action,
    source: str,
    document: Document | None,
    data: bytes | None,
    budget: Budget | None = None,
) -> None:
    from ingest.update import update
    from service.answer.build import embedder_for

    embedder = embedder_for(settings)
    corpus_dir, index_dir, model = settings.corpus_dir, settings.index_dir, settings.embedding_model
    result = update(
        corpus_dir,
        index_dir,
        model,
        embedder,
        action,
        source,
        document,
        data,
        budget=budget,
        milvus=settings.milvus_target(),
    )
    click.echo(
        f"{action} {source}: {result.embedded} chunks embedded, {len(result.index.documents)} "
        f"documents and {result.chunks} chunks in the index ({result.seconds:.1f} s); a "
        "running service picks it up at its next request"
    )
    if result.merge_due(settings.merge_above):
        click.echo(
            "the live changes have outgrown ZHICE_MERGE_ABOVE: run `zhice merge` (a running "
            "service merges after its next update)"
        )
