"""How zhice runs under uvicorn: connection timeouts and log configuration.

uvicorn closes idle keep-alive connections (`timeout_keep_alive`) and bounds the size of
a request head (h11's incomplete-event limit), but gives a client unlimited time to
send its request line and headers — any byte resets the idle timer — so a slow client
can hold a connection open forever. `HeaderDeadlineProtocol` adds that deadline. Access
log lines show the path without its query string: queries may carry personal data (a
question in `?q=`) or tokens, and logs are kept longer and read by more people.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.api.middleware.requestid import RequestIdFilter
from service.config import Settings

# Largest request line plus headers (uvicorn's default, stated): larger ones get 400.
MAX_HEAD_BYTES = 16 * 1024
REDACTED = "?…"


class HeaderDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request head is late.

    The deadline starts when the connection opens and again when a response completes;
    a request whose line and headers have not all arrived by then is dropped.
    """

    header_timeout = 10.0

    def connection_made(self, transport: Any) -> None:
        """Accept the connection and start the deadline for its first request."""
        super().connection_made(transport)
        self._start_deadline()

    def on_response_complete(self) -> None:
        """Finish the response and start the deadline for the next request."""
        super().on_response_complete()
        self._start_deadline()

    def _start_deadline(self) -> None:
        self.loop.call_later(self.header_timeout, self._deadline, self.cycle)

    def _deadline(self, waiting_after: object) -> None:
        # Still the same request cycle: no new request head has been parsed since.
        if self.cycle is waiting_after and not self.transport.is_closing():
            if waiting_after is None or getattr(waiting_after, "response_complete", False):
                self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderDeadlineProtocol]:
    """The protocol class with this header deadline."""
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})


class RedactQueryFilter(logging.Filter):
    """Drops the query string from uvicorn access log lines (keeps a `?…` marker)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument of an access record; never drops it."""
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            path, query, _ = args[2].partition("?")
            record.args = (*args[:2], path + (REDACTED if query else ""), *args[3:])
        return True


def uvicorn_log_config(level: int = logging.INFO) -> dict[str, Any]:
    """uvicorn's logging config: request ids in every line, no query strings in access lines."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {
        "request_id": {"()": RequestIdFilter},
        "redact_query": {"()": RedactQueryFilter},
    }
    formatters = config["formatters"]
    formatters["default"]["fmt"] = (
        "%(asctime)s %(levelprefix)s %(name)s [%(request_id)s] %(message)s"
    )
    formatters["access"]["fmt"] = (
        '%(asctime)s %(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
        " [%(request_id)s]"
    )
    for handler in config["handlers"].values():
        handler["filters"] = ["request_id"]
    config["handlers"]["access"]["filters"] = ["request_id", "redact_query"]
    # zhice's own loggers propagate to the root logger: give it the same handler.
    config["root"] = {"handlers": ["default"], "level": level}
    return config


# The environment variable handing the serving Settings to worker processes.
WORKER_SETTINGS = "ZHICE_SERVE_SETTINGS"


def worker_app() -> ASGIApp:
    """The app of one worker process of `zhice serve --workers N` (a uvicorn factory).

    Each worker loads the index memory-mapped (the page cache holds one copy for all),
    follows the `current` link to see every update, and writes under the index
    directory's file lock, so updates from any worker are applied one at a time.
    """
    from service.api.app import create_app

    settings = Settings(**json.loads(os.environ[WORKER_SETTINGS]))
    # The protocol class crosses to the worker by name, so its deadline is set here.
    HeaderDeadlineProtocol.header_timeout = settings.header_timeout
    return create_app(settings)


def _settings_json(settings: Settings) -> str:
    """Settings as JSON a worker reads back, secrets included (they stay in this process
    tree's environment, as ZHICE_* variables would)."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return str(value) if isinstance(value, Path) else value

    return json.dumps({k: plain(v) for k, v in settings.model_dump().items()})


def uvicorn_config(
    app: ASGIApp | str,
    settings: Settings,
    *,
    log_config: dict[str, Any] | None = None,
    workers: int = 1,
) -> uvicorn.Config:
    """A uvicorn configuration serving `app` with zhice's timeouts and limits.

    With `workers` > 1, `app` is the import string of a factory (`worker_app`) and
    the settings reach the workers through WORKER_SETTINGS.
    """
    if workers > 1:
        os.environ[WORKER_SETTINGS] = _settings_json(settings)
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=workers,
        factory=workers > 1,
        http=HeaderDeadlineProtocol
        if workers > 1
        else with_header_timeout(settings.header_timeout),
        timeout_keep_alive=settings.keep_alive_timeout,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        log_level="info",
        log_config=log_config,
    )
