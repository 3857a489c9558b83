"""The `zhice` command line: a thin layer over ingest and service, one module per group."""

from __future__ import annotations

from service.cli import ask, eval, index, serve  # noqa: F401  (they register their commands)
from service.cli.base import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="zhice")
