"""The local store at scale, in miniature: live updates write a delta segment that
searches exactly like a full rebuild, and so does a merge of it, even one that updates
overtook; memory-mapped loading answers like vectors held in memory, and the ANN index
and its parameters are chosen by size and recorded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from ingest.bm25 import BM25, Postings
from ingest.build import build_version
from ingest.loaders import load_bytes
from ingest.merge import MERGE_ABOVE, MERGE_LOCK, merge, merge_due
from ingest.pipeline import ingest
from ingest.store import (
    DEAD,
    DELTA,
    LoadedIndex,
    Manifest,
    VectorIndex,
    ann_params,
    current_path,
    current_version,
    load_index,
    locked,
    read_manifest,
)
from ingest.tokenize import Tokenizer
from ingest.types import Chunk, Document
from ingest.update import recover, update
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
CHANGES = (
    ("add", "haikou.txt", ADDED),
    ("replace", "002_d31665734ab7f792.txt", REPLACED),
    ("remove", "004_aed4a49d50658c96.txt", None),
)
# While a merge of the version after CHANGES runs: a document of its delta replaced and
# one removed, documents of its large segment replaced and removed, and one added, then
# replaced, so the delta after the snapshot holds dead chunks too.
OVERTAKING = (
    ("replace", "haikou.txt", ADDED.replace("50家", "60家")),
    ("remove", "002_d31665734ab7f792.txt", None),
    ("replace", "003_4efd2b96af175422.txt", REPLACED.replace("广东省", "海南省")),
    ("remove", "001_238fc47f712ebe5e.txt", None),
    ("add", "sanya.txt", ADDED.replace("海口", "三亚")),
    ("replace", "sanya.txt", ADDED.replace("海口", "三亚").replace("算力中心", "数据中心")),
)


def _ingest(corpus: Path, index: Path) -> None:
    ingest(corpus, index, "fake-hash", HashEmbedder, progress=False)


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


def _change(
    settings: Settings,
    tokenizer: Tokenizer,
    changes: Sequence[tuple[str, str, str | None]] = CHANGES,
) -> LoadedIndex:
    """Apply `changes` (by default: add one report, replace another, remove a third) as
    live updates."""
    corpus, index = settings.corpus_dir, settings.index_dir
    for action, source, text in changes:
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
            tokenizer=tokenizer,
        )
    assert isinstance(result.index, LoadedIndex)
    return result.index


def _merge(settings: Settings) -> LoadedIndex:
    merged = merge(settings.index_dir, "fake-hash")
    assert merged is not None
    return merged


def _like_a_rebuild(
    live: LoadedIndex, settings: Settings, tmp_path: Path, tokenizer: Tokenizer
) -> None:
    """`live` serves what `zhice ingest` builds from the corpus now, and searches alike."""
    rebuilt_dir = tmp_path / "rebuilt"
    _ingest(settings.corpus_dir, rebuilt_dir)
    rebuilt = load_index(rebuilt_dir, "fake-hash")
    assert sorted(live.documents) == sorted(rebuilt.documents)
    assert sorted(c.chunk_id for c in live.chunks) == sorted(c.chunk_id for c in rebuilt.chunks)
    assert live.manifest.chunk_count == rebuilt.manifest.chunk_count == len(live.chunks)
    for source in live.documents:
        assert live.documents[source] == rebuilt.documents[source]
    for where in (None, Filter(sources=("haikou.txt", "002_d31665734ab7f792.txt"))):
        assert _results(live, tokenizer, where) == _results(rebuilt, tokenizer, where)
    assert live.bm25.term_idf("算力") == pytest.approx(rebuilt.bm25.term_idf("算力"), rel=1e-6)


@pytest.mark.parametrize("merged", [False, True], ids=["delta", "merged"])
def test_live_updates_search_like_a_full_rebuild(
    fake_settings: Settings, tmp_path: Path, merged: bool, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    live = _change(fake_settings, tokenizer)
    version = current_path(fake_settings.index_dir)
    # a delta segment and dead ids beside the shared first segment
    assert (version / DELTA).is_dir() and (version / DEAD).is_file()
    assert live.manifest.dead_chunks > 0 and live.manifest.delta_chunks > 0
    if merged:  # then all in one segment
        live = _merge(fake_settings)
        version = current_path(fake_settings.index_dir)
        assert not (version / DELTA).exists() and not (version / DEAD).exists()
        assert live.manifest.delta_chunks == live.manifest.dead_chunks == 0
    _like_a_rebuild(live, fake_settings, tmp_path, tokenizer)


def test_a_merge_rebases_onto_the_updates_that_overtook_it(
    fake_settings: Settings, tmp_path: Path, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    snapshot = _change(fake_settings, tokenizer)
    overtaking: list[LoadedIndex] = []
    merged = merge(
        fake_settings.index_dir,
        "fake-hash",
        before_rebase=lambda: overtaking.append(_change(fake_settings, tokenizer, OVERTAKING)),
    )
    assert merged is not None and overtaking
    after = overtaking[0].manifest
    # The new delta holds exactly the chunks stored since the snapshot, dead ones too.
    assert merged.manifest.delta_chunks == after.delta_chunks - snapshot.manifest.delta_chunks
    assert 0 < merged.manifest.dead_chunks < after.dead_chunks
    assert (merged.manifest.chunk_count, merged.manifest.corpus) == (
        after.chunk_count,
        after.corpus,
    )
    _like_a_rebuild(merged, fake_settings, tmp_path, tokenizer)
    again = _merge(fake_settings)  # merging what the rebase left changes nothing served
    assert again.manifest.delta_chunks == again.manifest.dead_chunks == 0
    _like_a_rebuild(again, fake_settings, tmp_path / "again", tokenizer)


@pytest.mark.parametrize(
    ("base", "delta", "dead", "merge_above", "due"),
    [
        (1_000, 0, 0, 0, False),  # nothing to merge
        (1_000, 9_000, 1_000, MERGE_ABOVE, False),
        (1_000, 9_000, 1_001, MERGE_ABOVE, True),
        (1_000_000, 15_000, 5_000, MERGE_ABOVE, False),  # a fiftieth: 20,000
        (1_000_000, 15_000, 5_001, MERGE_ABOVE, True),
        (1_000, 21, 0, 0, True),
    ],
)
def test_a_merge_is_due_past_the_bound_and_a_fiftieth_of_the_index(
    base: int, delta: int, dead: int, merge_above: int, due: bool
) -> None:
    manifest = Manifest(
        format_version=2,
        model="fake-hash",
        dimension=64,
        chunker={},
        corpus={},
        chunk_count=base + delta - dead,
        index_type="flat",
        built_at="",
        build_seconds=0.0,
        delta_chunks=delta,
        dead_chunks=dead,
    )
    assert merge_due(manifest, merge_above) is due


def test_a_merge_overtaken_by_a_rebuild_is_discarded(
    fake_settings: Settings, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    _change(fake_settings, tokenizer)
    rebuilt: list[str | None] = []

    def rebuild() -> None:
        ingest(
            fake_settings.corpus_dir,
            fake_settings.index_dir,
            "fake-hash",
            HashEmbedder,
            force=True,
            progress=False,
        )
        rebuilt.append(current_version(fake_settings.index_dir))

    assert merge(fake_settings.index_dir, "fake-hash", before_rebase=rebuild) is None
    assert current_version(fake_settings.index_dir) == rebuilt[0]
    assert not _merge_dirs(fake_settings)


def _merge_dirs(settings: Settings) -> list[str]:
    return [p.name for p in settings.index_dir.iterdir() if p.name.startswith(".merge-")]


@pytest.mark.parametrize("hook", ["before_rebase", "before_switch"])
def test_a_failed_merge_leaves_the_updates_serving(
    fake_settings: Settings, tmp_path: Path, tokenizer: Tokenizer, hook: str
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    _change(fake_settings, tokenizer)
    overtaken: list[str | None] = []

    def overtake_then_fail() -> None:
        if hook == "before_rebase":  # before_switch runs under the lock: no update then
            _change(fake_settings, tokenizer, OVERTAKING)
        overtaken.append(current_version(fake_settings.index_dir))
        raise RuntimeError("injected")

    with pytest.raises(RuntimeError, match="injected"):
        merge(fake_settings.index_dir, "fake-hash", **{hook: overtake_then_fail})
    assert current_version(fake_settings.index_dir) == overtaken[0]
    assert (current_path(fake_settings.index_dir) / DELTA).is_dir()  # unmerged
    assert not _merge_dirs(fake_settings)
    served = load_index(fake_settings.index_dir, "fake-hash")
    _like_a_rebuild(served, fake_settings, tmp_path / "served", tokenizer)
    merged = _merge(fake_settings)  # and a later merge succeeds
    _like_a_rebuild(merged, fake_settings, tmp_path / "merged", tokenizer)


def test_a_merge_killed_midway_is_cleared_at_startup(
    fake_settings: Settings, tmp_path: Path, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    before = _change(fake_settings, tokenizer)
    script = (
        "import os, sys; from pathlib import Path; from ingest.merge import merge; "
        "merge(Path(sys.argv[1]), 'fake-hash', before_rebase=lambda: os._exit(9))"
    )
    root = Path(__file__).resolve().parents[1]
    killed = subprocess.run([sys.executable, "-c", script, str(fake_settings.index_dir)], cwd=root)
    left = _merge_dirs(fake_settings)
    assert killed.returncode == 9 and left  # M was built, never committed
    assert current_path(fake_settings.index_dir).resolve() == before.path
    with locked(fake_settings.index_dir, name=MERGE_LOCK):  # as if a merge were running
        assert recover(fake_settings.corpus_dir, fake_settings.index_dir) == []
    assert recover(fake_settings.corpus_dir, fake_settings.index_dir) == left
    assert not _merge_dirs(fake_settings)
    _like_a_rebuild(_merge(fake_settings), fake_settings, tmp_path, tokenizer)


def test_an_update_shares_the_first_segment_by_hard_links(
    fake_settings: Settings, tokenizer: Tokenizer
) -> None:
    _ingest(fake_settings.corpus_dir, fake_settings.index_dir)
    before = current_path(fake_settings.index_dir).resolve()
    inode = (before / "vectors.npy").stat().st_ino
    _change(fake_settings, tokenizer)
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
    mapped = _change(fake_settings, tokenizer)
    assert isinstance(mapped.vectors.vectors(), np.ndarray)
    assert isinstance(mapped.bm25.segments[0].docs.base, np.memmap)  # a view of the file
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
