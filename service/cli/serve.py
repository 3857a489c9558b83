"""`zhice serve`: the HTTP service under uvicorn."""

from __future__ import annotations

import logging

import click

from service.cli.base import cli, errors_to_exit
from service.config import Settings


@cli.command()
@click.option("--host", help="Bind address [env ZHICE_HOST, default 127.0.0.1]")
@click.option("--port", type=click.IntRange(0, 65535), help="[env ZHICE_PORT, default 8000]")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes sharing the memory-mapped index (each loads the model).",
)
@click.pass_obj
@errors_to_exit
def serve(settings: Settings, host: str | None, port: int | None, workers: int) -> None:
    """Serve the HTTP API (index and model load in the background; see /readyz)."""
    import uvicorn

    from service.api.app import create_app
    from service.api.server import uvicorn_config, uvicorn_log_config

    # The app decides from the address whether document updates need a key.
    given = {"host": host or settings.host, "port": settings.port if port is None else port}
    settings = settings.model_copy(update=given)
    log_config = uvicorn_log_config(logging.getLogger().level)
    if workers > 1:  # uvicorn's supervisor starts the processes, each with its own app
        config = uvicorn_config(
            "service.api.server:worker_app", settings, log_config=log_config, workers=workers
        )
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    uvicorn.Server(uvicorn_config(create_app(settings), settings, log_config=log_config)).run()
