from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from ingest.embedding import Vectors
from service.answer.batching import BatchingEmbedder
from tests.fakes import HashEmbedder


class SlowHashEmbedder(HashEmbedder):
    """Takes 5 ms a batch, like a (very fast) real model, so requests pile up."""

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        time.sleep(0.005)
        return super().embed_batch(texts)


def test_concurrent_queries_get_their_own_vectors_in_shared_batches() -> None:
    inner = SlowHashEmbedder()
    batching = BatchingEmbedder(inner)
    questions = [f"第{i}个问题：算力券与大模型" for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        vectors = list(pool.map(batching.embed_query, questions))
    expected = HashEmbedder().embed_batch(["query: " + q for q in questions])
    assert np.allclose(np.stack(vectors), expected)
    assert sum(inner.calls) == 64
    assert max(inner.calls) > 1  # requests shared forward passes


def test_a_failure_reaches_the_caller_and_the_worker_keeps_serving() -> None:
    class FailsOnce(HashEmbedder):
        def embed_batch(self, texts: Sequence[str]) -> Vectors:
            if not self.calls:
                self.calls.append(0)
                raise RuntimeError("encoder failed")
            return super().embed_batch(texts)

    batching = BatchingEmbedder(FailsOnce())
    with pytest.raises(RuntimeError, match="encoder failed"):
        batching.embed_query("问题")
    assert batching.embed_query("问题").shape == (64,)
