"""`make bench`: latency, throughput, ingestion and startup figures, printed as a table."""

from __future__ import annotations

import os
import shutil
import statistics
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


def start_server(
    settings: Settings, *args: str, wait: float = 120
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start `zhice serve` (with `args`) and return it, its URL and the seconds until
    /readyz said ready (at most `wait`)."""
    port = free_port()
    env = {
        **os.environ,
        "ZHICE_INDEX_DIR": str(settings.index_dir),
        "ZHICE_CORPUS_DIR": str(settings.corpus_dir),
        "ZHICE_EMBEDDING_BACKEND": settings.embedding_backend,
        "ZHICE_MERGE_ABOVE": str(settings.merge_above),
    }
    began = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - began < wait:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url, time.perf_counter() - began
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"server did not become ready in {wait:.0f} s")


def startup(settings: Settings) -> float:
    """Seconds from `zhice serve` to ready over a built index."""
    proc, _, seconds = start_server(settings)
    proc.terminate()
    proc.wait(timeout=30)
    return seconds


def main() -> None:
    """Run every measurement and print the tables."""
    workdir = Path(tempfile.mkdtemp(prefix="zhice-bench-"))
    # A copy of the corpus: the live-update figures write into it.
    shutil.copytree(CORPUS, workdir / "corpus")
    chosen = Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index")
    backends = {"torch": chosen.model_copy(update={"embedding_backend": "torch"})}
    if chosen.embedding_backend != "torch":
        index_dir = workdir / f"index-{chosen.embedding_backend}"
        backends[chosen.embedding_backend] = chosen.model_copy(update={"index_dir": index_dir})
    backends["torch"] = backends["torch"].model_copy(update={"index_dir": workdir / "index-torch"})
    questions = [q.question for q in read_questions(QUESTIONS)]
    try:
        figures = _encoder_figures(backends, questions)
        rows = [(name, " | ".join(values)) for name, values in figures.items()]
        settings = backends[chosen.embedding_backend]
        encode_p50 = float(figures["query encode p50/p95/p99 (ms)"][-1].split(" / ")[0])
        encoder_qps = float(figures[f"encoder alone, {CLIENTS} threads (queries/s)"][-1])
        proc, url, _ = start_server(settings)
        try:
            rows += _http_figures(url, questions, encode_p50, encoder_qps)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  {' | '.join(backends)}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _encoder_figures(backends: dict[str, Settings], questions: list[str]) -> dict[str, list[str]]:
    """The encoder's figures for each backend, side by side (rounds interleaved, so the
    machine's other load falls on every backend alike)."""
    figures: dict[str, list[str]] = {}

    def add(name: str, value: str) -> None:
        figures.setdefault(name, []).append(value)

    embedders = {name: embedder_for(settings) for name, settings in backends.items()}
    texts = [c.search_text for d in load_corpus(CORPUS)[0] for c in chunk_document(d)]
    encode: dict[str, list[float]] = {name: [] for name in backends}
    bare: dict[str, list[float]] = {name: [] for name in backends}
    for _ in range(ROUNDS):
        for name, embedder in embedders.items():
            encode[name] += [timed(lambda q=q, e=embedder: e.embed_query(q)) for q in questions]
            bare[name].append(len(texts) / timed(lambda e=embedder: e.embed_documents(texts)))
    for name, settings in backends.items():
        embedder = embedders[name]
        e50, e95, e99 = percentiles(encode[name])
        add("query encode p50/p95/p99 (ms)", f"{e50:.1f} / {e95:.1f} / {e99:.1f}")
        bare_rate = 1000 * statistics.median(bare[name])
        add("bare encode (chunks/s)", f"{bare_rate:.1f}")
        began = time.perf_counter()
        result = ingest(
            settings.corpus_dir,
            settings.index_dir,
            settings.embedding_model,
            lambda e=embedder: e,
            backend=settings.embedding_backend,
            progress=False,
        )
        rate = result.chunks / (time.perf_counter() - began)
        add("ingestion (chunks/s)", f"{rate:.1f} ({rate / bare_rate:.0%} of bare)")
        with ThreadPoolExecutor(CLIENTS) as pool:
            began = time.perf_counter()
            list(pool.map(embedder.embed_query, questions * ROUNDS))
            qps = len(questions) * ROUNDS / (time.perf_counter() - began)
        add(f"encoder alone, {CLIENTS} threads (queries/s)", f"{qps:.1f}")
        add("startup to ready (s)", f"{startup(settings):.1f}")
        again = timed(
            lambda s=settings, e=embedder: ingest(
                s.corpus_dir,
                s.index_dir,
                s.embedding_model,
                lambda: e,
                backend=s.embedding_backend,
                progress=False,
            )
        )
        add("re-ingest unchanged corpus", f"{again:.0f} ms, 0 embedded")
        add("index size on disk", f"{_size(settings.index_dir) / 1024:.0f} KiB")
        add("chunks", f"{result.chunks}")
    return figures


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
