"""Build the read path (model, index, retriever, composer) from Settings."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

from ingest.embedding import Embedder, load_embedder
from ingest.settings import Settings
from ingest.store import check_index, load_index
from ingest.tokenize import Tokenizer
from service.batching import BatchingEmbedder
from service.calibration import load_calibration
from service.compose import Composer
from service.qa import QA
from service.retrieval import Retriever

log = logging.getLogger(__name__)


def embedder_for(settings: Settings) -> Embedder:
    """The configured embedding model (converted on first use if it is the default)."""
    return load_embedder(
        settings.embedding_model, settings.model_cache_dir, allow_download=settings.model_download
    )


def refusal_threshold(settings: Settings) -> float:
    """ZHICE_REFUSAL_THRESHOLD if set, else the index's calibration.json, else the default."""
    if "refusal_threshold" in settings.model_fields_set:
        return settings.refusal_threshold
    calibration = load_calibration(settings.index_dir)
    if calibration is None:
        return settings.refusal_threshold
    log.info("refusal threshold %.4f from %s", calibration, settings.index_dir)
    return calibration


def build_qa(settings: Settings, embedder: Embedder | None = None) -> QA:
    """Load the index and model once and wire the question-answering pipeline."""
    began = time.perf_counter()
    check_index(settings.index_dir, settings.embedding_model)  # fail fast, before the model
    # The model's imports and weights take most of start-up; read the index and the
    # tokeniser's dictionaries meanwhile.
    with ThreadPoolExecutor(1, thread_name_prefix="zhice-model") as pool:
        loading = pool.submit(lambda: embedder or embedder_for(settings))
        index = load_index(settings.index_dir, settings.embedding_model)
        tokenizer = Tokenizer()
        model = BatchingEmbedder(loading.result())
    model.embed_query("预热")  # the first forward pass initialises kernels; not a user's
    retriever = Retriever(
        index,
        model,
        tokenizer,
        candidates=settings.candidates,
        rrf_k=settings.rrf_k,
        fusion=settings.fusion,
    )
    composer = Composer(index.documents, tokenizer, index.bm25, refusal_threshold(settings))
    log.info(
        "loaded %d chunks from %s in %.1f s",
        len(index.chunks),
        index.path,
        time.perf_counter() - began,
    )
    return QA(retriever, composer)
