"""End to end: a real uvicorn server, the real model, the bundled corpus, real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from service.answer.build import build_qa
from service.answer.qa import QA
from service.api import app as app_module
from service.api.app import create_app
from service.config import Settings
from tests.conftest import running, store_env, wait_for

pytestmark = pytest.mark.e2e

POLICY = "关于进一步优化政务服务提升行政效能推动“高效办成一件事”的指导意见"
FIRST_REPORT = "000_b09d076724004418.txt"


def test_acceptance_question_is_answered_from_the_policy_table(live_server: str) -> None:
    response = httpx.post(
        f"{live_server}/ask",
        json={"question": "国务院哪份文件提出探索用大模型提升线上智能客服的意图识别？"},
        timeout=30,
    )
    body = response.json()
    assert response.status_code == 200
    assert body["refused"] is False
    assert POLICY in body["answer"]
    assert "2024年1月" in body["answer"]
    first = body["citations"][0]
    assert first["source"] == FIRST_REPORT
    assert "提升线上智能客服的意图识别" in first["quote"]
    assert "[1]" in body["answer"]


def test_uncovered_question_is_refused(live_server: str) -> None:
    body = httpx.post(
        f"{live_server}/ask", json={"question": "2025年大模型市场规模预计多少？"}, timeout=30
    ).json()
    assert body["refused"] is True
    assert body["citations"] == []
    assert "没有找到" in body["answer"]


@pytest.mark.parametrize(
    "question",
    [
        "北京市有多少家10亿参数以上的大模型供给方？",
        "哪些地方在政策中提到发放算力券？",
        "GPT-4o mini 是什么时候发布的？",
    ],
)
def test_every_citation_quotes_its_document_exactly(live_server: str, question: str) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        body = client.post("/ask", json={"question": question}).json()
        assert body["citations"], body
        texts: dict[str, str] = {}
        for c in body["citations"]:
            if c["source"] not in texts:
                texts[c["source"]] = client.get(f"/documents/{c['source']}").json()["text"]
            assert texts[c["source"]][c["start"] : c["end"]] == c["quote"]
            assert f"[{c['id']}]" in body["answer"]


def test_list_question_lists_matching_rows(live_server: str) -> None:
    body = httpx.post(
        f"{live_server}/ask",
        json={"question": "2024年广东省发布了哪些大模型相关政策？"},
        timeout=30,
    ).json()
    assert "广东省推动低空经济高质量发展行动方案" in body["answer"]
    assert "广东省关于人工智能赋能千行百业的若干措施" in body["answer"]
    assert len(body["citations"]) >= 2


def test_operations_endpoints(live_server: str) -> None:
    assert httpx.get(f"{live_server}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{live_server}/readyz").json()["status"] == "ready"
    docs = httpx.get(f"{live_server}/documents").json()["documents"]
    assert {d["source"] for d in docs} == {p.name for p in Path("corpus").glob("*.txt")}
    assert httpx.get(f"{live_server}/docs").status_code == 200
    assert "/ask" in httpx.get(f"{live_server}/openapi.json").json()["paths"]
    assert "zhice_request_seconds" in httpx.get(f"{live_server}/metrics").text


def test_bad_input_over_real_http_then_still_serving(live_server: str) -> None:
    with httpx.Client(base_url=live_server, timeout=30) as client:
        bad = client.post(
            "/ask", content=b"\xff\xfe{", headers={"content-type": "application/json"}
        )
        assert 400 <= bad.status_code < 500
        error = bad.json()["error"]
        assert {"code", "message"} <= set(error)
        assert error.get("request_id", bad.headers["x-request-id"]) == bad.headers["x-request-id"]
        assert client.get("/documents/..%2F..%2Fetc%2Fpasswd").status_code == 404
        assert client.post("/ask", json={"question": "算力券"}).status_code == 200


def test_cli_ask_json_in_a_subprocess(real_settings: Settings) -> None:
    env = {
        **os.environ,
        "ZHICE_INDEX_DIR": str(real_settings.index_dir),
        "ZHICE_CORPUS_DIR": str(real_settings.corpus_dir),
        **store_env(real_settings),
    }
    done = subprocess.run(
        [sys.executable, "-m", "service", "ask", "--json", "哪份文件提出建设超大规模智算中心？"],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"refused": false' in done.stdout
    assert "关于推动未来产业创新发展的实施意见" in done.stdout


def test_not_ready_until_model_and_index_are_loaded(
    real_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model loads in about a second, sometimes before the first request arrives; the
    # test holds the (real) load until it has seen the server answer while not ready.
    release = threading.Event()

    def held_build(settings: Settings) -> QA:
        if not release.wait(timeout=120):
            raise TimeoutError("the test never released the load")
        return build_qa(settings)

    monkeypatch.setattr(app_module, "build_qa", held_build)
    with running(create_app(real_settings)) as url:
        first = httpx.get(f"{url}/readyz")
        assert first.status_code == 503
        assert first.json()["error"]["code"] == "not_ready"
        assert httpx.get(f"{url}/healthz").status_code == 200
        early = httpx.post(f"{url}/ask", json={"question": "算力券"})
        assert early.status_code == 503
        assert early.json()["error"]["code"] == "not_ready"
        release.set()
        wait_for(url, "/readyz")
        assert httpx.post(f"{url}/ask", json={"question": "算力券"}, timeout=30).status_code == 200
