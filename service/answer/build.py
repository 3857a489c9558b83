"""Build the read path (model, index, retriever, composer) from Settings."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ingest.embedding import Embedder, load_embedder
from ingest.store import check_index
from ingest.tokenize import Tokenizer
from service.answer.answerability import load_scorer
from service.answer.batching import BatchingEmbedder
from service.answer.compose import Composer
from service.answer.faq import FAQ
from service.answer.llm import LLMComposer
from service.answer.qa import QA
from service.answer.retrieval import Retriever
from service.answer.selection import load_selector
from service.answer.store import Store, load_store
from service.answer.threshold import threshold
from service.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def embedder_for(settings: Settings) -> Embedder:
    """The configured embedding model (converted on first use if it is the default)."""
    return load_embedder(
        settings.embedding_model,
        settings.model_cache_dir,
        allow_download=settings.model_download,
        backend=settings.embedding_backend,
    )


def llm_for(settings: Settings) -> LLMComposer | None:
    """The optional LLM composer, when ZHICE_LLM_BASE_URL and ZHICE_LLM_MODEL are set."""
    if not settings.llm_base_url or not settings.llm_model:
        return None
    key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
    log.info("LLM composer: %s at %s", settings.llm_model, settings.llm_base_url)
    return LLMComposer(settings.llm_base_url, settings.llm_model, key, settings.llm_timeout)


def build_qa(settings: Settings, embedder: Embedder | None = None) -> QA:
    """Load the index and model once and wire the question-answering pipeline."""
    began = time.perf_counter()
    # Fail fast, before the model loads.
    check_index(settings.index_dir, settings.embedding_model, settings.embedding_backend)
    # The model's imports and weights take most of start-up; read the index and the
    # tokeniser's dictionaries meanwhile.
    with ThreadPoolExecutor(1, thread_name_prefix="zhice-model") as pool:
        loading = pool.submit(_timed, lambda: embedder or embedder_for(settings))
        index, index_seconds = _timed(lambda: load_store(settings))
        tokenizer, tokenizer_seconds = _timed(_tokenizer)
        loaded, model_seconds = loading.result()
        model = BatchingEmbedder(loaded)
    # The first forward pass initialises kernels; not a user's.
    _, warm_seconds = _timed(lambda: model.embed_query("预热"))
    log.info(
        "start-up parts: index %.2f s and jieba %.2f s while the %s model loaded in %.2f s; "
        "warm-up %.2f s",
        index_seconds,
        tokenizer_seconds,
        model.backend,
        model_seconds,
        warm_seconds,
    )
    faq_threshold = threshold(settings, "faq_threshold")
    assert faq_threshold is not None  # the setting has a default
    faq = FAQ(settings.faq_path, model, faq_threshold, tokenizer.anchors)
    qa = QA(*_read_path(settings, index, model, tokenizer), faq, llm_for(settings))
    log.info(
        "loaded %d chunks from %s in %.1f s",
        len(index),
        index.path,
        time.perf_counter() - began,
    )
    return qa


def with_index(qa: QA, index: Store, settings: Settings) -> QA:
    """The same pipeline (model, tokeniser, FAQ, LLM) over another version of the index."""
    retriever = qa.retriever
    return QA(*_read_path(settings, index, retriever.embedder, retriever.tokenizer), qa.faq, qa.llm)


def _tokenizer() -> Tokenizer:
    """jieba with its dictionaries and part-of-speech tagger loaded, before any question.

    The tagger (for the proper nouns answerability reads) loads its own tables, about a
    second, on first use: here it overlaps the model's loading instead of a user's wait.
    """
    tokenizer = Tokenizer()
    tokenizer.names("预热")
    return tokenizer


def _timed(load: Callable[[], T]) -> tuple[T, float]:
    began = time.perf_counter()
    return load(), time.perf_counter() - began


def _read_path(
    settings: Settings, index: Store, model: Embedder, tokenizer: Tokenizer
) -> tuple[Retriever, Composer]:
    retriever = Retriever(
        index,
        model,
        tokenizer,
        candidates=settings.candidates,
        rrf_k=settings.rrf_k,
        fusion=settings.fusion,
    )
    scorer = load_scorer(settings.answerability_path)
    selector = load_selector(settings.selection_path)
    refusal = threshold(settings, "refusal_threshold")
    return retriever, Composer(index.documents, tokenizer, index.terms, scorer, selector, refusal)
