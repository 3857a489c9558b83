"""Opportunistic batching of query embeddings across concurrent requests."""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np

from ingest.embedding import Embedder, Vectors

_MAX_BATCH = 32


class BatchingEmbedder(Embedder):
    """Wraps an embedder so concurrent `embed_query` calls share one forward pass.

    One worker thread takes whatever questions are waiting (never waiting for more),
    so a lone request is encoded at once and a burst is encoded together: on two
    cores one batch of eight beats eight passes fighting over the cores.
    """

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.backend = inner.backend
        self.query_prompt = inner.query_prompt
        self.document_prompt = inner.document_prompt
        self._queue: queue.SimpleQueue[tuple[str, Future[Vectors]]] = queue.SimpleQueue()
        self._worker = threading.Thread(target=self._run, daemon=True, name="zhice-embed")
        self._worker.start()

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed texts directly (ingestion and tests)."""
        return self.inner.embed_batch(texts)

    def embed_query(self, text: str) -> Vectors:
        """Embed one question, batched with any others waiting."""
        return self.submit_query(text).result()

    def submit_query(self, text: str) -> Future[Vectors]:
        """Queue one question for the worker; returns before it is encoded."""
        future: Future[Vectors] = Future()
        self._queue.put((self.query_prompt + text, future))
        return future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < _MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                vectors = self.inner.embed_batch([text for text, _ in batch])
            except Exception as exc:  # hand the failure to every waiting request
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for row, (_, future) in enumerate(batch):
                future.set_result(np.asarray(vectors[row], dtype=np.float32))
