"""A deterministic stand-in for the embedding model, implementing the real interface."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import numpy as np

from ingest.embedding import Embedder, Vectors


class HashEmbedder(Embedder):
    """Character-bigram hashing into a small vector: similar text, similar vector."""

    def __init__(self, dimension: int = 64, name: str = "fake-hash") -> None:
        self.name = name
        self.dimension = dimension
        self.query_prompt = "query: "
        self.document_prompt = "passage: "
        self.calls: list[int] = []

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed texts; records each batch size so tests can count work done."""
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            body = text.split(": ", 1)[-1]
            for a, b in zip(body, body[1:], strict=False):
                digest = hashlib.blake2b(f"{a}{b}".encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else out[row]
        return out

    @property
    def embedded(self) -> int:
        """Texts embedded so far."""
        return sum(self.calls)


class GatedEmbedder(HashEmbedder):
    """Embeds passages only once `gate` is set, so a test can hold an update mid-way.

    Questions are embedded at once; `holding` is set while an update waits at the gate.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.passage_batches = 0

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Passages wait for the gate; then everything is embedded as HashEmbedder does."""
        if any(t.startswith(self.document_prompt) for t in texts):
            self.passage_batches += 1
            self.holding.set()
            if not self.gate.wait(timeout=120):
                raise TimeoutError("the test never opened the gate")
        return super().embed_batch(texts)
