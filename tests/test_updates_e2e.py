"""Live updates over real HTTP: upload, replace and delete documents while serving.

Each test gets private copies of the bundled corpus and its index, and a real uvicorn
server around the real model. The crash tests run the service (or an update) in a
child process and SIGKILL it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ingest.store import current_version, read_manifest
from service.answer.build import with_index
from service.answer.qa import QA
from service.answer.store import load_store
from service.api.app import create_app
from service.cli import cli
from service.config import Settings
from tests.conftest import free_port, private_copy, running, store_env, wait_for
from tests.samples import docx_bytes, pdf, scanned_pdf

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]

# One fact per format that no bundled report states, and the question only it answers.
PDF_PAGES = [
    ["西宁市大模型应用示范方案", "第一章 总则", "为加快大模型在政务领域落地，制定本方案。"],
    ["第二章 主要目标", "到2027年，西宁市计划建设20个政务大模型应用场景。"],
]
PDF_QUESTION = "西宁市计划建设多少个政务大模型应用场景？"
DOCX_TABLE = [
    ["发布时间", "发布部门", "政策名称", "主要内容"],
    [
        "2026年5月",
        "拉萨市经济和信息化局",
        "《拉萨市算力基础设施三年行动计划》",
        "建设高原绿色智算中心。",
    ],
    ["2026年6月", "日喀则市科技局", "《日喀则市数字农牧业实施意见》", "推广牦牛养殖数字化管理。"],
]
DOCX_QUESTION = "拉萨市经济和信息化局发布了什么政策？"
HTML = """<!doctype html><html><head><title>银川市设立人工智能产业基金</title></head><body>
<nav><a href="/">首页</a> | <a href="/news">新闻中心</a> | <a href="/login">登录</a></nav>
<header>银川市人民政府门户网站</header>
<article><h1>银川市设立人工智能产业基金</h1>
<p>银川市将设立规模为8亿元的人工智能产业基金，重点支持大模型企业在银川落地。</p>
<p>基金由市财政出资引导，吸引社会资本共同参与。</p></article>
<footer>版权所有 银川市人民政府 备案号 宁ICP备00000000号</footer></body></html>"""
HTML_QUESTION = "银川市人工智能产业基金的规模是多少？"
GBK_TEXT = (
    "海口市大模型产业发展计划\n\n"
    "海口市提出到2027年培育50家大模型服务企业，打造自贸港数字经济新高地。\n"
)
GBK_QUESTION = "海口市计划到2027年培育多少家大模型服务企业？"

UPLOADS = [
    ("xining-plan.pdf", lambda: pdf(PDF_PAGES), PDF_QUESTION, "20个", 2),
    (
        "lasa-policies.docx",
        lambda: docx_bytes(["拉萨市近年出台的算力政策如下。"], DOCX_TABLE, "拉萨市相关政策情况"),
        DOCX_QUESTION,
        "拉萨市算力基础设施三年行动计划",
        None,
    ),
    ("yinchuan-fund.html", lambda: HTML.encode("utf-8"), HTML_QUESTION, "8亿元", None),
    ("haikou-gbk.txt", lambda: GBK_TEXT.encode("gbk"), GBK_QUESTION, "50家", None),
]


@pytest.fixture
def kb(real_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Private copies of the bundled corpus and its index."""
    return private_copy(real_settings, tmp_path, request)


@pytest.fixture
def server(kb: Settings, real_qa: QA) -> Iterator[str]:
    """A real server over the private copies, sharing the loaded model."""
    qa = with_index(real_qa, load_store(kb), kb)
    with running(create_app(kb, qa=qa)) as url:
        yield url


def _upload(
    url: str, name: str, data: bytes, method: str = "POST", **fields: str
) -> httpx.Response:
    target = f"{url}/documents" if method == "POST" else f"{url}/documents/{name}"
    files = {"file": (name, data, "application/octet-stream")}
    return httpx.request(method, target, files=files, data=fields, timeout=120)


def _ask(url: str, question: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/ask", json={"question": question}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _sources(url: str) -> set[str]:
    documents = httpx.get(f"{url}/documents", timeout=30).json()["documents"]
    return {d["source"] for d in documents}


def _cites(url: str, answer: dict[str, Any], source: str) -> dict[str, Any]:
    """The answer's citation of `source`, checked against the document's text."""
    cited = [c for c in answer["citations"] if c["source"] == source]
    assert cited, f"{source} not cited in {answer}"
    doc = httpx.get(f"{url}/documents/{source}", timeout=30).json()
    for citation in cited:
        assert doc["text"][citation["start"] : citation["end"]] == citation["quote"]
    return dict(cited[0])


@pytest.mark.parametrize(("name", "make", "question", "expected", "page"), UPLOADS)
def test_upload_answer_delete_refuse(
    server: str, kb: Settings, name: str, make: Any, question: str, expected: str, page: Any
) -> None:
    before = _sources(server)
    assert _ask(server, question)["refused"], "the bundled reports should not answer this"

    data = make()
    response = _upload(server, name, data)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["action"], body["source"]) == ("add", name)
    assert body["chunks"] >= 1 and body["embedded"] == body["chunks"]  # only this document
    assert _sources(server) == before | {name}
    assert (kb.corpus_dir / name).read_bytes() == data  # kept for `zhice ingest`

    answer = _ask(server, question)
    assert not answer["refused"] and expected in answer["answer"], answer
    citation = _cites(server, answer, name)
    if page is not None:
        assert citation["page"] == page

    response = httpx.delete(f"{server}/documents/{name}", timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["chunks"] == 0
    assert _sources(server) == before and not (kb.corpus_dir / name).exists()
    assert httpx.get(f"{server}/documents/{name}", timeout=30).status_code == 404
    answer = _ask(server, question)
    assert answer["refused"] or all(c["source"] != name for c in answer["citations"])


def test_html_boilerplate_is_not_indexed(server: str) -> None:
    assert _upload(server, "yinchuan-fund.html", HTML.encode()).status_code == 201
    text = httpx.get(f"{server}/documents/yinchuan-fund.html", timeout=30).json()["text"]
    assert "8亿元" in text and "新闻中心" not in text and "备案号" not in text


def test_replace_changes_the_answer_and_metadata(server: str) -> None:
    name = "haikou-gbk.txt"
    assert _upload(server, name, GBK_TEXT.encode("gbk")).status_code == 201
    changed = GBK_TEXT.replace("50家", "80家").encode("gbk")
    response = _upload(server, name, changed, "PUT", title="海口市计划（修订）", region="海南省")
    assert response.status_code == 200, response.text
    assert response.json()["action"] == "replace"
    answer = _ask(server, GBK_QUESTION)
    assert "80家" in answer["answer"] and "50家" not in answer["answer"]
    doc = httpx.get(f"{server}/documents/{name}", timeout=30).json()
    assert doc["title"] == "海口市计划（修订）" and doc["metadata"]["region"] == "海南省"


def test_updates_survive_a_restart(server: str, kb: Settings, real_qa: QA) -> None:
    assert _upload(server, "xining-plan.pdf", pdf(PDF_PAGES)).status_code == 201
    qa = with_index(real_qa, load_store(kb), kb)
    with running(create_app(kb, qa=qa)) as restarted:
        assert "xining-plan.pdf" in _sources(restarted)
        assert "20个" in _ask(restarted, PDF_QUESTION)["answer"]


@pytest.mark.parametrize(
    ("name", "data", "status", "code"),
    [
        ("notes.exe", b"MZ\x90\x00", 415, "unsupported_format"),
        ("empty.txt", b"", 400, "empty_document"),
        ("blank.txt", b"  \n\t \n", 400, "empty_document"),
        ("broken.pdf", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated", 400, None),
        ("scan.pdf", None, 400, "scanned_pdf"),
        ("broken.docx", b"PK\x03\x04 not really a zip", 400, None),
        ("../escape.txt", GBK_TEXT.encode(), 400, "invalid_filename"),
        ("/etc/cron.d/x.txt", GBK_TEXT.encode(), 400, "invalid_filename"),
        ("..\\escape.txt", GBK_TEXT.encode(), 400, "invalid_filename"),
        (".hidden.txt", GBK_TEXT.encode(), 400, "invalid_filename"),
    ],
)
def test_bad_uploads_get_a_clear_error_and_change_nothing(
    server: str, kb: Settings, name: str, data: bytes | None, status: int, code: str | None
) -> None:
    version, files = current_version(kb.index_dir), sorted(os.listdir(kb.corpus_dir))
    response = _upload(server, name, scanned_pdf() if data is None else data)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert {"code", "message"} <= set(error) and error["message"]
    if code:
        assert error["code"] == code
    assert current_version(kb.index_dir) == version
    assert sorted(os.listdir(kb.corpus_dir)) == files
    assert not (kb.index_dir.parent / "escape.txt").exists()
    assert _ask(server, "算力券")["answer"]


def test_duplicates_missing_documents_and_oversize(server: str, kb: Settings) -> None:
    data = GBK_TEXT.encode("gbk")
    assert _upload(server, "haikou.txt", data).status_code == 201
    again = _upload(server, "haikou.txt", data)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "document_exists")
    same = _upload(server, "haikou-copy.txt", data)
    assert (same.status_code, same.json()["error"]["code"]) == (409, "document_exists")
    assert "haikou.txt" in same.json()["error"]["message"]
    missing = _upload(server, "nowhere.txt", data, "PUT")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
    gone = httpx.delete(f"{server}/documents/nowhere.txt", timeout=30)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "not_found")
    no_file = httpx.post(f"{server}/documents", data={"title": "x"}, timeout=30)
    assert no_file.status_code == 422 and no_file.json()["error"]["code"]
    large = _upload(server, "large.txt", ("大模型" * 8_000_000).encode())
    assert (large.status_code, large.json()["error"]["code"]) == (413, "payload_too_large")
    assert _sources(server) >= {"haikou.txt"} and "large.txt" not in _sources(server)


def test_an_upload_cut_off_halfway_leaves_nothing(server: str, kb: Settings) -> None:
    version, files = current_version(kb.index_dir), sorted(os.listdir(kb.corpus_dir))
    boundary = "zhiceboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="half.txt"\r\nContent-Type: text/plain\r\n\r\n'
    ).encode() + GBK_TEXT.encode()
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /documents HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Type: multipart/form-data; boundary={boundary}\r\n".encode()
            + f"Content-Length: {len(head) + 10_000}\r\n\r\n".encode()
            + head
        )
        time.sleep(0.5)  # then the client goes away, the body never complete
    time.sleep(0.5)
    assert current_version(kb.index_dir) == version
    assert sorted(os.listdir(kb.corpus_dir)) == files
    assert "half.txt" not in _sources(server)
    assert httpx.get(f"{server}/healthz", timeout=10).status_code == 200


def test_queries_during_updates_see_one_state_or_the_other(server: str) -> None:
    """Readers run continuously while a document is added, replaced and removed."""
    name, old, new = "haikou.txt", "50家", "80家"
    errors: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        with httpx.Client(base_url=server, timeout=60) as client:
            while not stop.is_set():
                response = client.post("/ask", json={"question": GBK_QUESTION})
                if response.status_code != 200:
                    errors.append(f"{response.status_code} {response.text}")
                    continue
                answer = response.json()
                cited = {c["source"] for c in answer["citations"]}
                if answer["refused"]:
                    seen.add("absent")
                elif name in cited:
                    text = answer["answer"]
                    if (old in text) == (new in text):  # both, or neither: a mixed state
                        errors.append(f"mixed answer: {text}")
                    seen.add(old if old in text else new)

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    try:
        for _ in range(2):
            assert _upload(server, name, GBK_TEXT.encode("gbk")).status_code == 201
            time.sleep(0.3)
            changed = GBK_TEXT.replace(old, new).encode("gbk")
            assert _upload(server, name, changed, "PUT").status_code == 200
            time.sleep(0.3)
            assert httpx.delete(f"{server}/documents/{name}", timeout=60).status_code == 200
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in readers:
            thread.join()
    assert not errors, errors[:3]
    assert seen == {"absent", old, new}


def test_concurrent_updates_never_corrupt_the_index(server: str, kb: Settings) -> None:
    names = [f"city-{n}.txt" for n in range(6)]
    texts = {
        n: f"第{i}号城市大模型计划\n\n第{i}号城市提出建设{i + 3}个智算中心。\n"
        for i, n in enumerate(names)
    }
    results: dict[str, int] = {}

    def add(name: str) -> None:
        # More uploads than the queue holds: the rest are told when to come back.
        response = _upload(server, name, texts[name].encode())
        while response.status_code == 503:
            assert response.json()["error"]["code"] == "busy"
            time.sleep(int(response.headers["retry-after"]))
            response = _upload(server, name, texts[name].encode())
        results[name] = response.status_code

    threads = [threading.Thread(target=add, args=(n,)) for n in names]
    threads += [threading.Thread(target=add, args=(names[0],))]  # the same name twice
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(results[n] == 201 for n in names[1:]) and results[names[0]] in {201, 409}
    assert _sources(server) >= set(names)
    store = load_store(kb)  # consistent on disk (and in Milvus)
    manifest = read_manifest(kb.index_dir)
    assert manifest is not None and set(manifest.corpus) == set(store.documents) >= set(names)
    chunks = list(store.chunks())
    assert len({c.chunk_id for c in chunks}) == len(chunks) == len(store)
    for name in names:
        assert (kb.corpus_dir / name).read_text(encoding="utf-8") == texts[name]


def test_cli_add_and_remove_reach_a_running_service(
    server: str, kb: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "haikou-cli.txt"
    path.write_bytes(GBK_TEXT.encode("gbk"))
    env = {
        "ZHICE_CORPUS_DIR": str(kb.corpus_dir),
        "ZHICE_INDEX_DIR": str(kb.index_dir),
        **store_env(kb),
    }
    done = CliRunner().invoke(cli, ["add", str(path), "--region", "海南省"], env=env)
    assert done.exit_code == 0, done.output
    _eventually(lambda: "haikou-cli.txt" in _sources(server))
    assert "50家" in _ask(server, GBK_QUESTION)["answer"]
    done = CliRunner().invoke(cli, ["remove", "haikou-cli.txt"], env=env)
    assert done.exit_code == 0, done.output
    _eventually(lambda: "haikou-cli.txt" not in _sources(server))
    done = CliRunner().invoke(cli, ["remove", "haikou-cli.txt"], env=env)
    assert done.exit_code == 1 and "no document named" in done.output


def test_cli_add_keeps_the_per_document_limits(kb: Settings, tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    path.write_text("海南省支持大模型发展。" * 40, encoding="utf-8")  # 440 characters
    env = {
        "ZHICE_CORPUS_DIR": str(kb.corpus_dir),
        "ZHICE_INDEX_DIR": str(kb.index_dir),
        "ZHICE_MAX_DOCUMENT_CHARS": "400",
        **store_env(kb),
    }
    before = current_version(kb.index_dir)
    done = CliRunner().invoke(cli, ["add", str(path)], env=env)
    assert done.exit_code != 0 and "long.txt" in done.output and "400" in done.output
    assert current_version(kb.index_dir) == before and not (kb.corpus_dir / "long.txt").exists()


def _eventually(check: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


# --- crashes ---------------------------------------------------------------------------


@contextmanager
def _serving(kb: Settings) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m service serve` over the copies, in a child process we may kill."""
    env = {
        **os.environ,
        "ZHICE_CORPUS_DIR": str(kb.corpus_dir),
        "ZHICE_INDEX_DIR": str(kb.index_dir),
        **store_env(kb),
    }
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url, "/readyz")
        yield process, url
    finally:
        process.kill()
        process.wait()


def _state(kb: Settings) -> tuple[set[str], str | None]:
    manifest = read_manifest(kb.index_dir)
    assert manifest is not None
    return set(manifest.corpus), current_version(kb.index_dir)


def _previous_state_is_served(kb: Settings, before: tuple[set[str], str | None]) -> None:
    assert _state(kb) == before
    with _serving(kb) as (_, url):
        # What the killed write left (a staged upload, its unfinished version) is gone.
        versions = [p.name for p in kb.index_dir.iterdir() if p.name.startswith(("v-", ".tmp"))]
        assert versions == [before[1]]
        assert not [p for p in kb.corpus_dir.iterdir() if p.name.startswith(".upload-")]
        assert _sources(url) == before[0]
        assert _ask(url, PDF_QUESTION)["refused"]
        assert not _ask(url, "北京市人工智能算力券实施方案是哪个部门出台的？")["refused"]


def test_sigkill_during_an_upload_leaves_the_previous_state(kb: Settings) -> None:
    before = _state(kb)
    # 2,000 lines take seconds to embed, so the kill lands in the middle of the update.
    lines = [
        f"第{p}页第{n}行：西宁市第{p}批示范项目第{n}项建设情况说明。"
        for p in range(250)
        for n in range(8)
    ]
    pages = [lines[i : i + 8] for i in range(0, len(lines), 8)] + [PDF_PAGES[1]]
    data = pdf(pages)
    with _serving(kb) as (process, url):
        sender = threading.Thread(target=_quietly, args=(lambda: _upload(url, "big.pdf", data),))
        sender.start()
        time.sleep(3)
        process.send_signal(signal.SIGKILL)
        process.wait()
        sender.join()
    _previous_state_is_served(kb, before)


def test_sigkill_at_the_switch_leaves_the_previous_index(kb: Settings) -> None:
    """The most delicate moment: new version written and corpus changed, link not moved."""
    before = _state(kb)
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from ingest.loaders import load_bytes\n"
        "from service.config import Settings\n"
        "from ingest.update import update\n"
        "from service.answer.build import embedder_for\n"
        "s = Settings()\n"
        "data = Path(sys.argv[1]).read_bytes()\n"
        "update(s.corpus_dir, s.index_dir, s.embedding_model, embedder_for(s), 'add',\n"
        "       'xining-plan.pdf', load_bytes('xining-plan.pdf', data), data,\n"
        "       crash_before_switch=lambda: os.kill(os.getpid(), signal.SIGKILL),\n"
        "       milvus=s.milvus_target())\n"
    )
    upload = kb.index_dir.parent / "xining-plan.pdf"
    upload.write_bytes(pdf(PDF_PAGES))
    env = {
        **os.environ,
        "ZHICE_CORPUS_DIR": str(kb.corpus_dir),
        "ZHICE_INDEX_DIR": str(kb.index_dir),
        **store_env(kb),
    }
    done = subprocess.run([sys.executable, "-c", script, str(upload)], cwd=ROOT, env=env)
    assert done.returncode == -signal.SIGKILL
    # The corpus already holds the file (the next `zhice ingest` would index it), but the
    # index in force is the previous one, and that is what a restarted service serves.
    assert (kb.corpus_dir / "xining-plan.pdf").exists()
    _previous_state_is_served(kb, before)


def _quietly(call: Any) -> None:
    try:
        call()
    except httpx.HTTPError:
        pass
