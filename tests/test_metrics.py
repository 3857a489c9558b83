"""Bounded metrics: every label value comes from a fixed set, whatever clients send."""

from __future__ import annotations

import asyncio
import re
import socket

import httpx
import pytest

from service.answer.qa import QA
from service.api.app import create_app
from service.api.middleware.metrics import METHODS, labels
from service.config import Settings
from tests.conftest import running

_LABELS = re.compile(r'(\w+)="([^"]*)"')


def _label_values(exposition: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        if line.startswith("zhice_requests_total{"):
            for name, value in _LABELS.findall(line):
                found.setdefault(name, set()).add(value)
    return found


def test_twenty_thousand_made_up_methods_leave_metrics_small(
    fake_qa_settings: Settings, fake_qa: QA
) -> None:
    app = create_app(fake_qa_settings, qa=fake_qa)
    paths = ["/ask", "/documents/x{n}.txt", "/nowhere/{n}", "/static/{n}.js", "/jobs/{n}"]

    async def flood() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://zhice") as client:
            for n in range(20_000):
                path = paths[n % len(paths)].format(n=n)
                response = await client.request(f"X-{n}-BREW", path)
                assert response.status_code in (404, 405), response.text
            return (await client.get("/metrics")).text

    exposition = asyncio.run(flood())
    assert len(exposition.encode()) < 50 * 1024
    values = _label_values(exposition)
    assert values["method"] <= METHODS | {"other"} and "other" in values["method"]
    templates = set(app.openapi()["paths"])
    assert "unmatched" in values["route"] and values["route"] <= templates | {"unmatched"}


@pytest.mark.parametrize(
    ("scope", "status", "expected"),
    [
        ({"method": "GET"}, 200, ("GET", "unmatched", "200")),
        ({"method": "get"}, 404, ("other", "unmatched", "404")),
        ({"method": "PROPFIND"}, 405, ("other", "unmatched", "405")),
        ({"method": "POST"}, 299, ("POST", "unmatched", "other")),
    ],
)
def test_labels_map_anything_unknown_to_a_fixed_value(
    scope: dict[str, str], status: int, expected: tuple[str, str, str]
) -> None:
    assert labels(scope, status) == expected


def test_odd_methods_over_real_http(fake_qa_settings: Settings, fake_qa: QA) -> None:
    with running(create_app(fake_qa_settings, qa=fake_qa)) as url:
        host, port = url.removeprefix("http://").split(":")
        for method in ("BREW", "PROPFIND", "X" * 200):
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(f"{method} /ask HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                assert sock.recv(100).startswith(b"HTTP/1.1 405")
        text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'zhice_requests_total{method="other",route="/ask",status="405"} 3.0' in text
