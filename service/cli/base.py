"""The `zhice` group: common options, Settings, and ZhiceError as exit status 1."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from service.config import Settings
from service.errors import ZhiceError

F = TypeVar("F", bound=Callable[..., Any])


def errors_to_exit(func: F) -> F:
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
