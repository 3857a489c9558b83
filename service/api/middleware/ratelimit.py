"""Per-client rate limiting: a token bucket per API key (or client address)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.errors import error_body
from service.api.middleware.paths import PathSet, route_path

Clock = Callable[[], float]

# Scope key under which the auth middleware records which key a request used.
CLIENT_SCOPE_KEY = "zhice.client"
# Probes and scrapers must never be throttled.
UNLIMITED = PathSet(frozenset({"/healthz", "/readyz", "/metrics"}))
# Above this many tracked clients, idle (full) buckets are swept away.
_SWEEP_AT = 10_000


class TokenBucket:
    """`per_minute` tokens a minute per client, at most `burst` saved up; thread safe."""

    def __init__(self, per_minute: int, burst: int, clock: Clock = time.monotonic) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError("per_minute and burst must be positive")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, updated)
        self._lock = threading.Lock()
        self._sweep_at = _SWEEP_AT

    def __len__(self) -> int:
        """How many clients are tracked right now."""
        return len(self._buckets)

    def take(self, client: str) -> float:
        """Take a token: 0.0 when granted, else the seconds until one will be available."""
        with self._lock:
            now = self.clock()
            tokens = self._tokens(client, now)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > self._sweep_at:
                self._sweep(now)
            return (1.0 - tokens) / self.rate

    def _tokens(self, client: str, now: float) -> float:
        tokens, updated = self._buckets.get(client, (self.burst, now))
        # max(): a clock that steps back must not drain the bucket.
        return min(self.burst, tokens + max(0.0, now - updated) * self.rate)

    def _sweep(self, now: float) -> None:
        # A full bucket is indistinguishable from a fresh one, so forgetting it is free.
        full = [c for c in self._buckets if self._tokens(c, now) >= self.burst]
        for client in full:
            del self._buckets[client]
        # When most clients are active, sweep less often so sweeping stays amortised O(1).
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._buckets))


def client_of(scope: Scope) -> str:
    """Who a request is counted against: its API key's id, else the peer address."""
    key_id = scope.get(CLIENT_SCOPE_KEY)
    if isinstance(key_id, str):
        return key_id
    peer = scope.get("client")
    return f"ip:{peer[0]}" if peer else "ip:unknown"


class RateLimitMiddleware:
    """Answers 429 with `Retry-After` once a client's bucket is empty (pure ASGI)."""

    def __init__(self, app: ASGIApp, bucket: TokenBucket, exempt: PathSet = UNLIMITED) -> None:
        self.app = app
        self.bucket = bucket
        self.exempt = exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or route_path(scope) in self.exempt:
            await self.app(scope, receive, send)
            return
        wait = self.bucket.take(client_of(scope))
        if wait <= 0.0:
            await self.app(scope, receive, send)
            return
        seconds = max(1, math.ceil(wait))
        message = f"rate limit exceeded; retry in {seconds} s"
        response = JSONResponse(
            error_body("rate_limited", message),
            status_code=429,
            headers={"Retry-After": str(seconds)},
        )
        await response(scope, receive, send)
