"""`make bench-milvus`: the Milvus store on milvus-lite at 100,000 chunks (not in CI).

milvus-lite runs as its own server process (`python -m milvus_lite server`), as Milvus
would in a deployment, and `zhice serve` talks to it over gRPC. The corpus is
synthetic: the reports' sentences recombined, four to a chunk, a hundred chunks to a
document; every distinct sentence is embedded for real, and a chunk's vector is the
mean of its sentences' vectors plus Gaussian noise, renormalised. Chunks sharing
sentences are near-duplicates, so many neighbours almost tie and recall@10 against
exact search is a hard test rather than an easy one.

Measured: build time, size on disk and RSS; dense p50/p99 and recall@10 against exact
search (unfiltered, one document, twenty documents, one department); BM25 p50/p99;
/ask over HTTP p50/p99; add, replace and delete of a 10-chunk document over HTTP;
startup to ready.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from ingest.milvus_write import build_milvus
from ingest.types import Chunk, Document
from service.answer.build import embedder_for
from service.answer.filters import Filter
from service.answer.store import load_store
from service.config import Settings
from service.eval.evaluation import read_questions
from tests.bench import percentiles, timed
from tests.bench_scale import (
    DEPARTMENTS,
    NOISE,
    PER_CHUNK,
    PER_DOCUMENT,
    REGIONS,
    ask_and_update,
    rss_mib,
    sentences,
    size_mib,
)
from tests.conftest import QUESTIONS, free_port


def synthesise(
    count: int, texts: Sequence[str], vectors: npt.NDArray[np.float32]
) -> tuple[list[Document], list[Chunk], npt.NDArray[np.float32]]:
    """Documents, chunks and vectors of `count` chunks recombined from `texts`."""
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(texts), size=(count, PER_CHUNK))
    documents, chunks = [], []
    for d in range(count // PER_DOCUMENT):
        source = f"syn-{d:06d}.txt"
        parts, offset, title = [], 0, f"合成文件{d}"
        for c in range(PER_DOCUMENT):
            text = "".join(texts[i] for i in picks[d * PER_DOCUMENT + c])
            chunks.append(
                Chunk(
                    f"{source}#{c}:{d:08x}{c:04x}", source, title, offset, offset + len(text), text
                )
            )
            parts.append(text)
            offset += len(text) + 1
        metadata = {
            "department": DEPARTMENTS[d % len(DEPARTMENTS)],
            "region": REGIONS[d % len(REGIONS)],
            "date": f"{2015 + d % 10}-{1 + d % 12:02d}",
        }
        documents.append(Document(source, title, "\n".join(parts), f"{d:064x}", metadata=metadata))
    block = vectors[picks].mean(axis=1)
    block += rng.normal(0, NOISE / np.sqrt(vectors.shape[1]), block.shape).astype(np.float32)
    return documents, chunks, block / np.linalg.norm(block, axis=1, keepdims=True)


def start(
    command: list[str], env: dict[str, str], url: str, path: str
) -> tuple[subprocess.Popen[bytes], float]:
    """Start a process and wait until GET url+path answers (or its port opens)."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{command} exited")
        time.sleep(0.1)
    return proc, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=50, help="dev questions timed")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="zhice-bench-milvus-"))
    rows: dict[str, str] = {}
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    data = workdir / "milvus"
    milvus_cmd = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data)]
    milvus_cmd += ["--host", "127.0.0.1", "--port", str(port)]
    lite = subprocess.Popen(milvus_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    settings = Settings(
        corpus_dir=workdir / "corpus",
        index_dir=workdir / "index",
        store="milvus",
        milvus_uri=uri,
        milvus_collection="bench",
    )
    settings.corpus_dir.mkdir()
    target = settings.milvus_target()
    assert target is not None
    try:
        embedder = embedder_for(settings)
        texts = sentences()
        began = time.perf_counter()
        vectors = embedder.embed_documents(texts)
        rows["sentences embedded for real"] = f"{len(texts)} ({time.perf_counter() - began:.0f} s)"
        documents, chunks, chunk_vectors = synthesise(args.chunks, texts, vectors)
        began = time.perf_counter()
        build_milvus(
            settings.index_dir,
            target,
            model=settings.embedding_model,
            documents=documents,
            chunks=chunks,
            vectors=chunk_vectors,
            began=began,
            backend=settings.embedding_backend,
        )
        rows["build: tokenise, insert, index (s)"] = f"{time.perf_counter() - began:.0f}"
        rows["size on disk: Milvus data + catalog (MiB)"] = (
            f"{size_mib(data):.0f} + {size_mib(settings.index_dir):.0f}"
        )
        store = load_store(settings)
        questions = [q.question for q in read_questions(QUESTIONS)][: args.questions]
        encode = [timed(lambda q=q: embedder.embed_query(q)) for q in questions]
        queries = [embedder.embed_query(q) for q in questions]
        encode_p50 = percentiles(encode)[0]
        rows["query encode p50 (ms)"] = f"{encode_p50:.1f}"
        store.dense(queries[0], 10, None)  # loads the collection
        filters = {
            "unfiltered": None,
            "one document (100 chunks)": Filter(sources=("syn-000003.txt",)),
            # At EXACT_UP_TO: the slowest filter ranked exactly.
            "twenty documents (2,000 chunks)": Filter(
                sources=tuple(f"syn-{d:06d}.txt" for d in range(100, 120))
            ),
            f"one department (1/{len(DEPARTMENTS)})": Filter(department="科技部"),
        }
        departments = np.array(
            [DEPARTMENTS[int(c.source[4:10]) % len(DEPARTMENTS)] for c in chunks]
        )
        sources = np.array([c.source for c in chunks])
        keys = {c.chunk_id: i for i, c in enumerate(chunks)}
        for name, where in filters.items():
            mask = np.ones(len(chunks), dtype=bool)
            if where is not None and where.sources:
                mask = np.isin(sources, where.sources)
            elif where is not None:
                mask = departments == "科技部"
            latency, recall = [], []
            for q in queries:
                latency.append(timed(lambda q=q, w=where: store.dense(q, 10, w)))
                got = store.get([k for k, _ in store.dense(q, 10, where)])
                found = {keys[c.chunk_id] for c in got.values()}
                scores = np.where(mask, chunk_vectors @ q, -np.inf)
                want = set(np.argsort(-scores)[:10].tolist())
                recall.append(len(found & want) / 10)
            p50, _, p99 = percentiles(latency)
            rows[f"dense {name} p50/p99 (ms), recall@10"] = (
                f"{p50:.1f} / {p99:.1f}, {float(np.mean(recall)):.3f}"
            )
        from ingest.tokenize import Tokenizer

        tokenizer = Tokenizer()
        tokens = [tokenizer.tokenize(q) for q in questions]
        bm25 = [timed(lambda t=t: store.lexical(t, {}, 300, None)) for t in tokens]
        p50, _, p99 = percentiles(bm25)
        rows["BM25 top-300 p50/p99 (ms)"] = f"{p50:.1f} / {p99:.1f}"
        rows["milvus-lite server RSS after build and queries (MiB)"] = f"{rss_mib(lite.pid):.0f}"

        zport = free_port()
        env = {
            **os.environ,
            "ZHICE_STORE": "milvus",
            "ZHICE_MILVUS_URI": uri,
            "ZHICE_MILVUS_COLLECTION": "bench",
            "ZHICE_INDEX_DIR": str(settings.index_dir),
            "ZHICE_CORPUS_DIR": str(settings.corpus_dir),
        }
        url = f"http://127.0.0.1:{zport}"
        serve = [sys.executable, "-m", "service", "serve", "--port", str(zport)]
        proc, ready_s = start(serve, env, url, "/readyz")
        try:
            rows["startup to ready (s)"] = f"{ready_s:.1f}"
            with httpx.Client(base_url=url, timeout=300) as client:
                rows |= ask_and_update(client, questions, encode_p50)
            rows["zhice serve RSS / milvus-lite RSS (MiB)"] = (
                f"{rss_mib(proc.pid):.0f} / {rss_mib(lite.pid):.0f}"
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        lite.terminate()
        lite.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(map(len, rows))
    print(f"\nmilvus-lite {args.chunks:,} chunks (load average {os.getloadavg()[0]:.1f})")
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
