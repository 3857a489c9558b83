"""Evaluate a running server: ask over HTTP and rebuild the in-process `Result`."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from ingest.types import Chunk, Citation, Hit
from service.answer.qa import Result
from service.errors import RemoteError
from service.eval.evaluation import Question

log = logging.getLogger(__name__)

TOP_K = 10


class RemoteAsker:
    """Calls `POST {url}/ask` with `debug: true`, so evidence and threshold come back too."""

    def __init__(
        self, url: str, *, timeout: float = 60.0, client: httpx.Client | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self._client = client or httpx.Client(timeout=timeout)
        self.threshold: float | None = None  # the server's refusal threshold, once seen

    def __call__(self, question: Question) -> Result:
        """Ask one question and convert the response."""
        body = {
            "question": question.question,
            "top_k": TOP_K,
            "history": [{"role": r, "content": c} for r, c in question.history],
            "debug": True,
        }
        try:
            response = self._client.post(f"{self.url}/ask", json=body)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}/ask: {exc}") from exc
        if response.status_code != 200:
            raise RemoteError(
                f"{self.url}/ask answered {response.status_code} for {question.id}: "
                f"{response.text[:200]}"
            )
        try:
            return self._result(response.json())
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteError(f"{self.url}/ask sent an unexpected response: {exc}") from exc

    def passage_texts(self) -> list[str] | None:
        """The text of every chunk the server holds (for nDCG's ideal), or None if unavailable.

        A chunk's text is its document's `text[start:end]` (the API contract).
        """
        try:
            listing = self._get("/documents")["documents"]
            texts = []
            for entry in listing:
                doc = self._get(f"/documents/{quote(str(entry['source']), safe='')}")
                texts += [doc["text"][c["start"] : c["end"]] for c in doc["chunks"]]
        except (RemoteError, KeyError, TypeError) as exc:
            log.warning("cannot list the server's passages; nDCG ideal estimated: %s", exc)
            return None
        return texts

    def _get(self, path: str) -> Any:
        try:
            response = self._client.get(f"{self.url}{path}")
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RemoteError(f"GET {self.url}{path} failed: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def _result(self, data: dict[str, Any]) -> Result:
        debug = data.get("debug") or {}
        if "threshold" in debug:
            self.threshold = float(debug["threshold"])
        return Result(
            answer=str(data["answer"]),
            refused=bool(data["refused"]),
            citations=[_citation(c) for c in data["citations"]],
            passages=[_hit(p) for p in data["passages"]],
            query=str(debug.get("query", "")),
            intent=str(debug.get("intent", "")),
            evidence=float(debug.get("evidence", 0.0)),
            timings_ms={str(k): float(v) for k, v in data.get("timings_ms", {}).items()},
        )


def _citation(c: dict[str, Any]) -> Citation:
    return Citation(
        id=int(c["id"]),
        source=str(c["source"]),
        title=str(c.get("title", "")),
        start=int(c["start"]),
        end=int(c["end"]),
        quote=str(c["quote"]),
    )


def _hit(p: dict[str, Any]) -> Hit:
    chunk = Chunk(
        chunk_id=str(p["chunk_id"]),
        source=str(p["source"]),
        title=str(p.get("title", "")),
        start=int(p["start"]),
        end=int(p["end"]),
        text=str(p["text"]),
    )
    return Hit(chunk=chunk, score=float(p.get("score", 0.0)))
