from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ingest.errors import IndexIncompatibleError, IndexMissingError
from ingest.pipeline import IngestResult, ingest
from ingest.store import current_path, load_index, read_manifest
from service.config import Settings
from tests.fakes import HashEmbedder
from tests.samples import scanned_pdf

pytestmark = pytest.mark.local_store("the index directory's manifest, chunks.jsonl and FAISS file")


def _ingest(
    settings: Settings, embedder: HashEmbedder, backend: str = "torch", **kwargs: bool
) -> IngestResult:
    return ingest(
        settings.corpus_dir,
        settings.index_dir,
        embedder.name,
        lambda: embedder,
        backend=backend,
        progress=False,
        **kwargs,
    )


def test_index_has_manifest_and_aligned_rows(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    manifest = read_manifest(fake_settings.index_dir)
    assert manifest is not None
    assert manifest.model == "fake-hash"
    assert manifest.index_type == "flat" and manifest.ann == {}
    assert set(manifest.corpus) == {p.name for p in fake_settings.corpus_dir.iterdir()}
    index = load_index(fake_settings.index_dir, "fake-hash")
    assert len(index.chunks) == len(index.vectors) == manifest.chunk_count
    raw = (current_path(fake_settings.index_dir) / "chunks.jsonl").read_text(encoding="utf-8")
    assert "大模型" in raw  # JSON written with ensure_ascii=False


def test_unchanged_corpus_embeds_nothing(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    again = HashEmbedder()
    result = _ingest(fake_settings, again)
    assert again.embedded == 0
    assert result.rebuilt is False


def test_changed_document_reembeds_only_its_new_chunks(fake_settings: Settings) -> None:
    first = HashEmbedder()
    _ingest(fake_settings, first)
    doc = fake_settings.corpus_dir / "002_d31665734ab7f792.txt"
    doc.write_text(doc.read_text(encoding="utf-8") + "\n新增段落：政务大模型试点扩大。\n", "utf-8")
    second = HashEmbedder()
    result = _ingest(fake_settings, second)
    assert result.rebuilt is True
    assert 0 < second.embedded <= 3
    assert second.embedded < first.embedded


def test_other_model_is_refused_with_instruction(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    with pytest.raises(IndexIncompatibleError, match="zhice ingest"):
        load_index(fake_settings.index_dir, "another-model")


def test_int8_and_float_vectors_never_share_an_index(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder(), backend="onnx-int8")
    manifest = read_manifest(fake_settings.index_dir)
    assert manifest is not None and manifest.backend == "onnx-int8"
    assert load_index(fake_settings.index_dir, "fake-hash", "onnx-int8").manifest == manifest
    for other in ("onnx", "torch"):
        with pytest.raises(IndexIncompatibleError, match="onnx-int8.*run `zhice ingest`"):
            load_index(fake_settings.index_dir, "fake-hash", other)


def test_torch_and_fp32_onnx_share_an_index(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder(), backend="torch")
    assert len(load_index(fake_settings.index_dir, "fake-hash", "onnx").chunks) > 0
    again = HashEmbedder()
    assert _ingest(fake_settings, again, backend="onnx").rebuilt is False
    assert again.embedded == 0


def test_switching_to_int8_reembeds_every_chunk(fake_settings: Settings) -> None:
    first = _ingest(fake_settings, HashEmbedder(), backend="onnx")
    second = HashEmbedder()
    result = _ingest(fake_settings, second, backend="onnx-int8")
    assert result.rebuilt is True
    assert second.embedded == first.chunks  # no float vector reused
    manifest = read_manifest(fake_settings.index_dir)
    assert manifest is not None and manifest.backend == "onnx-int8"


def test_an_index_from_before_backends_reads_as_torch(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    path = current_path(fake_settings.index_dir) / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["backend"]
    path.write_text(json.dumps(data), encoding="utf-8")
    manifest = read_manifest(fake_settings.index_dir)
    assert manifest is not None and manifest.backend == "torch"
    load_index(fake_settings.index_dir, "fake-hash", "onnx")
    with pytest.raises(IndexIncompatibleError):
        load_index(fake_settings.index_dir, "fake-hash", "onnx-int8")


def test_missing_index_is_reported(tmp_path: Path) -> None:
    with pytest.raises(IndexMissingError, match="zhice ingest"):
        load_index(tmp_path / "nothing", "fake-hash")


def test_model_change_triggers_rebuild(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    other = HashEmbedder(dimension=32, name="fake-other")
    result = _ingest(fake_settings, other)
    assert result.rebuilt is True
    assert load_index(fake_settings.index_dir, "fake-other").vectors.vectors().shape[1] == 32


class _Crash(HashEmbedder):
    def embed_batch(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        raise RuntimeError("killed mid-build")


def test_crash_during_ingestion_keeps_previous_index(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    before = load_index(fake_settings.index_dir, "fake-hash")
    doc = fake_settings.corpus_dir / "003_4efd2b96af175422.txt"
    doc.write_text(doc.read_text(encoding="utf-8") + "\n新的一段政策解读。\n", "utf-8")
    with pytest.raises(RuntimeError):
        _ingest(fake_settings, _Crash())
    after = load_index(fake_settings.index_dir, "fake-hash")
    assert after.path == before.path
    assert [c.chunk_id for c in after.chunks] == [c.chunk_id for c in before.chunks]
    leftovers = [p.name for p in fake_settings.index_dir.iterdir() if p.name.startswith(".tmp")]
    assert leftovers == []


def test_corrupt_manifest_is_not_served(fake_settings: Settings) -> None:
    _ingest(fake_settings, HashEmbedder())
    manifest = current_path(fake_settings.index_dir) / "manifest.json"
    manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexMissingError):
        load_index(fake_settings.index_dir, "fake-hash")
    result = _ingest(fake_settings, HashEmbedder())
    assert result.rebuilt is True
    json.loads(manifest.read_text(encoding="utf-8"))


def test_gbk_report_is_indexed(fake_settings: Settings) -> None:
    shutil.rmtree(fake_settings.corpus_dir)
    fake_settings.corpus_dir.mkdir()
    text = "地方政策\n广东省发放算力券，支持中小企业使用智能算力。\n"
    (fake_settings.corpus_dir / "gbk.txt").write_bytes(text.encode("gbk"))
    _ingest(fake_settings, HashEmbedder())
    index = load_index(fake_settings.index_dir, "fake-hash")
    assert index.documents["gbk.txt"].text == text


def test_unreadable_files_are_skipped_and_reported(fake_settings: Settings) -> None:
    (fake_settings.corpus_dir / "scan.pdf").write_bytes(scanned_pdf())
    (fake_settings.corpus_dir / "empty.txt").write_bytes(b"")
    result = _ingest(fake_settings, HashEmbedder())
    assert set(result.skipped) == {"scan.pdf", "empty.txt"}
    assert "no text layer" in result.skipped["scan.pdf"]
    manifest = read_manifest(fake_settings.index_dir)
    assert manifest is not None and not {"scan.pdf", "empty.txt"} & set(manifest.corpus)
    assert _ingest(fake_settings, HashEmbedder()).rebuilt is False  # still current
