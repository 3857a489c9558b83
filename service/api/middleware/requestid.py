"""Request ids: one per request, echoed in `X-Request-ID`, error bodies and log lines."""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
_HEADER_KEY = HEADER.lower().encode("latin-1")
# What a client may supply: trace and correlation ids (UUIDs, hex, base64), nothing that
# could forge a log line or a header (no spaces, quotes, control characters).
_VALID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")

REQUEST_ID: ContextVar[str | None] = ContextVar("zhice_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled, if any."""
    return REQUEST_ID.get()


def accept_or_generate(supplied: str | None) -> str:
    """The client's id when it is sane, else a fresh one."""
    if supplied is not None and _VALID.fullmatch(supplied):
        return supplied
    return uuid.uuid4().hex


def _supplied(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == _HEADER_KEY:
            return bytes(value).decode("latin-1")
    return None


class RequestIdMiddleware:
    """Gives every HTTP request an id and adds it to the response headers (pure ASGI)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_or_generate(_supplied(scope))
        # Deliberately not reset afterwards: Starlette's outermost ServerErrorMiddleware
        # (the 500 body) and uvicorn's access and error logs run after this returns, in
        # the same per-request task, and must still see the id. Each request runs in its
        # own task with its own copy of the context, so the value cannot leak across.
        REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])  # ASGI lets a response omit them
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_id)


class RequestIdFilter(logging.Filter):
    """Sets `record.request_id` ("-" outside a request) so formats can use it."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate the record; never drops it."""
        record.request_id = REQUEST_ID.get() or "-"
        return True
