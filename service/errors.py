"""Every error the service raises, with the HTTP status and the code clients see.

Core code raises these; `service.api.errors` maps them to `{"error": {code, message}}`
and the CLI prints their message. The write path's errors live in `ingest.errors` and
are re-exported here, so this module lists every code a client can meet.
"""

from __future__ import annotations

from ingest.errors import (
    CorpusError,
    DocumentExistsError,
    DocumentNotFoundError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    IndexIncompatibleError,
    IndexMissingError,
    InvalidSourceError,
    LastDocumentError,
    ModelNotFoundError,
    ModelPreparationError,
    ScannedPDFError,
    StoreUnavailableError,
    UnreadableDocumentError,
    UnsupportedFormatError,
    UpdateCancelledError,
    ZhiceError,
)

__all__ = [
    "CorpusError",
    "DocumentExistsError",
    "DocumentNotFoundError",
    "DocumentTooLargeError",
    "EmptyDocumentError",
    "EncryptedDocumentError",
    "IndexIncompatibleError",
    "IndexMissingError",
    "InvalidSourceError",
    "LastDocumentError",
    "ModelNotFoundError",
    "ModelPreparationError",
    "ScannedPDFError",
    "StoreUnavailableError",
    "UnreadableDocumentError",
    "UnsupportedFormatError",
    "UpdateCancelledError",
    "ZhiceError",
]


class NotReadyError(ZhiceError):
    """The index or model is still loading (or failed to load)."""

    status = 503
    code = "not_ready"


class NotFoundError(ZhiceError):
    """The requested resource does not exist."""

    status = 404
    code = "not_found"


class InvalidRequestError(ZhiceError):
    """The request is malformed."""

    status = 400
    code = "invalid_request"


class QuestionSetError(ZhiceError):
    """The question file is malformed."""

    status = 400
    code = "invalid_question_set"


class CalibrationError(ZhiceError):
    """The question set cannot calibrate the refusal threshold."""

    status = 400
    code = "calibration_failed"


class LLMError(Exception):
    """The LLM server failed, timed out or replied with something unusable."""


class CmrcError(ZhiceError):
    """The CMRC file is missing or not in SQuAD format."""

    status = 400
    code = "invalid_cmrc"


class RemoteError(ZhiceError):
    """The server under evaluation failed or answered outside the contract."""

    status = 502
    code = "remote_failed"


class FeedbackLogError(ZhiceError):
    """The feedback log cannot be written (missing permission, full disk …)."""

    status = 503
    code = "feedback_unavailable"


class FAQError(ZhiceError):
    """The FAQ file cannot be read."""

    status = 400
    code = "invalid_faq"


class UnknownSourceError(ZhiceError):
    """A filter names a document that is not in the index."""

    status = 400
    code = "unknown_source"


class UnsupportedError(ZhiceError):
    """A standard request option zhice cannot honour (n > 1, non-text content)."""

    status = 400
    code = "unsupported"


class UnknownCollectionError(ZhiceError):
    """A request names a collection the service does not hold."""

    status = 404
    code = "unknown_collection"


class InvalidCollectionError(ZhiceError):
    """A collection name that cannot name a directory of ours."""

    status = 400
    code = "invalid_collection"


class BusyError(ZhiceError):
    """The document-update queue is full; `retry_after` is a guess at when it will not be."""

    status = 503
    code = "busy"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WritesDisabledError(ZhiceError):
    """Document updates on a service reachable beyond loopback without API keys."""

    status = 403
    code = "writes_disabled"
