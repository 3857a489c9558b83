"""Access control and limits: API keys, body size, CORS, and wiring them into the app."""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.errors import error_body
from service.api.middleware.paths import UPLOADS, PathSet, route_path
from service.api.middleware.ratelimit import (
    CLIENT_SCOPE_KEY,
    Clock,
    RateLimitMiddleware,
    TokenBucket,
)
from service.api.middleware.requestid import HEADER
from service.config import Settings

log = logging.getLogger(__name__)

# Reachable without a key: probes, and the chat page with its files (service/routes/
# widget.py), which hold no data — the page sends the key with its own API calls.
# /docs and /openapi.json stay behind the key on purpose: the schema is a map of the API.
PUBLIC = PathSet(frozenset({"/healthz", "/readyz"})).with_paths(
    "/", "/widget.js", prefixes=("/static/",)
)


def _digest(secret: bytes) -> bytes:
    # Comparing fixed-length digests keeps compare_digest's timing independent of the
    # key's length as well as its content.
    return hashlib.sha256(secret).digest()


def _bearer_token(scope: Scope) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == b"authorization":
            scheme, _, token = bytes(value).partition(b" ")
            token = token.strip()
            return token if scheme.lower() == b"bearer" and token else None
    return None


class APIKeyMiddleware:
    """Requires `Authorization: Bearer <key>` outside the public paths (pure ASGI)."""

    def __init__(self, app: ASGIApp, keys: Sequence[str], public: PathSet = PUBLIC) -> None:
        self.app = app
        self.digests = [_digest(k.encode("ascii")) for k in keys]
        self.public = public

    def key_id(self, token: bytes) -> str | None:
        """Which key `token` is ("key:N"), checking every key in constant time."""
        given = _digest(token)
        found = None
        for number, digest in enumerate(self.digests):
            if hmac.compare_digest(given, digest):  # no early exit: timing reveals nothing
                found = f"key:{number}"
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.public:
            await self.app(scope, receive, send)
            return
        token = _bearer_token(scope)
        key_id = self.key_id(token) if token else None
        if key_id is None:
            await _unauthorized(scope, receive, send, presented=token is not None)
            return
        scope[CLIENT_SCOPE_KEY] = key_id  # the rate limiter counts per key
        await self.app(scope, receive, send)


async def _unauthorized(scope: Scope, receive: Receive, send: Send, presented: bool) -> None:
    # Log who and what, never the key itself; %r keeps a decoded "%0A" in the path inert.
    peer = scope.get("client") or ("?", 0)
    level = logging.WARNING if presented else logging.INFO
    log.log(
        level, "%s API key from %s for %r", "bad" if presented else "no", peer[0], scope["path"]
    )
    if presented:
        message, challenge = "invalid API key", 'Bearer error="invalid_token"'
    else:
        message, challenge = "an API key is required: send Authorization: Bearer <key>", "Bearer"
    response = JSONResponse(
        error_body("unauthorized", message),
        status_code=401,
        headers={"WWW-Authenticate": challenge},
    )
    await response(scope, receive, send)


class PayloadTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit.

    An HTTPException, because FastAPI re-raises those from body parsing (anything else
    it turns into a 400); the app's handler then answers 413 `payload_too_large`.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes")


class BodySizeMiddleware:
    """413 for bodies over the limit, by Content-Length or while streaming (pure ASGI).

    Document uploads (POST or PUT under /documents) have a limit of their own.
    """

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int | None = None) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit or limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] in {"POST", "PUT"} and route_path(scope) in UPLOADS
        limit = self.upload_limit if upload else self.limit
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(PayloadTooLarge(limit), scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except PayloadTooLarge as exc:  # not turned into a response further in
            if started:
                raise
            await _too_large(exc, scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    return int(value) if value is not None and value.isdigit() else None


async def _too_large(exc: PayloadTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    body = error_body("payload_too_large", str(exc.detail))
    await JSONResponse(body, status_code=413)(scope, receive, send)


class JSONErrorCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, with rejected preflights in the JSON error shape."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """Starlette's preflight answer; a 400 becomes `{"error": …}`."""
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items() if k.startswith(("access-", "vary"))}
        message = bytes(response.body).decode()
        return JSONResponse(error_body("cors_rejected", message), 400, headers=headers)


def install_guards(app: Starlette, settings: Settings, clock: Clock) -> None:
    """Add CORS, body size, API key and rate limit middleware, outermost first."""
    # add_middleware puts each new one outside the previous, so add innermost first.
    if settings.rate_limit:
        bucket = TokenBucket(settings.rate_limit, settings.rate_limit_burst, clock)
        app.add_middleware(RateLimitMiddleware, bucket=bucket)
    if settings.api_keys:
        keys = [k.get_secret_value() for k in settings.api_keys]
        app.add_middleware(APIKeyMiddleware, keys=keys)
    app.add_middleware(
        BodySizeMiddleware, limit=settings.max_body_bytes, upload_limit=settings.max_upload_bytes
    )
    if settings.cors_origins:
        app.add_middleware(
            JSONErrorCORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=("GET", "POST", "PUT", "DELETE"),
            # Bearer keys travel in a header, not cookies: no credentials mode needed.
            allow_headers=("Authorization", "Content-Type", HEADER, "X-Zhice-Collection"),
            expose_headers=(HEADER, "Retry-After"),
        )
