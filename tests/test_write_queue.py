"""Writes never starve reads: document updates queue for ingestion threads of their own.

A real uvicorn server over a private copy of the corpus, with a fake embedder that holds
every update at a gate until the test opens it: while the one ingestion thread is stuck
there (holding the index lock) and the queue is full, further uploads are refused at
once, and probes, questions and chat are answered. Nor does an update wait for the merge
of the delta segment that an earlier one started.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ingest.pipeline import ingest
from ingest.store import current_version, read_manifest
from service.answer.build import build_qa
from service.api.app import create_app
from service.api.jobs import IngestQueue, Job
from service.api.schemas.core import DocumentUpdate
from service.config import Settings
from service.errors import BusyError
from tests.conftest import Gated, running
from tests.fakes import HashEmbedder

ASYNC = {"Prefer": "respond-async"}
QUESTION = {"question": "算力券是什么？"}


def _text(n: int) -> bytes:
    return f"第{n}号城市大模型计划\n\n第{n}号城市提出建设{n + 3}个智算中心。\n".encode()


def _upload(url: str, name: str, data: bytes, **headers: str) -> httpx.Response:
    files = {"file": (name, data, "text/plain")}
    return httpx.post(f"{url}/documents", files=files, headers=headers, timeout=30)


def _reads_answer(url: str) -> None:
    """Probes, questions, search and chat all answer (each within its timeout)."""
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/readyz").status_code == 200
        assert http.post("/ask", json=QUESTION).status_code == 200
        assert http.post("/search", json={"query": "算力券"}).status_code == 200
        chat = {"model": "zhice", "messages": [{"role": "user", "content": "算力券是什么？"}]}
        assert http.post("/v1/chat/completions", json=chat).status_code == 200
        assert http.get("/documents").status_code == 200


def test_a_full_queue_refuses_at_once_while_reads_go_on(gated: Gated) -> None:
    jobs = []
    for n in range(3):  # one runs (and waits at the gate), two wait for it
        accepted = _upload(gated.url, f"city-{n}.txt", _text(n), **ASYNC)
        assert accepted.status_code == 202, accepted.text
        assert accepted.headers["location"].endswith(f"/jobs/{accepted.json()['id']}")
        jobs.append(accepted.json()["id"])
    assert gated.embedder.holding.wait(timeout=30)  # the first holds the index lock

    refused = _upload(gated.url, "city-9.txt", _text(9))
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "busy"
    assert int(refused.headers["retry-after"]) >= 1
    _reads_answer(gated.url)
    states = [httpx.get(f"{gated.url}/jobs/{j}", timeout=10).json()["status"] for j in jobs]
    assert states == ["running", "queued", "queued"]

    gated.embedder.gate.set()
    for job in jobs:
        assert _finished(gated.url, job)["status"] == "done"
    sources = {d["source"] for d in httpx.get(f"{gated.url}/documents").json()["documents"]}
    assert {"city-0.txt", "city-1.txt", "city-2.txt"} <= sources
    assert "city-9.txt" not in sources


def test_a_flood_of_large_uploads_leaves_probes_and_questions_answering(gated: Gated) -> None:
    """50 concurrent 5 MB uploads (the threadpool-exhaustion report): none waits."""
    assert _upload(gated.url, "city-0.txt", _text(0), **ASYNC).status_code == 202
    assert gated.embedder.holding.wait(timeout=30)
    big = "大模型政策文本。".encode() * (5 * 1024 * 1024 // 24)

    with ThreadPoolExecutor(50) as pool:
        flood = [
            pool.submit(_upload, gated.url, f"big-{n}.txt", b"%d" % n + big) for n in range(50)
        ]
        # Two places were free: those two uploads wait for their jobs (behind the gate);
        # the other 48 are refused without their bodies being read.
        _eventually(lambda: sum(f.done() for f in flood) == 48)
        _reads_answer(gated.url)
        assert [f.result().status_code for f in flood if f.done()] == [503] * 48
        gated.embedder.gate.set()
        waited = [f.result().status_code for f in flood if f.result().status_code != 503]
    assert len(waited) == 2 and set(waited) <= {201, 413}
    _reads_answer(gated.url)


def test_an_update_waits_for_its_result_unless_asked_not_to(gated: Gated) -> None:
    gated.embedder.gate.set()
    done = _upload(gated.url, "city-1.txt", _text(1))
    assert done.status_code == 201 and done.json()["action"] == "add"
    removed = httpx.delete(f"{gated.url}/documents/city-1.txt", headers=ASYNC, timeout=30)
    assert removed.status_code == 202 and removed.json()["action"] == "remove"
    job = _finished(gated.url, removed.json()["id"])
    assert job["status"] == "done" and job["result"]["chunks"] == 0


def test_a_failed_job_says_why(gated: Gated) -> None:
    gated.embedder.gate.set()
    accepted = _upload(gated.url, "empty.txt", b"  \n", **ASYNC)
    assert accepted.status_code == 202
    job = _finished(gated.url, accepted.json()["id"])
    assert job["status"] == "failed" and job["error"]["code"] == "empty_document"
    assert job["result"] is None


def test_bad_names_are_refused_before_queueing(gated: Gated) -> None:
    refused = _upload(gated.url, "../escape.txt", _text(1), **ASYNC)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_filename"
    missing = httpx.get(f"{gated.url}/jobs/0123456789abcdef", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def _eventually(check: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _finished(url: str, job: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=10) as http:
        for _ in range(600):
            body: dict[str, Any] = http.get(f"/jobs/{job}").json()
            if body["status"] in ("done", "failed"):
                return body
            time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish")


# --- the queue itself ------------------------------------------------------------------


def _result(source: str) -> DocumentUpdate:
    return DocumentUpdate(action="add", source=source, chunks=1, embedded=1, documents=1, seconds=0)


@pytest.mark.local_store("merging the local index's delta segment")
def test_an_update_never_waits_for_the_merge_an_earlier_one_started(
    fake_settings: Settings,
) -> None:
    settings = Settings(**(fake_settings.model_dump() | {"merge_above": 0}))
    ingest(settings.corpus_dir, settings.index_dir, "fake-hash", HashEmbedder, progress=False)
    app = create_app(settings, qa=build_qa(settings, HashEmbedder()))
    state = app.state.zhice
    holding, gate = threading.Event(), threading.Event()

    def hold() -> None:  # the merged segment is built; the merge waits before rebasing
        holding.set()
        if not gate.wait(timeout=120):
            raise TimeoutError("the test never opened the gate")

    state.merges.before_rebase = hold
    with running(app) as url:
        try:
            # 16 dead chunks: more than a fiftieth of the index, so a merge starts
            removed = httpx.delete(f"{url}/documents/002_d31665734ab7f792.txt", timeout=30)
            assert removed.status_code == 200, removed.text
            assert holding.wait(timeout=60)
            added = _upload(url, "city-1.txt", _text(1))  # lands while the merge is held
            assert added.status_code == 201, added.text
            during = read_manifest(settings.index_dir)
            assert during is not None and during.dead_chunks == 16 and during.delta_chunks
        finally:
            gate.set()
        deadline = time.monotonic() + 60
        while state.qa.retriever.store.path.name != current_version(settings.index_dir) or (
            read_manifest(settings.index_dir).dead_chunks  # type: ignore[union-attr]
        ):
            assert time.monotonic() < deadline, "the merge was not committed and served"
            time.sleep(0.01)
        merged = read_manifest(settings.index_dir)
        assert merged is not None and merged.delta_chunks == added.json()["chunks"]
        sources = {d["source"] for d in httpx.get(f"{url}/documents").json()["documents"]}
        assert "city-1.txt" in sources and "002_d31665734ab7f792.txt" not in sources
        found = httpx.post(f"{url}/search", json={"query": "第1号城市智算中心"}).json()
        assert found["passages"][0]["source"] == "city-1.txt"


def test_places_are_bounded_and_given_back() -> None:
    queue = IngestQueue(workers=1, waiting=1)
    try:
        first, second = queue.admit(), queue.admit()
        with pytest.raises(BusyError) as refused:
            queue.admit()
        assert refused.value.status == 503 and refused.value.retry_after >= 1
        first.release()
        first.release()  # once only
        third = queue.admit()  # the unused place came back
        gate = threading.Event()
        job = Job("add", "a.txt", None)
        done = queue.submit(second, job, lambda: gate.wait(10) and _result("a.txt"))
        with pytest.raises(BusyError):
            queue.admit()  # a submitted job keeps its place until it has run
        gate.set()
        assert done.result(timeout=10).source == "a.txt"
        assert queue.get(job.id) is job and job.status == "done"
        third.release()
        queue.admit()
    finally:
        queue.shutdown()


def test_finished_jobs_are_forgotten_oldest_first() -> None:
    queue = IngestQueue(workers=1, waiting=0, keep=3)
    try:
        jobs = [Job("add", f"{n}.txt", None) for n in range(5)]
        for job in jobs:
            queue.submit(queue.admit(), job, lambda: _result("x.txt")).result(timeout=10)
        assert [queue.get(j.id) is not None for j in jobs] == [False, False, True, True, True]
    finally:
        queue.shutdown()
