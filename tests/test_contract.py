"""The HTTP contract at its edges: undecodable bodies, 405s, whole floats, documented statuses."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.answer.build import with_index
from service.answer.qa import QA
from service.answer.store import load_store
from service.api.app import create_app
from service.config import Settings
from tests.conftest import private_copy

KEY = "k-0123456789abcdef"
JSON_ROUTES = ["/ask", "/search", "/v1/chat/completions", "/feedback"]
UNDECODABLE = [
    b'{"question": "\xff\xfe\xfd"}',  # not UTF-8
    b"[" * 1000 + b"]" * 1000,  # nested 1,000 deep
    b'{"a":' * 1000 + b"1" + b"}" * 1000,
    '{"question": "算力'.encode(),  # cut short
    b"\xef\xbb\xbf\x00\x00",
]


@pytest.fixture
def client(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[TestClient]:
    with TestClient(create_app(fake_qa_settings, qa=fake_qa)) as c:
        yield c


@pytest.mark.parametrize("route", JSON_ROUTES)
@pytest.mark.parametrize("body", UNDECODABLE, ids=["utf8", "array", "object", "cut", "nul"])
def test_every_undecodable_body_is_invalid_json(
    client: TestClient, route: str, body: bytes
) -> None:
    response = client.post(route, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/ask", {"POST"}),
        ("PUT", "/search", {"POST"}),
        ("DELETE", "/documents", {"GET", "POST"}),
        ("POST", "/documents/x.txt", {"GET", "PUT", "DELETE"}),
        ("POST", "/healthz", {"GET"}),
        ("BREW", "/jobs/abc", {"GET"}),
    ],
)
def test_405_says_what_is_allowed(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"} == allowed


def test_whole_floats_are_integers(client: TestClient) -> None:
    ask = client.post("/ask", json={"question": "算力券", "top_k": 20.0})
    assert ask.status_code == 200, ask.text
    assert len(ask.json()["passages"]) == 20
    search = client.post("/search", json={"query": "算力券", "top_k": 3.0})
    assert search.status_code == 200 and len(search.json()["passages"]) == 3
    chat = {"model": "zhice", "messages": [{"role": "user", "content": "算力券"}]}
    assert client.post("/v1/chat/completions", json={**chat, "n": 1.0}).status_code == 200
    answer = client.post("/v1/chat/completions", json={**chat, "max_tokens": 2.0}).json()
    assert answer["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("top_k", [2.5, "3", True, float("1e300")])
def test_other_numbers_are_still_refused(client: TestClient, top_k: Any) -> None:
    response = client.post("/search", json={"query": "算力券", "top_k": top_k})
    assert response.status_code == 422 and response.json()["error"]["code"] == "validation_error"


# --- every status an operation answers is in the OpenAPI document ------------------------


def _operation(openapi: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    for template, operations in openapi["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path):
            return dict(operations[method.lower()])
    raise AssertionError(f"{method} {path} is not in the OpenAPI document")


def _upload(name: str, data: bytes = "海口市提出建设3个智算中心。".encode()) -> dict[str, Any]:
    return {"files": {"file": (name, data, "text/plain")}}


DOC = "000_b09d076724004418.txt"
ASK = {"json": {"question": "算力券"}}
ASYNC = {"Prefer": "respond-async"}
TWICE, NOT_READY = "_twice", "_not_ready"  # send the request twice; as while loading
CHAT = {"json": {"model": "zhice", "messages": [{"role": "user", "content": "算力券"}]}}
# (settings overrides, method, path, request, expected status)
CASES: list[tuple[dict[str, Any], str, str, dict[str, Any], int]] = [
    ({}, "POST", "/ask", ASK, 200),
    ({}, "POST", "/ask", {"content": b"{", "headers": {"content-type": "application/json"}}, 400),
    ({}, "POST", "/ask", {"json": {"question": "x", "filters": {"source": ["no.txt"]}}}, 400),
    ({}, "POST", "/ask", {"json": {"question": "x", "collection": "nope"}}, 404),
    ({}, "POST", "/ask", {"json": {"question": "x" * 3000}}, 422),
    ({"max_body_bytes": 100}, "POST", "/ask", {"json": {"question": "算" * 100}}, 413),
    ({"api_keys": KEY}, "POST", "/ask", ASK, 401),
    ({"rate_limit": 1, "rate_limit_burst": 1, TWICE: 1}, "GET", "/documents", {}, 429),
    ({NOT_READY: 1}, "POST", "/ask", ASK, 503),
    ({NOT_READY: 1}, "GET", "/readyz", {}, 503),
    ({NOT_READY: 1}, "GET", "/collections", {}, 503),
    ({}, "POST", "/search", {"json": {"query": "a", "collection": "Bad Name"}}, 400),
    ({}, "POST", "/v1/chat/completions", CHAT, 200),
    ({}, "POST", "/v1/chat/completions", {"json": {**CHAT["json"], "n": 2}}, 400),
    ({}, "GET", "/v1/models/gpt-4", {}, 404),
    ({}, "GET", "/collections", {}, 200),
    ({}, "GET", "/documents", {"params": {"collection": "x" * 41}}, 422),
    ({}, "GET", f"/documents/{DOC}", {}, 200),
    ({}, "GET", "/documents/nothing.txt", {}, 404),
    ({}, "GET", "/jobs/nothing", {}, 404),
    ({}, "GET", "/readyz", {}, 200),
    ({}, "GET", "/metrics", {}, 200),
    ({}, "POST", "/documents", _upload("new.txt"), 201),
    ({}, "POST", "/documents", {**_upload("new2.txt"), "headers": ASYNC}, 202),
    ({}, "POST", "/documents", _upload(DOC), 409),
    ({}, "POST", "/documents", _upload("x.exe"), 415),
    ({}, "POST", "/documents", _upload("../x.txt"), 400),
    ({}, "POST", "/documents", _upload("empty.txt", b" "), 400),
    ({"max_document_chars": 5}, "POST", "/documents", _upload("long.txt"), 413),
    ({"host": "0.0.0.0"}, "POST", "/documents", _upload("new.txt"), 403),
    ({}, "PUT", f"/documents/{DOC}", _upload(DOC), 200),
    ({}, "PUT", "/documents/nothing.txt", _upload("nothing.txt"), 404),
    ({}, "DELETE", f"/documents/{DOC}", {}, 200),
    ({}, "DELETE", "/documents/nothing.txt", {}, 404),
    ({}, "POST", "/documents", {"data": {"title": "no file"}}, 422),
    ({}, "POST", "/feedback", {"json": {"question": "q", "answer": "a", "rating": "up"}}, 201),
    ({}, "POST", "/feedback", {"json": {"question": "q", "answer": "a", "rating": "meh"}}, 422),
]


@pytest.fixture(scope="module")
def openapi(fake_qa_settings: Settings, fake_qa: QA) -> dict[str, Any]:
    return create_app(fake_qa_settings, qa=fake_qa).openapi()


@pytest.mark.parametrize(("overrides", "method", "path", "request_", "status"), CASES)
def test_every_status_sent_is_documented(
    fake_qa_settings: Settings,
    fake_qa: QA,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    openapi: dict[str, Any],
    overrides: dict[str, Any],
    method: str,
    path: str,
    request_: dict[str, Any],
    status: int,
) -> None:
    # A private copy of the indexed corpus, as updates change it.
    given = {k: v for k, v in overrides.items() if k not in (TWICE, NOT_READY)}
    settings = private_copy(fake_qa_settings, tmp_path, request, **given)
    qa = with_index(fake_qa, load_store(settings), settings)
    app = create_app(settings, qa=qa)
    with TestClient(app) as client:
        if NOT_READY in overrides:
            app.state.zhice.qa = None
        for _ in range(2 if TWICE in overrides else 1):
            response = client.request(method, path, **request_)
    assert response.status_code == status, response.text
    responses = _operation(openapi, method, path)["responses"]
    assert str(status) in responses, f"{method} {path} sends {status}, not documented"
    if status >= 400:
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_no_operation_documents_another_error_shape(openapi: dict[str, Any]) -> None:
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
