"""The local store at scale, in miniature: live updates write a delta segment that
searches exactly like a full rebuild, memory-mapped loading answers like vectors held in
memory, and the ANN index and its parameters are chosen by size and recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest.bm25 import BM25, Postings
from ingest.build import build_version
from ingest.loaders import load_bytes
from ingest.pipeline import ingest
from ingest.store import (
    DEAD,
    DELTA,
    LoadedIndex,
    VectorIndex,
    ann_params,
    current_path,
    load_index,
    read_manifest,
)
from ingest.tokenize import Tokenizer
from ingest.types import Chunk, Document
from ingest.update import update
from service.answer.filters import Filter
from service.answer.retrieval import Mode, Retriever
from service.answer.store import LocalStore
from service.config import Settings
from tests.fakes import HashEmbedder

pytestmark = pytest.mark.local_store("FAISS/HNSW segments, delta files and memory-mapped loading")

QUESTIONS = ("算力券怎么申请", "政务大模型的安全要求", "海口市人工智能产业", "数据要素市场建设")
ADDED = "海口市人工智能产业发展计划\n\n海口市提出到2027年培育50家人工智能企业，建设算力中心。\n"
REPLACED = (
    "地方政策汇编（修订）\n\n广东省发放算力券，支持中小企业使用智能算力，政务大模型试点扩大。\n"
)


def _ingest(corpus: Path, index: Path) -> None:
    ingest(corpus, index, "fake-hash", HashEmbedder, progress=False)


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer()


def _results(
    index: LoadedIndex, tokenizer: Tokenizer, where: Filter | None = None
) -> list[list[tuple[str, float]]]:
    """For every question and retriever: the top chunks by id and score."""
    retriever = Retriever(LocalStore(index), HashEmbedder(), tokenizer)
    out = []
    modes: tuple[Mode, ...] = ("dense", "bm25", "hybrid")
    for question in QUESTIONS:
        for mode in modes:
            hits = retriever.search(retriever.prepare(question, mode), 8, where, mode)
            out.append(sorted((h.chunk.chunk_id, round(h.score, 4)) for h in hits))
    return out


def _change(settings: Settings, merge_above: int, tokenizer: Tokenizer) -> LoadedIndex:
    """Add one report, replace another, remove a third, as live updates."""
    corpus, index = settings.corpus_dir, settings.index_dir
    for action, source, text in (
        ("add", "haikou.txt", ADDED),
        ("replace", "002_d31665734ab7f792.txt", REPLACED),
        ("remove", "004_aed4a49d50658c96.txt", None),
    ):
        data = text.encode() if text else None
        document = load_bytes(source, data) if data else None
        result = update(
            corpus,
            index,
            "fake-hash",
            HashEmbedder(),
            action,  # type: ignore[arg-type]
            source,
            document,
            data,
            merge_above=merge_above,
            tokenizer=tokenizer,
        )
    return result.index


@pytest.mark.parametrize("merge_above", [10_000, 0], ids=["delta", "merged"])
def test_live_updates_search_like_a_full_rebuild(
    fake_settings: Settings, tmp_path: Path, merge_above: int, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    live = _change(fake_settings, merge_above, tokenizer)
    version = current_path(fake_settings.index_dir)
    if merge_above:  # a delta segment and dead ids beside the shared first segment
        assert (version / DELTA).is_dir() and (version / DEAD).is_file()
        assert live.manifest.dead_chunks > 0 and live.manifest.delta_chunks > 0
    else:  # every update merged into one segment
        assert not (version / DELTA).exists()
    rebuilt_dir = tmp_path / "rebuilt"
    _ingest(fake_settings.corpus_dir, rebuilt_dir)
    rebuilt = load_index(rebuilt_dir, "fake-hash")
    assert sorted(live.documents) == sorted(rebuilt.documents)
    assert sorted(c.chunk_id for c in live.chunks) == sorted(c.chunk_id for c in rebuilt.chunks)
    assert live.manifest.chunk_count == rebuilt.manifest.chunk_count == len(live.chunks)
    assert live.documents["haikou.txt"].text == rebuilt.documents["haikou.txt"].text
    for where in (None, Filter(sources=("haikou.txt", "002_d31665734ab7f792.txt"))):
        assert _results(live, tokenizer, where) == _results(rebuilt, tokenizer, where)
    assert live.bm25.term_idf("算力") == pytest.approx(rebuilt.bm25.term_idf("算力"), rel=1e-6)


def test_an_update_shares_the_first_segment_by_hard_links(
    fake_settings: Settings, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    before = current_path(fake_settings.index_dir).resolve()
    inode = (before / "vectors.npy").stat().st_ino
    _change(fake_settings, 10_000, tokenizer)
    after = current_path(fake_settings.index_dir).resolve()
    assert after != before and not before.exists()  # the old version is gone ...
    assert (after / "vectors.npy").stat().st_ino == inode  # ... its segment lives on


def _eager(index: LoadedIndex) -> LoadedIndex:
    """The same index with everything read into memory: chunk objects, plain arrays."""
    segments = [
        Postings(list(s.terms), *(np.array(a) for a in (s.indptr, s.docs, s.tf, s.lengths)))
        for s in index.bm25.segments
    ]
    alive = np.ones(sum(len(s) for s in segments), dtype=bool)
    dead = index.path / DEAD
    if dead.exists():
        alive[np.load(dead)] = False
    return LoadedIndex(
        path=index.path,
        manifest=index.manifest,
        documents={s: index.documents[s] for s in index.documents},
        chunks=list(index.chunks),
        vectors=VectorIndex([index.vectors.vectors()]),
        bm25=BM25(segments, alive),
    )


def test_memory_mapped_index_answers_like_an_eager_one(
    fake_settings: Settings, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    mapped = _change(fake_settings, 10_000, tokenizer)
    assert isinstance(mapped.vectors.vectors(), np.ndarray)
    assert isinstance(mapped.bm25.segments[0].docs, np.memmap)
    eager = _eager(mapped)
    for where in (None, Filter(department="工业和信息化部"), Filter(sources=("haikou.txt",))):
        assert _results(mapped, tokenizer, where) == _results(eager, tokenizer, where)


def test_ann_index_is_chosen_by_size() -> None:
    assert ann_params(1_000) == {} and ann_params(50_000) == {}
    assert ann_params(1_000_000) == {"M": 32, "efConstruction": 40, "efSearch": 256}
    assert ann_params(100_000)["efSearch"] < ann_params(1_000_000)["efSearch"]
    assert ann_params(5_000_000)["efSearch"] > ann_params(1_000_000)["efSearch"]


def _clustered(count: int, dim: int = 32) -> np.ndarray:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, dim))
    vectors = centres[rng.integers(0, 40, count)] + rng.normal(0, 0.3, (count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_hnsw_is_recorded_in_the_manifest_and_memory_mapped(tmp_path: Path) -> None:
    vectors = _clustered(3_000)
    chunks = [
        Chunk(f"d{i // 100}.txt#{i}:{i:08x}", f"d{i // 100}.txt", "t", 0, 1, "文")
        for i in range(len(vectors))
    ]
    documents = [Document(f"d{d}.txt", "t", "文", f"{d:064x}") for d in range(30)]
    params = {"M": 16, "efConstruction": 40, "efSearch": 16}
    build_version(
        tmp_path,
        model="fake-hash",
        documents=documents,
        chunks=chunks,
        vectors=vectors,
        began=0.0,
        postings=Postings.build([["文"]] * len(chunks)),
        ann=params,
    )
    manifest = read_manifest(tmp_path)
    assert manifest is not None
    assert manifest.index_type == "IndexHNSWFlat" and manifest.ann == params
    index = load_index(tmp_path, "fake-hash")
    exact = VectorIndex([vectors])
    few = np.arange(500, 600, dtype=np.int64)  # one document: searched row by row
    many = np.arange(0, 3_000, 2, dtype=np.int64)  # half: HNSW keeps twice the candidates
    for allowed in (None, few, many):
        recall = []
        for q in vectors[:50]:
            _, got = index.vectors.search(q, 10, allowed)
            _, want = exact.search(q, 10, allowed)
            assert allowed is None or set(got.tolist()) <= set(allowed.tolist())
            recall.append(len(set(got.tolist()) & set(want.tolist())) / 10)
        assert np.mean(recall) >= (1.0 if allowed is few else 0.9)
