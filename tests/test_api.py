"""In-process API tests (the lifespan runs) with the fake embedder: contract and errors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.answer.qa import QA
from service.api.app import create_app
from service.config import Settings

SOURCE = "000_b09d076724004418.txt"


@pytest.fixture
def client(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[TestClient]:
    with TestClient(create_app(fake_qa_settings, qa=fake_qa)) as c:
        yield c


def _assert_error(response: Any, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) in ({"code", "message"}, {"code", "message", "request_id"})
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


def test_ask_returns_contract_shape(client: TestClient) -> None:
    body = client.post("/ask", json={"question": "国务院关于政务服务的指导意见", "top_k": 3}).json()
    assert set(body) >= {"answer", "refused", "citations", "passages", "timings_ms"}
    assert len(body["passages"]) == 3
    assert set(body["timings_ms"]) == {"read", "embed", "retrieve", "compose", "score", "total"}
    for passage in body["passages"]:
        assert 0 < passage["score"] <= 1
        assert passage["ranks"] is None


def test_citation_quotes_equal_document_text(client: TestClient) -> None:
    body = client.post("/ask", json={"question": "国务院 政务服务 智能客服 意图识别"}).json()
    assert body["citations"]
    for citation in body["citations"]:
        doc = client.get(f"/documents/{citation['source']}").json()
        assert doc["text"][citation["start"] : citation["end"]] == citation["quote"]
        assert f"[{citation['id']}]" in body["answer"]


def test_debug_shows_ranks_and_rewritten_query(client: TestClient) -> None:
    body = client.post(
        "/ask",
        json={
            "question": "那它是哪个部门发布的？",
            "history": [{"role": "user", "content": "哪份文件提出建设超大规模智算中心？"}],
            "debug": True,
        },
    ).json()
    assert "智算中心" in body["debug"]["query"]
    ranks = [p["ranks"] for p in body["passages"]]
    assert all(r is not None for r in ranks)
    assert any(r["dense_rank"] is not None and r["bm25_rank"] is not None for r in ranks)


def test_source_filter_restricts_passages(client: TestClient) -> None:
    body = client.post(
        "/search", json={"query": "大模型", "top_k": 10, "filters": {"source": [SOURCE]}}
    ).json()
    assert body["passages"]
    assert {p["source"] for p in body["passages"]} == {SOURCE}


def test_documents_list_and_detail(client: TestClient) -> None:
    docs = client.get("/documents").json()["documents"]
    assert len(docs) == 5
    assert all(d["chunks"] > 0 and d["title"] for d in docs)
    detail = client.get(f"/documents/{SOURCE}").json()
    for chunk in detail["chunks"]:
        assert 0 <= chunk["start"] < chunk["end"] <= len(detail["text"])


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "detail": None}
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/ask", json={"question": "算力券"})
    text = client.get("/metrics").text
    assert 'zhice_requests_total{method="POST",route="/ask",status="200"}' in text
    assert "zhice_answers_total" in text


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"question": ""}, "validation_error"),
        ({"question": "   \n\t "}, "validation_error"),
        ({"question": "问" * 2001}, "validation_error"),
        ({"question": 123}, "validation_error"),
        ({"question": ["列表"]}, "validation_error"),
        ({"question": "算力", "top_k": 0}, "validation_error"),
        ({"question": "算力", "top_k": 51}, "validation_error"),
        ({"question": "算力", "top_k": "5"}, "validation_error"),
        ({"question": "算力", "unknown": 1}, "validation_error"),
        ({"question": "算力", "filters": {"city": "北京"}}, "validation_error"),
        ({"question": "算力", "filters": {"region": " "}}, "validation_error"),
        ({"question": "算力", "filters": {"date_from": "2024年"}}, "validation_error"),
        ({"question": "算力", "filters": {"date_to": "2024-13"}}, "validation_error"),
        ({"question": "算力", "filters": {"date_from": 2024}}, "validation_error"),
        (
            {"question": "算力", "filters": {"date_from": "2024-06", "date_to": "2024-05-31"}},
            "validation_error",
        ),
        ({"question": "算力", "history": [{"role": "robot", "content": "x"}]}, "validation_error"),
        ({}, "validation_error"),
    ],
)
def test_ask_rejects_bad_input(client: TestClient, payload: dict[str, Any], code: str) -> None:
    _assert_error(client.post("/ask", json=payload), 422, code)


def test_unknown_source_in_filter(client: TestClient) -> None:
    response = client.post("/ask", json={"question": "算力", "filters": {"source": ["nope.txt"]}})
    _assert_error(response, 400, "unknown_source")
    assert "nope.txt" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"question": "\xff\xfe\xfa"}', b"", b"[1, 2]", b'"just a string"']
)
def test_malformed_bodies(client: TestClient, body: bytes) -> None:
    response = client.post("/ask", content=body, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    _assert_error(response, response.status_code)


@pytest.mark.parametrize(
    "path",
    [
        "/documents/nope.txt",
        "/documents/..%2F..%2Fetc%2Fpasswd",
        "/documents/../../etc/passwd",
        "/documents/%2e%2e%2fpyproject.toml",
        "/no-such-route",
    ],
)
def test_unknown_paths_are_json_404(client: TestClient, path: str) -> None:
    _assert_error(client.get(path), 404)


def test_wrong_method_is_json_405(client: TestClient) -> None:
    _assert_error(client.get("/ask"), 405, "method_not_allowed")


def test_search_validation(client: TestClient) -> None:
    _assert_error(client.post("/search", json={"query": " "}), 422)
    _assert_error(client.post("/search", json={"query": "x", "retriever": "magic"}), 422)
    _assert_error(client.post("/search", json={"query": "x", "top_k": 101}), 422)


def test_service_keeps_answering_after_bad_input(client: TestClient) -> None:
    client.post("/ask", content=b"\x00\x01", headers={"content-type": "application/json"})
    client.post("/ask", json={"question": 5})
    assert client.post("/ask", json={"question": "智算中心"}).status_code == 200


def test_missing_index_fails_startup_with_instruction(fake_settings: Settings) -> None:
    settings = fake_settings.model_copy(update={"index_dir": fake_settings.index_dir / "none"})
    with pytest.raises(Exception, match="zhice ingest"):
        with TestClient(create_app(settings)):
            pass
