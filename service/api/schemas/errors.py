"""The error body, and the error statuses each operation documents in OpenAPI."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    """Why a request (or a queued update) failed."""

    code: str
    message: str
    request_id: str | None = None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


# What each error status means here; `error.code` says which case it is.
MEANINGS: Mapping[int, str] = {
    400: "Bad input: undecodable JSON (`invalid_json`), a bad file or collection name, an "
    "unknown source in a filter, an unreadable, empty or scanned document …",
    401: "An API key is required or wrong (`unauthorized`; only with ZHICE_API_KEYS)",
    403: "Document updates are disabled on this address (`writes_disabled`)",
    404: "No such document, collection, job or model (`not_found`, `unknown_collection`)",
    409: "The document exists already, or is the last one (`document_exists`, `last_document`)",
    413: "The body (`payload_too_large`) or the document's text or chunks "
    "(`document_too_large`) pass their limits",
    415: "Not a supported document type (`unsupported_format`)",
    422: "The request does not match the schema (`validation_error`)",
    429: "Rate limit exceeded (`rate_limited`); see Retry-After",
    500: "Internal error (`internal_error`); the request id leads to the log",
    503: "Not ready yet (`not_ready`), the update queue is full (`busy`, see Retry-After), "
    "or the feedback log cannot be written",
}
# Statuses any operation may answer: keys, rate limit, a bug.
EVERYWHERE = (401, 429, 500)


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for these error statuses, each with the error body."""
    return {s: {"model": ErrorBody, "description": MEANINGS[s]} for s in statuses}
