"""Moving a knowledge base between the stores without re-embedding (`zhice migrate`).

The chunks and their stored vectors are read from the index in force and written as a
new version in the other store, which becomes current the same atomic way a build
does; nothing is embedded again, and the documents keep their chunk ids and offsets.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np

from ingest import milvus
from ingest.build import build_version
from ingest.catalog import is_catalog, load_catalog, visible
from ingest.errors import IndexIncompatibleError
from ingest.milvus import CHUNK_FIELDS, MilvusTarget, chunk_of
from ingest.milvus_write import build_milvus
from ingest.store import load_index, locked, read_manifest

log = logging.getLogger(__name__)

StoreName = Literal["local", "milvus"]


def migrate(index_dir: Path, model: str, backend: str, to: StoreName, target: MilvusTarget) -> int:
    """Rewrite the index in force into store `to`; returns the chunks moved.

    `target` is where the Milvus side lives (read from, or written to).
    """
    began = time.perf_counter()
    with locked(index_dir):
        if is_catalog(index_dir) == (to == "milvus"):
            raise IndexIncompatibleError(f"the index in {index_dir} is on {to} already")
        manifest = read_manifest(index_dir)
        backend = manifest.backend if manifest else backend
        if to == "milvus":
            index = load_index(index_dir, model, backend)
            build_milvus(
                index_dir,
                target,
                model=model,
                documents=index.documents.values(),
                chunks=index.chunks,
                vectors=index.vectors.vectors(),
                began=began,
                backend=backend,
            )
            moved = len(index.chunks)
        else:
            catalog = load_catalog(index_dir, model, backend, target)
            rows = sorted(
                milvus.query(
                    target, catalog.collection, visible(catalog), [*CHUNK_FIELDS, "dense"]
                ),
                key=lambda row: int(row["seq"]),
            )
            build_version(
                index_dir,
                model=model,
                documents=catalog.documents.values(),
                chunks=[chunk_of(row) for row in rows],
                vectors=np.asarray([row["dense"] for row in rows], dtype=np.float32),
                began=began,
                backend=backend,
            )
            moved = len(rows)
    log.info("moved %d chunks to the %s store in %.1f s", moved, to, time.perf_counter() - began)
    return moved
