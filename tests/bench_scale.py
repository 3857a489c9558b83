"""`make bench-scale`: the local backend at 100,000 and 1,000,000 chunks, as a table and chart.

The corpus is synthetic: the reports' sentences recombined, four to a chunk, a hundred
chunks to a document. Every distinct sentence is embedded for real (a few thousand
passes of the default encoder) and tokenised once; a chunk's vector is the mean of its
sentences' vectors plus Gaussian noise, renormalised, and its tokens are its sentences'
tokens. The index is then written by the store's own writer (`build_version`, with the
postings given), so no nine-hour embedding run is needed. Such vectors cluster more
tightly than real ones (chunks sharing sentences are near-duplicates), which makes
an ANN's recall@10 against exact search a harder test, not an easier one: many
neighbours are almost tied.

Measured: build time, size on disk and RSS; dense p50/p99 and recall@10 (unfiltered,
one document, one department); BM25 p50/p99; /ask over HTTP p50/p99 on a real `zhice
serve`; add, replace and delete of a 10-chunk document over HTTP; the adds that land
while a background merge runs; startup to ready; and 8 clients against `--workers 1`
and `--workers 2`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt

from ingest.bm25 import Postings
from ingest.build import build_version
from ingest.chunking import chunk_document
from ingest.pipeline import load_corpus
from ingest.store import VectorIndex, load_index, read_manifest
from ingest.tokenize import Tokenizer
from ingest.types import Chunk, Document
from service.answer.build import embedder_for
from service.answer.filters import Filter
from service.answer.retrieval import Retriever
from service.answer.store import LocalStore
from service.config import Settings
from service.eval.evaluation import read_questions
from tests.bench import percentiles, start_server, timed
from tests.conftest import CORPUS, QUESTIONS

PER_DOCUMENT = 100
PER_CHUNK = 4
NOISE = 0.05
CLIENTS = 8
DEPARTMENTS = ("国务院", "工业和信息化部", "国家发展改革委", "科技部", "教育部")
REGIONS = ("广东省", "浙江省", "江苏省", "北京市", "上海市", "四川省", "湖北省", "山东省")
_SENTENCE = re.compile(r"[^。！？；\n]+[。！？；]?")


def sentences() -> list[str]:
    """Distinct sentences of the reports, 12 to 120 characters."""
    seen: dict[str, None] = {}
    for document in load_corpus(CORPUS)[0]:
        for chunk in chunk_document(document):
            for s in _SENTENCE.findall(chunk.text):
                if 12 <= len(s.strip()) <= 120:
                    seen.setdefault(s.strip(), None)
    return list(seen)


def synthesise(
    count: int, texts: Sequence[str], vectors: npt.NDArray[np.float32], tokens: list[list[int]]
) -> tuple[list[Document], list[Chunk], npt.NDArray[np.float32], npt.NDArray[np.int64], list[int]]:
    """Documents, chunks, vectors, concatenated token ids and token counts of `count` chunks."""
    rng = np.random.default_rng(7)
    picks = rng.integers(0, len(texts), size=(count, PER_CHUNK))
    documents, chunks = [], []
    for d in range(count // PER_DOCUMENT):
        source = f"syn-{d:06d}.txt"
        parts, offset, doc_chunks = [], 0, []
        for c in range(PER_DOCUMENT):
            row = picks[d * PER_DOCUMENT + c]
            text = "".join(texts[i] for i in row)
            doc_chunks.append((offset, offset + len(text), text, c))
            parts.append(text)
            offset += len(text) + 1
        title = f"合成文件{d}"
        metadata = {
            "department": DEPARTMENTS[d % len(DEPARTMENTS)],
            "region": REGIONS[d % len(REGIONS)],
            "date": f"{2015 + d % 10}-{1 + d % 12:02d}",
        }
        documents.append(Document(source, title, "\n".join(parts), f"{d:064x}", metadata=metadata))
        chunks += [
            Chunk(f"{source}#{c}:{d:08x}{c:04x}", source, title, start, end, text)
            for start, end, text, c in doc_chunks
        ]
    lengths = np.array([len(t) for t in tokens], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat_tokens = np.array([t for ts in tokens for t in ts], dtype=np.int64)
    chosen = picks.ravel()
    counts = lengths[chosen]
    index = np.repeat(starts[chosen] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)
    token_ids = flat_tokens[index + np.arange(counts.sum())]
    out = np.zeros((count, vectors.shape[1]), dtype=np.float32)
    for lo in range(0, count, 50_000):
        block = vectors[picks[lo : lo + 50_000]].mean(axis=1)
        block += rng.normal(0, NOISE / np.sqrt(vectors.shape[1]), block.shape).astype(np.float32)
        out[lo : lo + 50_000] = block / np.linalg.norm(block, axis=1, keepdims=True)
    per_chunk = counts.reshape(count, PER_CHUNK).sum(axis=1).tolist()
    return documents, chunks, out, token_ids, per_chunk


def rss_mib(pid: int) -> float:
    """Resident set size of a process (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def size_mib(path: Path) -> float:
    """Bytes on disk under path, each hard-linked file once (MiB)."""
    seen, total = set(), 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            st = p.stat()
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_blocks * 512
    return total / 2**20


def serve(settings: Settings, workers: int = 1) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start `zhice serve` on the index; return it, its URL and seconds until ready."""
    return start_server(settings, "--workers", str(workers), wait=300)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a server started by `serve`."""
    proc.terminate()
    proc.wait(timeout=60)


def throughput(url: str, questions: Sequence[str], rounds: int) -> float:
    """Answers a second for CLIENTS clients, each on its own keep-alive connection."""
    local = threading.local()

    def ask(question: str) -> None:
        if not hasattr(local, "http"):
            local.http = httpx.Client(base_url=url, timeout=120)
        local.http.post("/ask", json={"question": question}).raise_for_status()

    ready = 0
    while ready < 4 * CLIENTS:  # /readyz answered for one worker: wait for all of them
        answer = httpx.post(f"{url}/ask", json={"question": questions[0]}, timeout=120)
        ready = ready + 1 if answer.status_code == 200 else 0
        time.sleep(0 if ready else 0.5)
    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(ask, questions[:CLIENTS]))  # warm every client's connection
        began = time.perf_counter()
        list(pool.map(ask, list(questions) * rounds))
    return len(questions) * rounds / (time.perf_counter() - began)


def ten_chunk_document(edition: int = 1) -> bytes:
    """A report of ten paragraphs, each its own chunk (`edition` makes its text distinct)."""
    paragraphs = [
        f"第{n}条　海口市第{n}批大模型应用场景建设方案要求各区县在2027年前完成算力"
        f"基础设施改造，推进政务服务智能化，建设数据要素市场，培育第{n}批示范企业并给予资金支持，"
        f"同时加强安全评估与人才培养，形成可复制推广的经验做法和长效机制。各部门要明确责任分工，"
        f"建立定期调度和评估制度，对第{n}批项目的资金使用、建设进度和应用成效开展跟踪检查。"
        for n in range(1, 11)
    ]
    title = f"海口市大模型应用场景建设方案（第{edition}版）"
    return (title + "\n\n" + "\n\n".join(paragraphs) + "\n").encode()


def ask_and_update(
    client: httpx.Client, questions: Sequence[str], encode_p50: float
) -> dict[str, str]:
    """`/ask` latency over `questions` (after one warm-up), then the add, replace and
    delete of a 10-chunk document, each timed over HTTP."""
    client.post("/ask", json={"question": questions[0]}).raise_for_status()
    ask = [
        timed(lambda q=q: client.post("/ask", json={"question": q}).raise_for_status())
        for q in questions
    ]
    p50, _, p99 = percentiles(ask)
    rows = {
        "/ask over HTTP p50/p99 (ms)": f"{p50:.0f} / {p99:.0f} (encode + {p50 - encode_p50:.0f})"
    }
    files = {"file": ("haikou.txt", ten_chunk_document())}
    began = time.perf_counter()
    added = client.post("/documents", files=files).raise_for_status().json()
    add_ms = (time.perf_counter() - began) * 1000
    replace_ms = timed(lambda: client.put("/documents/haikou.txt", files=files).raise_for_status())
    delete_ms = timed(lambda: client.delete("/documents/haikou.txt").raise_for_status())
    rows[f"live add/replace/delete, {added['chunks']} chunks (ms)"] = (
        f"{add_ms:.0f} / {replace_ms:.0f} / {delete_ms:.0f}"
    )
    return rows


def update_during_merge(client: httpx.Client, index_dir: Path, size: int) -> dict[str, str]:
    """Delete documents until a background merge starts (the server runs with
    ZHICE_MERGE_ABOVE=0: past a fiftieth of the index), then add 10-chunk documents one
    after another until the merge is committed, timing each add. Adds kill no chunk, so
    the merge has committed once fewer are dead than after the deletes (not necessarily
    none: the last delete may land after the merge's snapshot)."""
    for d in range(size // 50 // PER_DOCUMENT + 1):
        client.delete(f"/documents/syn-{d:06d}.txt").raise_for_status()
    began, adds = time.perf_counter(), []
    manifest = read_manifest(index_dir)
    assert manifest is not None
    dead = manifest.dead_chunks
    while (manifest := read_manifest(index_dir)) is not None and manifest.dead_chunks >= dead:
        if len(adds) >= 5000:
            raise RuntimeError("the background merge did not finish")
        files = {"file": (f"during-{len(adds)}.txt", ten_chunk_document(len(adds) + 2))}
        adds.append(timed(lambda f=files: client.post("/documents", files=f).raise_for_status()))
    merge_s = time.perf_counter() - began
    p50, _, p99 = percentiles(adds or [0.0])
    return {
        "background merge, from the delete starting it (s)": f"{merge_s:.0f}",
        "  10-chunk adds meanwhile: count, p50/p99/max (ms)": (
            f"{len(adds)}, {p50:.0f} / {p99:.0f} / {max(adds or [0.0]):.0f}"
        ),
    }


def measure(size: int, workdir: Path, settings: Settings, workers: bool) -> dict[str, str]:
    """Build a synthetic index of `size` chunks and measure it."""
    rows: dict[str, str] = {}
    tokenizer = Tokenizer()
    embedder = embedder_for(settings)
    began = time.perf_counter()
    texts = sentences()
    vectors = embedder.embed_documents(texts)
    vocabulary: dict[str, int] = {}
    tokens = [
        [vocabulary.setdefault(t, len(vocabulary)) for t in tokenizer.tokenize(s)] for s in texts
    ]
    embed_s = time.perf_counter() - began
    began = time.perf_counter()
    documents, chunks, chunk_vectors, token_ids, lengths = synthesise(size, texts, vectors, tokens)
    postings = Postings.from_ids(list(vocabulary), token_ids, np.array(lengths))
    synth_s = time.perf_counter() - began
    began = time.perf_counter()
    index_dir = workdir / f"index-{size}"
    build_version(
        index_dir,
        model=settings.embedding_model,
        documents=documents,
        chunks=chunks,
        vectors=chunk_vectors,
        began=began,
        backend=settings.embedding_backend,
        postings=postings,
    )
    build_s = time.perf_counter() - began
    rows["sentences embedded for real"] = f"{len(texts)} ({embed_s:.0f} s)"
    rows["synthesis / build (s)"] = f"{synth_s:.0f} / {build_s:.0f}"
    rows["index size on disk (MiB)"] = f"{size_mib(index_dir):.0f}"

    began = time.perf_counter()
    index = load_index(index_dir, settings.embedding_model, settings.embedding_backend)
    load_s = time.perf_counter() - began
    store = LocalStore(index)  # builds the filter index
    retriever = Retriever(store, embedder, tokenizer)
    rows["load_index + filter index (s)"] = (
        f"{load_s:.2f} + {time.perf_counter() - began - load_s:.2f}"
    )
    rows["manifest ANN"] = f"{index.manifest.index_type} {dict(index.manifest.ann)}"
    questions = [q.question for q in read_questions(QUESTIONS)]
    encode = [timed(lambda q=q: embedder.embed_query(q)) for q in questions]
    queries = [embedder.embed_query(q) for q in questions]
    rows["query encode p50 (ms)"] = f"{percentiles(encode)[0]:.1f}"
    exact = VectorIndex([chunk_vectors])
    filters = {
        "unfiltered": None,
        "one document (100 chunks)": Filter(sources=("syn-000003.txt",)),
        f"one department (1/{len(DEPARTMENTS)})": Filter(department="科技部"),
    }
    for name, where in filters.items():
        allowed = store.filters.allowed(where)
        latency, recall = [], []
        for q in queries * 3:
            latency.append(timed(lambda q=q, a=allowed: index.vectors.search(q, 10, a)))
        for q in queries:
            _, got = index.vectors.search(q, 10, allowed)
            _, want = exact.search(q, 10, allowed)
            recall.append(len(set(got.tolist()) & set(want.tolist())) / max(len(want), 1))
        p50, _, p99 = percentiles(latency)
        rows[f"dense {name} p50/p99 (ms), recall@10"] = (
            f"{p50:.2f} / {p99:.2f}, {float(np.mean(recall)):.3f}"
        )
    chosen = dict(index.vectors.params)
    for ef in (32, 128) if chosen else ():  # the chosen efSearch is measured above
        index.vectors.params["efSearch"] = ef
        latency = [timed(lambda q=q: index.vectors.search(q, 10)) for q in queries * 3]
        recall = [
            len(set(index.vectors.search(q, 10)[1].tolist()) & set(exact.search(q, 10)[1].tolist()))
            / 10
            for q in queries
        ]
        rows[f"  HNSW efSearch={ef}: dense p50 (ms), recall@10"] = (
            f"{percentiles(latency)[0]:.2f}, {float(np.mean(recall)):.3f}"
        )
    index.vectors.params.update(chosen)
    prepared = [retriever.prepare(q, mode="bm25") for q in questions]
    bm25 = [timed(lambda p=p: retriever.search(p, 10, mode="bm25")) for p in prepared * 3]
    p50, _, p99 = percentiles(bm25)
    rows["BM25 top-10 p50/p99 (ms)"] = f"{p50:.1f} / {p99:.1f}"
    rows["bench process RSS after queries (MiB)"] = f"{rss_mib(os.getpid()):.0f}"

    served = settings.model_copy(
        update={"index_dir": index_dir, "corpus_dir": workdir / "corpus", "merge_above": 0}
    )
    (workdir / "corpus").mkdir(exist_ok=True)
    proc, url, ready_s = serve(served)
    try:
        rows["startup to ready (s)"] = f"{ready_s:.1f}"
        with httpx.Client(base_url=url, timeout=300) as client:
            rows |= ask_and_update(client, list(questions) * 2, percentiles(encode)[0])
            rows |= update_during_merge(client, index_dir, size)
        rows["server RSS after /ask and updates (MiB)"] = f"{rss_mib(proc.pid):.0f}"
    finally:
        stop(proc)
    if workers:
        rates = []
        for n in (1, 2):
            proc, url, _ = serve(served, n)
            try:
                rates.append(throughput(url, questions, 2))
            finally:
                stop(proc)
        rows[f"/ask, {CLIENTS} clients, 1 → 2 workers (q/s)"] = (
            f"{rates[0]:.1f} → {rates[1]:.1f} ({rates[1] / rates[0]:.2f}×)"
        )
    return rows


def chart(path: Path, results: dict[int, dict[str, str]]) -> None:
    """Bars of the latency p50s against the acceptance line, per corpus size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    picks: dict[str, tuple[str, float]] = {
        "dense p50": ("dense unfiltered", 5.0),
        "BM25 p50": ("BM25 top-10", 30.0),
        "/ask − encode": ("/ask over HTTP", 40.0),
    }
    figure = Figure(figsize=(7, 3.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / len(results)
    for n, (size, rows) in enumerate(results.items()):
        values = []
        for prefix, _ in picks.values():
            value = next(v for k, v in rows.items() if k.startswith(prefix))
            numbers = re.findall(r"[\d.]+", value)
            values.append(float(numbers[-1] if prefix.startswith("/ask") else numbers[0]))
        xs = [i + n * width for i in range(len(picks))]
        axes.bar(xs, values, width, label=f"{size:,} chunks")
    for i, (_, limit) in enumerate(picks.values()):
        if limit:
            left = i - width / 2
            axes.hlines(limit, left, left + width * len(results), colors="red", linestyles="dashed")
    middle = width * (len(results) - 1) / 2
    axes.set_xticks([i + middle for i in range(len(picks))], list(picks))
    axes.set_ylabel("ms (red: acceptance limit)")
    axes.set_title("zhice local backend at scale (make bench-scale)")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    """Measure each size, print the table, write JSON and a chart."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated chunk counts")
    parser.add_argument("--report", type=Path, default=Path("reports/bench-scale"))
    parser.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 workers run")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = Settings()
    workdir = Path(tempfile.mkdtemp(prefix="zhice-bench-scale-"))
    results: dict[int, dict[str, str]] = {}
    try:
        for n, size in enumerate(sizes):
            results[size] = measure(size, workdir, settings, not args.no_workers and n == 0)
            shutil.rmtree(workdir / f"index-{size}", ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    names = list(dict.fromkeys(k for rows in results.values() for k in rows))
    width = max(len(k) for k in names)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"load average {os.getloadavg()[0]:.2f}, {when}")
    print(f"{'measure':<{width}}  " + " | ".join(f"{s:,} chunks" for s in sizes))
    for k in names:
        print(f"{k:<{width}}  " + " | ".join(results[s].get(k, "—") for s in sizes))
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "bench-scale.json").write_text(json.dumps(results, ensure_ascii=False, indent=1))
    chart(args.report / "bench-scale.png", results)
    print(f"wrote {args.report}/bench-scale.json and bench-scale.png")


if __name__ == "__main__":
    main()
