"""A small OpenAI-compatible chat server on loopback, for the LLM composer's tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.conftest import running

Handler = Callable[[Request], Awaitable[Response]]


def reply(content: str) -> Response:
    """A well-formed chat completion whose message is `content`."""
    return JSONResponse({"choices": [{"message": {"role": "assistant", "content": content}}]})


def failure(kind: str) -> Response:
    """A misbehaving server's answer: `error` is a 500, `garbage` is not JSON."""
    if kind == "error":
        return PlainTextResponse("upstream exploded", status_code=500)
    return PlainTextResponse("<html>not json</html>")


@contextmanager
def serving(handler: Handler) -> Iterator[str]:
    """Serve `handler` at /v1/chat/completions; yields the base URL (…/v1)."""
    app = Starlette(routes=[Route("/v1/chat/completions", handler, methods=["POST"])])
    app.add_route("/healthz", lambda request: PlainTextResponse("ok"))
    with running(app) as url:  # type: ignore[arg-type]
        yield f"{url}/v1"
