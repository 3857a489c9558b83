"""Bounded work per document: limits checked while reading, and cancellation before commit."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from ingest.chunking import chunk_document
from ingest.embedding import Vectors
from ingest.errors import DocumentTooLargeError, UpdateCancelledError
from ingest.limits import Budget, Limits
from ingest.loaders import load_bytes, load_document
from ingest.store import current_version
from ingest.update import update
from service.config import Settings
from tests.conftest import CORPUS, Gated, index_fake
from tests.fakes import HashEmbedder
from tests.samples import docx_bomb, pdf


def _budget(chars: int = 10**9, chunks: int = 10**9) -> Budget:
    return Budget("doc", Limits(chars=chars, chunks=chunks))


@pytest.mark.parametrize("chars", [999, 1000])
def test_text_up_to_the_limit_is_read(chars: int) -> None:
    budget = _budget(chars=1000)
    assert len(load_bytes("a.txt", "政".encode() * chars, budget).text) == chars
    assert budget.chars == chars


def test_text_past_the_limit_is_refused() -> None:
    with pytest.raises(DocumentTooLargeError, match="more than 1,000 characters") as refused:
        load_bytes("a.txt", "政".encode() * 1001, _budget(chars=1000))
    assert refused.value.status == 413 and refused.value.code == "document_too_large"


def test_text_that_cannot_fit_is_refused_before_it_is_decoded() -> None:
    budget = _budget(chars=1000)
    with pytest.raises(DocumentTooLargeError):
        load_bytes("a.txt", b"x" * 4004, budget)  # 4 bytes a character at the very most
    assert budget.chars == 0


def test_pdf_reading_stops_at_the_page_that_passes_the_limit() -> None:
    pages = [[f"第{n}页：到2025年建成一批智算中心。"] for n in range(40)]
    budget = _budget(chars=100)
    with pytest.raises(DocumentTooLargeError):
        load_bytes("a.pdf", pdf(pages), budget)
    assert budget.chars < 150  # a few pages were read, not forty


def test_html_past_the_limit_is_refused() -> None:
    page = "<html><body>" + "<p>银川市设立人工智能产业基金。</p>" * 500 + "</body></html>"
    with pytest.raises(DocumentTooLargeError):
        load_bytes("a.html", page.encode(), _budget(chars=1000))


def test_a_docx_bomb_is_refused_while_read() -> None:
    data = docx_bomb()  # 546 KB that unpacks to 150 MB
    budget = _budget(chars=500_000)
    with pytest.raises(DocumentTooLargeError, match="characters"):
        load_bytes("bomb.docx", data, budget)
    assert budget.chars <= 500_000


def test_chunking_stops_at_the_chunk_limit() -> None:
    document = load_document(CORPUS / "001_238fc47f712ebe5e.txt")
    assert len(chunk_document(document, budget=_budget(chunks=500))) > 100
    with pytest.raises(DocumentTooLargeError, match="more than 100 chunks"):
        chunk_document(document, budget=_budget(chunks=100))


def test_a_stopped_budget_cancels_reading() -> None:
    budget = _budget()
    budget.stop.set()
    with pytest.raises(UpdateCancelledError) as cancelled:
        load_bytes("a.txt", "政策".encode(), budget)
    assert cancelled.value.code == "cancelled"


class _CancellingEmbedder(HashEmbedder):
    """Sets `stop` while it embeds the first batch of passages, as a leaving client would."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop
        self.passage_batches = 0

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        if any(t.startswith(self.document_prompt) for t in texts):
            self.passage_batches += 1
            self.stop.set()
        return super().embed_batch(texts)


def _long_text(lines: int) -> bytes:
    return "\n".join(
        f"第{n}条：西宁市第{n}批示范项目建设{n * 7}个政务大模型应用场景，"
        f"覆盖{n + 2}个区县，总投资{n * 13}亿元，由市数据局牵头推进实施。"
        for n in range(lines)
    ).encode()


def test_an_update_cancelled_midway_commits_nothing(fake_settings: Settings) -> None:
    settings = fake_settings
    index_fake(settings)
    version, files = current_version(settings.index_dir), sorted(os.listdir(settings.corpus_dir))
    budget = _budget()
    embedder = _CancellingEmbedder(budget.stop)
    data = _long_text(60)
    with pytest.raises(UpdateCancelledError):
        update(
            settings.corpus_dir,
            settings.index_dir,
            "fake-hash",
            embedder,
            "add",
            "xining.txt",
            load_bytes("xining.txt", data, budget),
            data,
            budget=budget,
            batch_size=8,
            milvus=settings.milvus_target(),
        )
    assert embedder.passage_batches == 1  # the batch under way, no more
    assert current_version(settings.index_dir) == version
    assert sorted(os.listdir(settings.corpus_dir)) == files


# --- over HTTP ---------------------------------------------------------------------------


def _post(url: str, name: str, data: bytes, timeout: float = 30) -> httpx.Response:
    files = {"file": (name, data, "application/octet-stream")}
    return httpx.post(f"{url}/documents", files=files, timeout=timeout)


def test_a_client_that_leaves_cancels_its_update(gated: Gated) -> None:
    corpus: Path = gated.settings.corpus_dir
    version, files = current_version(gated.settings.index_dir), sorted(os.listdir(corpus))
    with pytest.raises(httpx.ReadTimeout):  # the client gives up while its update embeds
        _post(gated.url, "xining.txt", _long_text(200), timeout=2)
    assert gated.embedder.holding.is_set()
    gated.wait_until_stopped()  # the server has seen the client leave
    gated.embedder.gate.set()
    # One ingestion thread: once a later update is done, the abandoned one has ended.
    assert _post(gated.url, "later.txt", "后来的文件。".encode()).status_code == 201
    # The abandoned update's batch under way, then the later upload's; the abandoned
    # document alone needs seven (100 chunks, 16 a batch).
    assert gated.embedder.passage_batches == 2
    sources = {d["source"] for d in httpx.get(f"{gated.url}/documents").json()["documents"]}
    assert "xining.txt" not in sources and "later.txt" in sources
    assert sorted(os.listdir(corpus)) == sorted([*files, "later.txt"])
    assert current_version(gated.settings.index_dir) != version


def test_an_upload_past_the_limits_is_413_and_changes_nothing(gated: Gated) -> None:
    gated.embedder.gate.set()
    version = current_version(gated.settings.index_dir)
    refused = _post(gated.url, "bomb.docx", docx_bomb())
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"]["code"] == "document_too_large"
    assert gated.embedder.passage_batches == 0
    assert current_version(gated.settings.index_dir) == version
