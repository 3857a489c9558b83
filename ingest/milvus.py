"""The one owner of pymilvus: connections, the chunk collection's schema, and the calls made.

A Milvus-backed knowledge base keeps one physical collection per full build, named
`<stem>__<12 hex>`; its rows are the chunks (text, offsets, metadata), a dense vector
(HNSW, inner product) and a BM25 sparse vector (inverted index, inner product), plus
the scalar fields filters read. Every failure of the server — unreachable, or refusing
a call — surfaces as `StoreUnavailableError` (HTTP 503), never as a pymilvus traceback.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ingest.errors import StoreUnavailableError
from ingest.types import Chunk

log = logging.getLogger(__name__)

# Milvus VARCHAR limits are in bytes; a chunk's text and context stay far below them.
_LONG = 65_535
_SHORT = 2_048
# The chunk fields read back to rebuild a Chunk (plus `seq`, the corpus order).
CHUNK_FIELDS = (
    "chunk_id",
    "source",
    "title",
    "start",
    "end",
    "text",
    "kind",
    "context",
    "metadata",
    "seq",
)
# HNSW build and search parameters: recall@10 ≥ 0.99 at 10⁵ vectors (see README).
_HNSW = {"M": 16, "efConstruction": 200}
_MIN_EF = 256
_BATCH = 1_000
_MAX_LIMIT = 16_384  # Milvus's ceiling on a search's or query's limit


@dataclass(frozen=True)
class MilvusTarget:
    """Where a knowledge base's collections live: server (or milvus-lite file) and name stem."""

    uri: str
    token: str | None
    stem: str

    def new_name(self, version: str) -> str:
        """The physical collection name of a build (`version`: 12 lower-case hex digits)."""
        return f"{self.stem}__{version}"

    def owns(self, name: str) -> bool:
        """True for a physical collection built for this knowledge base."""
        return re.fullmatch(re.escape(self.stem) + r"__[0-9a-f]{12}", name) is not None


def chunk_of(row: Mapping[str, Any]) -> Chunk:
    """The chunk a row holds (its CHUNK_FIELDS)."""
    return Chunk(
        chunk_id=row["chunk_id"],
        source=row["source"],
        title=row["title"],
        start=int(row["start"]),
        end=int(row["end"]),
        text=row["text"],
        kind=row["kind"],
        context=row["context"],
        metadata=dict(row["metadata"] or {}),
    )


def literal(value: str) -> str:
    """A Milvus expression string literal holding exactly `value`."""
    return json.dumps(value, ensure_ascii=False)


_lock = threading.Lock()
_clients: dict[tuple[str, str | None], Any] = {}
_loaded: set[tuple[str, str]] = set()


@contextmanager
def _calls(target: MilvusTarget, what: str) -> Iterator[None]:
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise StoreUnavailableError(
            f"Milvus at {target.uri} failed to {what}: {exc.message}"
        ) from exc


def _client(target: MilvusTarget) -> Any:
    """One client per server and token, shared by threads (pymilvus clients are)."""
    key = (target.uri, target.token)
    with _lock:
        found = _clients.get(key)
        if found is None:
            from pymilvus import MilvusClient

            # Set after pymilvus's import, whose logging config resets its loggers.
            # milvus-lite does not hand out MVCC timestamps: pymilvus warns at every query
            # iterator that it uses the client's clock instead (what we want), and an
            # embedded milvus-lite logs the refused request as a server error. Failures
            # that matter reach the caller as exceptions either way.
            logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            with _calls(target, "connect"):
                found = MilvusClient(target.uri, token=target.token or "", timeout=10)
            _clients[key] = found
        return found


def _ready(target: MilvusTarget, name: str) -> Any:
    """The client, with collection `name` loaded for search (once per process)."""
    client = _client(target)
    if (target.uri, name) not in _loaded:
        with _calls(target, f"load collection {name}"):
            client.load_collection(name)
        _loaded.add((target.uri, name))
    return client


def create(target: MilvusTarget, name: str, dimension: int) -> None:
    """Create an empty chunk collection with its indexes."""
    from pymilvus import DataType

    client = _client(target)
    with _calls(target, f"create collection {name}"):
        schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        schema.add_field("chunk_id", DataType.VARCHAR, max_length=_SHORT)
        schema.add_field("source", DataType.VARCHAR, max_length=_SHORT)
        schema.add_field("title", DataType.VARCHAR, max_length=_SHORT)
        schema.add_field("start", DataType.INT64)
        schema.add_field("end", DataType.INT64)
        schema.add_field("text", DataType.VARCHAR, max_length=_LONG)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("context", DataType.VARCHAR, max_length=_LONG)
        schema.add_field("metadata", DataType.JSON)
        for field in ("department", "region", "date"):
            schema.add_field(field, DataType.VARCHAR, max_length=_SHORT)
        schema.add_field("seq", DataType.INT64)
        schema.add_field("gen", DataType.INT64)
        schema.add_field("length", DataType.INT64)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        indexes = client.prepare_index_params()
        indexes.add_index("dense", index_type="HNSW", metric_type="IP", params=_HNSW)
        indexes.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection(
            name, schema=schema, index_params=indexes, consistency_level="Strong"
        )
    _loaded.add((target.uri, name))


def insert(target: MilvusTarget, name: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert chunk rows, in batches."""
    client = _client(target)
    with _calls(target, f"insert into {name}"):
        for i in range(0, len(rows), _BATCH):
            client.insert(name, [dict(row) for row in rows[i : i + _BATCH]])


def delete(target: MilvusTarget, name: str, expr: str) -> None:
    """Delete the rows matching a boolean expression."""
    with _calls(target, f"delete from {name}"):
        _ready(target, name).delete(name, filter=expr)


def drop_unused(target: MilvusTarget, keep: Sequence[str]) -> list[str]:
    """Drop this knowledge base's physical collections but `keep`; returns those dropped."""
    client = _client(target)
    with _calls(target, "list collections"):
        names = [n for n in client.list_collections() if target.owns(n) and n not in keep]
    for name in names:
        with _calls(target, f"drop collection {name}"):
            client.drop_collection(name)
        _loaded.discard((target.uri, name))
    return names


def search(
    target: MilvusTarget,
    name: str,
    field: str,
    query: Sequence[float] | Mapping[int, float],
    k: int,
    expr: str,
) -> list[tuple[int, float]]:
    """Top-k (primary key, inner product) on the `dense` or `sparse` field under `expr`."""
    params: dict[str, Any] = {"metric_type": "IP"}
    if field == "dense":
        params["params"] = {"ef": max(k, _MIN_EF)}
    with _calls(target, f"search {name}"):
        found = _ready(target, name).search(
            name,
            [query],
            anns_field=field,
            limit=min(k, _MAX_LIMIT),
            filter=expr,
            search_params=params,
            output_fields=[],
        )
    return [(int(hit["pk"]), float(hit["distance"])) for hit in found[0]]


def query(
    target: MilvusTarget, name: str, expr: str, fields: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Every row matching `expr`, with `fields` (and `pk`), in batches."""
    client = _ready(target, name)
    with _calls(target, f"query {name}"):
        rows = client.query_iterator(
            name, batch_size=_BATCH, filter=expr, output_fields=[*fields, "pk"]
        )
    try:
        while True:
            with _calls(target, f"query {name}"):
                batch = rows.next()
            if not batch:
                return
            yield from batch
    finally:
        rows.close()


def query_few(
    target: MilvusTarget, name: str, expr: str, fields: Sequence[str], limit: int
) -> list[dict[str, Any]]:
    """At most `limit` (≤ 16,384) rows matching `expr`, in one call (no iterator)."""
    with _calls(target, f"query {name}"):
        found = _ready(target, name).query(
            name, filter=expr, output_fields=[*fields, "pk"], limit=limit
        )
    return [dict(row) for row in found]


def get(
    target: MilvusTarget, name: str, keys: Sequence[int], fields: Sequence[str]
) -> list[dict[str, Any]]:
    """The rows of these primary keys (in no particular order)."""
    if not keys:
        return []
    with _calls(target, f"read from {name}"):
        found = _ready(target, name).get(name, ids=list(keys), output_fields=[*fields, "pk"])
    return [dict(row) for row in found]
