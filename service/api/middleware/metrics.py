"""Prometheus metrics, one registry per app so several apps can live in one process.

Every label value comes from a fixed set — methods from the standard ones, routes from
the app's route templates, statuses from the standard codes, "other" or "unmatched"
for anything else — so no client can grow the exposition by inventing values (a
counter per made-up method would be a memory leak and a scrape-size attack).
"""

from __future__ import annotations

import time
from http import HTTPStatus

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
_STATUSES = frozenset(str(status.value) for status in HTTPStatus)
OTHER = "other"
UNMATCHED = "unmatched"


def labels(scope: Scope, status: int) -> tuple[str, str, str]:
    """(method, route, status) labels of a request, each from a fixed set."""
    method = scope["method"] if scope["method"] in METHODS else OTHER
    route = getattr(scope.get("route"), "path", None)
    code = str(status)
    return (
        method,
        route if isinstance(route, str) else UNMATCHED,
        code if code in _STATUSES else OTHER,
    )


class Metrics:
    """Request counts and latencies by route, and answer outcomes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "zhice_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "zhice_request_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.answers = Counter(
            "zhice_answers_total",
            "Answers by outcome (answered or refused).",
            ["outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (pure ASGI: no buffering)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            method, route, code = labels(scope, status)
            self.metrics.requests.labels(method, route, code).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - began)
