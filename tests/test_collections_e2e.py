"""Several knowledge bases in one service, chosen per request, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from click.testing import CliRunner

from service.answer.build import with_index
from service.answer.qa import QA
from service.answer.store import load_store
from service.api.app import create_app
from service.cli import cli
from service.config import Settings
from tests.conftest import private_copy, running, store_env
from tests.test_updates_e2e import GBK_QUESTION, GBK_TEXT, HTML, HTML_QUESTION

pytestmark = pytest.mark.e2e

BUNDLED_QUESTION = "北京市人工智能算力券实施方案是哪个部门出台的？"


@pytest.fixture
def kb(real_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Private copies of the bundled corpus and index, and an empty collections directory."""
    return private_copy(real_settings, tmp_path, request, collections_dir=tmp_path / "collections")


def _serve(kb: Settings, real_qa: QA) -> Any:
    qa = with_index(real_qa, load_store(kb), kb)
    return running(create_app(kb, qa=qa))


@pytest.fixture
def server(kb: Settings, real_qa: QA) -> Iterator[str]:
    with _serve(kb, real_qa) as url:
        yield url


def _ask(url: str, question: str, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/ask", json={"question": question, **extra}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _upload(url: str, collection: str, name: str, data: bytes) -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")}
    return httpx.post(
        f"{url}/documents", params={"collection": collection}, files=files, timeout=120
    )


def test_collections_are_separate_knowledge_bases(server: str, kb: Settings, real_qa: QA) -> None:
    assert _upload(server, "cities", "haikou.txt", GBK_TEXT.encode("gbk")).status_code == 201
    assert _upload(server, "cities", "yinchuan.html", HTML.encode()).status_code == 201
    assert (kb.collections_dir / "cities" / "corpus" / "haikou.txt").is_file()

    listed = httpx.get(f"{server}/collections", timeout=30).json()["collections"]
    assert [c["name"] for c in listed] == ["default", "cities"]
    assert listed[1]["documents"] == 2
    cities = httpx.get(f"{server}/documents", params={"collection": "cities"}, timeout=30)
    assert {d["source"] for d in cities.json()["documents"]} == {"haikou.txt", "yinchuan.html"}
    default = httpx.get(f"{server}/documents", timeout=30).json()["documents"]
    assert "haikou.txt" not in {d["source"] for d in default}

    answer = _ask(server, GBK_QUESTION, collection="cities")
    assert "50家" in answer["answer"] and answer["citations"][0]["source"] == "haikou.txt"
    assert _ask(server, GBK_QUESTION)["refused"]  # the default collection does not know
    assert _ask(server, BUNDLED_QUESTION, collection="cities")["refused"]
    assert not _ask(server, BUNDLED_QUESTION)["refused"]
    found = httpx.post(
        f"{server}/search",
        json={"query": HTML_QUESTION, "collection": "cities", "top_k": 20},
        timeout=30,
    ).json()["passages"]
    assert found and {p["source"] for p in found} <= {"haikou.txt", "yinchuan.html"}

    # Chat completions choose the collection by header.
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model="zhice",
        messages=[{"role": "user", "content": GBK_QUESTION}],
        extra_headers={"X-Zhice-Collection": "cities"},
    )
    assert "50家" in (reply.choices[0].message.content or "")

    # A restarted service serves the collection from disk.
    with _serve(kb, real_qa) as restarted:
        assert "50家" in _ask(restarted, GBK_QUESTION, collection="cities")["answer"]


def test_cli_collections_reach_the_running_service(
    server: str, kb: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "haikou.txt"
    path.write_bytes(GBK_TEXT.encode("gbk"))
    env = {
        "ZHICE_CORPUS_DIR": str(kb.corpus_dir),
        "ZHICE_INDEX_DIR": str(kb.index_dir),
        "ZHICE_COLLECTIONS_DIR": str(kb.collections_dir),
        **store_env(kb),
    }
    done = CliRunner().invoke(cli, ["--collection", "hainan", "add", str(path)], env=env)
    assert done.exit_code == 0, done.output
    assert "50家" in _ask(server, GBK_QUESTION, collection="hainan")["answer"]
    done = CliRunner().invoke(cli, ["--collection", "hainan", "ask", GBK_QUESTION], env=env)
    assert done.exit_code == 0 and "50家" in done.output
    done = CliRunner().invoke(cli, ["--collection", "../etc", "ask", "x"], env=env)
    assert done.exit_code != 0 and "collection name" in done.output


@pytest.mark.parametrize(
    ("collection", "status", "code"),
    [
        ("nowhere", 404, "unknown_collection"),
        ("../etc", 400, "invalid_collection"),
        ("Big Name", 400, "invalid_collection"),
    ],
)
def test_unknown_or_malformed_collections_are_clear_errors(
    server: str, collection: str, status: int, code: str
) -> None:
    for response in (
        httpx.post(f"{server}/ask", json={"question": "算力券", "collection": collection}),
        httpx.get(f"{server}/documents", params={"collection": collection}),
        httpx.delete(f"{server}/documents/x.txt", params={"collection": collection}),
    ):
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    assert not _ask(server, BUNDLED_QUESTION)["refused"]
