"""`make bench`: latency, throughput, ingestion and startup figures, printed as a table."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from ingest.chunking import chunk_document
from ingest.pipeline import ingest, load_corpus
from service.answer.build import embedder_for
from service.config import Settings
from service.eval.evaluation import read_questions
from tests.conftest import CORPUS, QUESTIONS, free_port
from tests.samples import docx_bytes

ROUNDS = 3
CLIENTS = 8


def percentiles(samples: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95, p99 of samples (milliseconds)."""
    ordered = sorted(samples)

    def pick(p: int) -> float:
        return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]

    return pick(50), pick(95), pick(99)


def timed(func: Callable[[], object]) -> float:
    """Milliseconds one call takes."""
    began = time.perf_counter()
    func()
    return (time.perf_counter() - began) * 1000


def start_server(settings: Settings) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start `zhice serve` and return it, its URL and the seconds until /readyz said ready."""
    port = free_port()
    env = {
        **os.environ,
        "ZHICE_INDEX_DIR": str(settings.index_dir),
        "ZHICE_CORPUS_DIR": str(settings.corpus_dir),
    }
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - began < 120:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - began
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not become ready in 120 s")


def main() -> None:
    """Run every measurement and print the table."""
    workdir = Path(tempfile.mkdtemp(prefix="zhice-bench-"))
    # A copy of the corpus: the live-update figures write into it.
    shutil.copytree(CORPUS, workdir / "corpus")
    settings = Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index")
    questions = [q.question for q in read_questions(QUESTIONS)]
    embedder = embedder_for(settings)
    rows: list[tuple[str, str]] = []

    # Ingestion against bare model.encode on the same chunks.
    texts = [c.search_text for d in load_corpus(CORPUS)[0] for c in chunk_document(d)]
    bare = timed(lambda: embedder.embed_documents(texts)) / 1000
    began = time.perf_counter()
    result = ingest(CORPUS, settings.index_dir, settings.embedding_model, lambda: embedder)
    full = time.perf_counter() - began
    again = timed(
        lambda: ingest(CORPUS, settings.index_dir, settings.embedding_model, lambda: embedder)
    )
    rows += [
        ("chunks", f"{result.chunks}"),
        ("bare encode, chunks/s", f"{len(texts) / bare:.1f}"),
        ("ingestion, chunks/s", f"{result.chunks / full:.1f} ({bare / full:.0%} of bare)"),
        ("re-ingest unchanged corpus", f"{again:.0f} ms, 0 embedded"),
        ("index size on disk", f"{_size(settings.index_dir) / 1024:.0f} KiB"),
    ]

    # The bare query encoder, the floor /ask latency is measured against.
    encode = [timed(lambda q=q: embedder.embed_query(q)) for q in questions * ROUNDS]
    e50, e95, e99 = percentiles(encode)
    rows.append(("query encode p50/p95/p99", f"{e50:.1f} / {e95:.1f} / {e99:.1f} ms"))
    with ThreadPoolExecutor(CLIENTS) as pool:
        began = time.perf_counter()
        list(pool.map(embedder.embed_query, questions * ROUNDS))
        encoder_qps = len(questions) * ROUNDS / (time.perf_counter() - began)
    rows.append((f"encoder alone, {CLIENTS} threads", f"{encoder_qps:.1f} queries/s"))

    proc, url, startup = start_server(settings)
    try:
        rows.append(("startup to ready", f"{startup:.1f} s"))
        rows += _http_figures(url, questions, e50, encoder_qps)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _http_figures(
    url: str, questions: list[str], encode_p50: float, encoder_qps: float
) -> list[tuple[str, str]]:
    with httpx.Client(base_url=url, timeout=60) as client:
        client.post("/ask", json={"question": questions[0]})  # warm up
        total: list[float] = []
        stages: dict[str, list[float]] = {}
        for question in questions * ROUNDS:
            began = time.perf_counter()
            body = client.post("/ask", json={"question": question}).json()
            total.append((time.perf_counter() - began) * 1000)
            for stage, ms in body["timings_ms"].items():
                stages.setdefault(stage, []).append(ms)
    p50, p95, p99 = percentiles(total)
    rows = [
        ("/ask over HTTP p50/p95/p99", f"{p50:.1f} / {p95:.1f} / {p99:.1f} ms"),
        ("/ask p50 ÷ encode p50", f"{p50 / encode_p50:.2f}×"),
        ("/ask p99 ÷ p50", f"{p99 / p50:.2f}×"),
    ]
    for stage, samples in stages.items():
        s50, s95, s99 = percentiles(samples)
        rows.append((f"  stage {stage} p50/p95/p99", f"{s50:.2f} / {s95:.2f} / {s99:.2f} ms"))

    clients = threading.local()

    def ask(question: str) -> None:
        # One keep-alive connection per client thread, as a chatbot backend would hold.
        if not hasattr(clients, "http"):
            clients.http = httpx.Client(base_url=url, timeout=60)
        clients.http.post("/ask", json={"question": question}).raise_for_status()

    with ThreadPoolExecutor(CLIENTS) as pool:
        began = time.perf_counter()
        list(pool.map(ask, questions * ROUNDS))
        qps = len(questions) * ROUNDS / (time.perf_counter() - began)
    rows.append(
        (f"/ask, {CLIENTS} clients", f"{qps:.1f} queries/s ({qps / encoder_qps:.0%} of encoder)")
    )
    return rows + _update_figures(url)


def _update_figures(url: str) -> list[tuple[str, str]]:
    """Live updates: upload, replace and delete documents of two sizes over HTTP."""
    short = "海口市大模型产业发展计划\n\n海口市提出到2027年培育50家大模型服务企业。\n"
    paragraphs = [
        f"第{n}条：示范城市第{n}批大模型应用场景建设要求与保障措施说明。" for n in range(300)
    ]
    documents = {
        "short.txt": short.encode("gbk"),
        "long.docx": docx_bytes(paragraphs, heading="示范城市大模型应用场景建设方案"),
    }
    rows = []
    with httpx.Client(base_url=url, timeout=300) as client:
        for name, data in documents.items():
            files = {"file": (name, data)}
            began = time.perf_counter()
            added = client.post("/documents", files=files).raise_for_status().json()
            add_ms = (time.perf_counter() - began) * 1000
            replace_ms = timed(
                lambda n=name, f=files: client.put(f"/documents/{n}", files=f).raise_for_status()
            )
            delete_ms = timed(lambda n=name: client.delete(f"/documents/{n}").raise_for_status())
            rows.append(
                (
                    f"live {name} ({added['chunks']} chunks) add/replace/delete",
                    f"{add_ms:.0f} / {replace_ms:.0f} / {delete_ms:.0f} ms",
                )
            )
    return rows


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


if __name__ == "__main__":
    main()
