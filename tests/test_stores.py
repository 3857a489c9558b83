"""The two stores side by side: the same corpus on local and on milvus-lite (embedded).

The Milvus store must rank exactly as the local one (same dense scores, same BM25
scores, same filters), keep a reader on one generation during live updates, treat
filter values as data, and answer 503 when the server is gone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from ingest import milvus
from ingest.catalog import load_catalog
from ingest.errors import StoreUnavailableError
from ingest.milvus_write import build_milvus
from ingest.types import Chunk, Document
from ingest.update import update
from service.answer.build import build_qa, with_index
from service.answer.filters import Filter
from service.answer.milvus_store import MilvusStore
from service.answer.qa import QA
from service.answer.retrieval import MODES, Retriever
from service.answer.store import load_store
from service.api.app import create_app
from service.cli import cli
from service.config import Settings
from tests.conftest import CORPUS, free_port, index_fake, running
from tests.fakes import HashEmbedder

QUESTIONS = [
    "广东省2024年出台了哪些大模型政策？",
    "北京市人工智能算力券实施方案是哪个部门出台的？",
    "工信部发布了什么政策",
    "智算中心",
    "这是一个与报告无关的问题：今天天气如何",
]
SOURCE = "000_b09d076724004418.txt"
FILTERS = [
    None,
    Filter(region="广东", date_from="2024", date_to="2024"),
    Filter(department="工信部"),
    Filter(date_from="2023-06", date_to="2024-03"),
    Filter(sources=(SOURCE,)),
    Filter(sources=(SOURCE,), region="北京"),
    Filter(region="火星"),
]


def _settings(root: Path, store: str, **extra: str) -> Settings:
    return Settings(
        corpus_dir=root / "corpus",
        index_dir=root / f"index-{store}",
        embedding_model="fake-hash",
        refusal_threshold=0.0,
        store=store,  # type: ignore[arg-type]
        milvus_uri=str(root / "milvus.db"),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, QA]:
    """The bundled corpus indexed with the fake embedder into each store."""
    root = tmp_path_factory.mktemp("stores")
    shutil.copytree(CORPUS, root / "corpus")
    pipelines = {}
    for store in ("local", "milvus"):
        settings = _settings(root, store)
        index_fake(settings)
        pipelines[store] = build_qa(settings, HashEmbedder())
    return pipelines


@pytest.fixture
def kb(tmp_path: Path) -> Settings:
    """A private corpus on milvus-lite, embedded in this process."""
    shutil.copytree(CORPUS, tmp_path / "corpus")
    settings = _settings(tmp_path, "milvus")
    index_fake(settings)
    return settings


def _ranked(retriever: Retriever, question: str, where: Filter | None, mode: str) -> list[tuple]:
    query = retriever.prepare(question)
    hits = retriever.search(query, 20, where, mode)  # type: ignore[arg-type]
    return [
        (h.chunk, h.score, h.dense_rank, h.bm25_rank, h.dense_score, h.bm25_score) for h in hits
    ]


@pytest.mark.parametrize("where", FILTERS, ids=repr)
def test_milvus_ranks_exactly_as_local(both: dict[str, QA], where: Filter | None) -> None:
    local, remote = both["local"].retriever, both["milvus"].retriever
    for question in QUESTIONS:
        for mode in MODES:
            expected = _ranked(local, question, where, mode)
            found = _ranked(remote, question, where, mode)
            # Ranks may swap between chunks of equal score; chunks, scores may not.
            assert [h[0] for h in found] == [h[0] for h in expected], (question, mode)
            for a, b in zip(found, expected, strict=True):
                assert a[1] == pytest.approx(b[1], abs=1e-4)
                for x, y in zip(a[4:], b[4:], strict=True):
                    assert (x is None) == (y is None)
                    assert x is None or x == pytest.approx(y, rel=1e-4, abs=1e-5)
    if where is not None:
        assert remote.rows(where) == local.rows(where)


def test_milvus_lists_and_counts_as_local(both: dict[str, QA]) -> None:
    local, remote = both["local"].retriever.store, both["milvus"].retriever.store
    assert list(remote.chunks()) == list(local.chunks())
    assert list(remote.chunks(SOURCE)) == list(local.chunks(SOURCE))
    assert remote.counts() == local.counts() and len(remote) == len(local)
    assert remote.documents == local.documents
    for term in ["大模型", "算力", "智算中心", "从未出现的词语"]:
        assert remote.terms.term_idf(term) == pytest.approx(local.terms.term_idf(term), rel=1e-5)
        assert (term in remote.terms.vocabulary) == (term in local.terms.vocabulary)


def test_answers_and_citations_match(both: dict[str, QA]) -> None:
    for question in QUESTIONS:
        local, remote = both["local"].ask(question, 5), both["milvus"].ask(question, 5)
        assert remote.answer == local.answer
        assert remote.citations == local.citations


def test_filter_values_are_data_not_expressions(kb: Settings) -> None:
    store = load_store(kb)
    assert isinstance(store, MilvusStore)
    evil = 'x" or source != "'
    assert store.dense(HashEmbedder().embed_query("政策"), 10, Filter(sources=(evil,))) == []
    # A department with quotes and a backslash is stored, found, and matched exactly.
    department = 'a"b\\c部'
    text = "测试文件\n\n本文件由一个名字奇怪的部门发布，内容关于量子计算政策。\n"
    document = Document("odd.txt", "测试文件", text, "f" * 64, {"department": department})
    done = update(
        kb.corpus_dir,
        kb.index_dir,
        "fake-hash",
        HashEmbedder(),
        "add",
        "odd.txt",
        document,
        text.encode(),
        milvus=kb.milvus_target(),
    )
    store = load_store(kb)
    assert done.embedded > 0
    vector = HashEmbedder().embed_query("量子计算")
    hits = store.dense(vector, 50, Filter(department=department))
    assert hits and {c.source for c in store.get([k for k, _ in hits]).values()} == {"odd.txt"}
    assert store.dense(vector, 50, Filter(department='a"b')) != []  # a prefix, as locally
    assert store.dense(vector, 50, Filter(department="b\\c部x")) == []


def _rows(settings: Settings, expr: str) -> int:
    catalog = load_catalog(
        settings.index_dir,
        "fake-hash",
        "torch",
        settings.milvus_target(),  # type: ignore[arg-type]
    )
    return sum(1 for _ in milvus.query(catalog.target, catalog.collection, expr, ["chunk_id"]))


def test_a_reader_keeps_its_generation_through_updates(kb: Settings) -> None:
    embedder = HashEmbedder()
    before = load_store(kb)
    old_chunks = list(before.chunks(SOURCE))
    text = "替换后的文件\n\n广东省在2025年发布了全新的量子通信政策。\n"
    replacement = Document(SOURCE, "替换后的文件", text, "e" * 64, {})
    update(
        kb.corpus_dir,
        kb.index_dir,
        "fake-hash",
        embedder,
        "replace",
        SOURCE,
        replacement,
        text.encode(),
        milvus=kb.milvus_target(),
    )
    after = load_store(kb)
    # The old reader still sees the old document whole; the new one only the new text.
    assert list(before.chunks(SOURCE)) == old_chunks
    assert all("量子通信" in c.search_text for c in after.chunks(SOURCE))
    assert len(after) == len(before) - len(old_chunks) + after.counts()[SOURCE]
    assert len(list(after.chunks())) == len(after)
    # A replaced document's old rows are deleted by the next update, not before.
    assert _rows(kb, f'source == "{SOURCE}"') == len(old_chunks) + after.counts()[SOURCE]
    update(
        kb.corpus_dir,
        kb.index_dir,
        "fake-hash",
        embedder,
        "remove",
        SOURCE,
        milvus=kb.milvus_target(),
    )
    gone = load_store(kb)
    assert SOURCE not in gone.documents and list(gone.chunks(SOURCE)) == []
    assert _rows(kb, f'source == "{SOURCE}"') == after.counts()[SOURCE]  # hidden, not yet gone
    assert list(after.chunks(SOURCE)) != []  # a reader of the previous generation


def test_a_crash_before_the_switch_leaves_nothing_visible(kb: Settings) -> None:
    before = load_store(kb)
    text = "新增文件\n\n西宁市将建设高原智算中心。\n"
    document = Document("xining.txt", "新增文件", text, "d" * 64, {})

    def crash() -> None:
        raise KeyboardInterrupt  # stands for a kill at the most delicate moment

    with pytest.raises(KeyboardInterrupt):
        update(
            kb.corpus_dir,
            kb.index_dir,
            "fake-hash",
            HashEmbedder(),
            "add",
            "xining.txt",
            document,
            text.encode(),
            crash_before_switch=crash,
            milvus=kb.milvus_target(),
        )
    after = load_store(kb)
    assert after.path == before.path and "xining.txt" not in after.documents
    assert list(after.chunks("xining.txt")) == []
    assert _rows(kb, 'source == "xining.txt"') > 0  # written, invisible
    update(
        kb.corpus_dir,
        kb.index_dir,
        "fake-hash",
        HashEmbedder(),
        "remove",
        "001_238fc47f712ebe5e.txt",
        milvus=kb.milvus_target(),
    )
    assert _rows(kb, 'source == "xining.txt"') == 0  # the next update tidied them


def test_an_unreachable_milvus_is_a_503(kb: Settings, both: dict[str, QA]) -> None:
    gone = Settings(**(kb.model_dump() | {"milvus_uri": f"http://127.0.0.1:{free_port()}"}))
    store = load_store(gone)  # the catalog is on disk; Milvus is asked per request
    with pytest.raises(StoreUnavailableError):
        store.dense(HashEmbedder().embed_query("政策"), 5, None)
    qa = with_index(both["milvus"], store, gone)
    with running(create_app(gone, qa=qa)) as url:
        response = httpx.post(f"{url}/ask", json={"question": "算力券"}, timeout=30)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_unavailable"
        assert httpx.get(f"{url}/documents", timeout=30).status_code == 200


def test_store_settings() -> None:
    with pytest.raises(ValidationError):
        Settings(store="milvus", milvus_uri="milvus")
    with pytest.raises(ValidationError):
        Settings(milvus_collection="bad-name")
    settings = Settings(store="milvus", milvus_uri="http://milvus:19530")
    stems = {settings.collection(n).milvus_collection for n in ("a-b", "a_b", "a_xb", "ab")}
    assert len(stems) == 4
    assert Settings().milvus_target() is None


def test_a_local_index_is_not_read_as_milvus_or_back(both: dict[str, QA], tmp_path: Path) -> None:
    local_dir = both["local"].retriever.store.path.parent
    remote_dir = both["milvus"].retriever.store.path.parent
    root = tmp_path
    with pytest.raises(Exception, match="ZHICE_STORE=milvus"):
        load_store(Settings(**(_settings(root, "milvus").model_dump() | {"index_dir": local_dir})))
    with pytest.raises(Exception, match="ZHICE_STORE=local"):
        load_store(Settings(**(_settings(root, "local").model_dump() | {"index_dir": remote_dir})))


def test_migrate_there_and_back_keeps_every_chunk(both: dict[str, QA], tmp_path: Path) -> None:
    source = both["local"].retriever.store
    shutil.copytree(CORPUS, tmp_path / "corpus")
    shutil.copytree(source.path.parent, tmp_path / "index-local", symlinks=True)
    settings = _settings(tmp_path, "local", milvus_collection="moved")
    runner = CliRunner()
    env = {
        "ZHICE_INDEX_DIR": str(settings.index_dir),
        "ZHICE_EMBEDDING_MODEL": "fake-hash",
        "ZHICE_MILVUS_URI": settings.milvus_uri,
        "ZHICE_MILVUS_COLLECTION": "moved",
    }
    done = runner.invoke(cli, ["migrate", "--to", "milvus"], env=env)
    assert done.exit_code == 0, done.output
    moved = load_store(Settings(**(settings.model_dump() | {"store": "milvus"})))
    assert isinstance(moved, MilvusStore)
    assert list(moved.chunks()) == list(source.chunks()) and moved.documents == source.documents
    query = both["local"].retriever.prepare("智算中心")
    local = both["local"].retriever
    again = Retriever(
        moved,
        HashEmbedder(),
        local.tokenizer,
        candidates=local.candidates,
        rrf_k=local.rrf_k,
        fusion=local.fusion,
    )
    assert [h.chunk for h in again.search(query, 10)] == [
        h.chunk for h in both["local"].retriever.search(query, 10)
    ]
    done = runner.invoke(cli, ["migrate", "--to", "milvus"], env=env)
    assert done.exit_code != 0 and "already" in done.output
    done = runner.invoke(cli, ["migrate", "--to", "local"], env=env)
    assert done.exit_code == 0, done.output
    back = load_store(settings)
    assert list(back.chunks()) == list(source.chunks()) and back.documents == source.documents


def _clustered(count: int, dimension: int = 64) -> np.ndarray:
    """Unit vectors crowded as real embeddings are: means of 4 of 512 anisotropic 'sentences'."""
    rng = np.random.default_rng(3)
    sentences = rng.normal(size=(512, dimension)).astype(np.float32)
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    sentences = sentences / 2 + 1 / np.sqrt(dimension)
    sentences /= np.linalg.norm(sentences, axis=1, keepdims=True)
    vectors = sentences[rng.integers(0, 512, size=(count, 4))].mean(axis=1)
    vectors += rng.normal(0, 0.05 / np.sqrt(dimension), vectors.shape).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_a_narrow_filter_finds_the_exact_top_k(tmp_path: Path) -> None:
    """5,000 chunks in documents of 10: within one document the top 10 is all of it, in order.

    The collection is flushed and reloaded, so milvus-lite searches an HNSW index
    (not its unindexed buffer); its filtered HNSW search returned as few as 3 of the 10 here.
    """
    settings = _settings(tmp_path, "milvus")
    target = settings.milvus_target()
    assert target is not None
    vectors = _clustered(5_000)
    documents, chunks = [], []
    for d in range(500):
        source = f"doc-{d:03d}.txt"
        texts = [f"第{d}号文件第{c}段。" for c in range(10)]
        start = 0
        for c, text in enumerate(texts):
            key = f"{source}#{c}:{d:04x}{c:04x}"
            chunks.append(Chunk(key, source, source, start, start + len(text), text))
            start += len(text) + 1
        documents.append(Document(source, source, "\n".join(texts), f"{d:064x}"))
    catalog = build_milvus(
        settings.index_dir,
        target,
        model="fake-hash",
        documents=documents,
        chunks=chunks,
        vectors=vectors,
        began=0.0,
    )
    client = milvus._client(target)
    client.flush(catalog.collection)
    client.release_collection(catalog.collection)
    client.load_collection(catalog.collection)  # builds each flushed segment's HNSW
    store = load_store(settings)
    rows = {c.chunk_id: i for i, c in enumerate(chunks)}
    rng = np.random.default_rng(5)
    for d in rng.integers(0, 500, size=10):
        query = vectors[rng.integers(0, 5_000)]
        found = store.dense(query, 10, Filter(sources=(f"doc-{d:03d}.txt",)))
        got = store.get([key for key, _ in found])
        scores = vectors[10 * d : 10 * d + 10] @ query
        best = np.argsort(-scores)
        assert [rows[got[key].chunk_id] for key, _ in found] == (10 * d + best).tolist()
        assert [score for _, score in found] == pytest.approx(scores[best].tolist(), abs=1e-5)
