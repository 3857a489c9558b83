"""Why zhice computes its own BM25 sparse vectors on Milvus: the measurement (not in CI).

    ZHICE_STORE=milvus ZHICE_MILVUS_URI=/tmp/m.db ZHICE_INDEX_DIR=/tmp/index-milvus \\
        python -m tests.bm25_choice

On a Milvus-backed index (after `zhice ingest`), copies every visible chunk's search
text into a second collection that scores it with Milvus's built-in BM25 function
(`analyzer_params={"tokenizer": "jieba"}`, k1 1.2, b 0.75, the same filter fields),
then evaluates dev and test with the BM25 retriever alone and with hybrid retrieval,
once on zhice's sparse vectors and once on the built-in function. The built-in
function receives the question's zhice tokens and synonyms joined by spaces and
re-tokenises them with jieba's plain dictionary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pymilvus import DataType, Function, FunctionType

from ingest import milvus
from ingest.catalog import visible
from ingest.milvus import CHUNK_FIELDS, chunk_of
from service.answer.build import build_qa, with_index
from service.answer.filters import Filter
from service.answer.milvus_store import MilvusStore
from service.answer.store import Scored
from service.config import Settings
from service.eval.evaluation import metrics, read_questions, run

ROOT = Path(__file__).resolve().parents[1]
BUILTIN = "zhice_bm25_choice"


def main() -> None:
    settings = Settings()
    qa = build_qa(settings)
    store = qa.retriever.store
    assert isinstance(store, MilvusStore), "run on a Milvus-backed index (ZHICE_STORE=milvus)"
    catalog = store.catalog
    client = milvus._client(catalog.target)
    if client.has_collection(BUILTIN):
        client.drop_collection(BUILTIN)
    schema = client.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field(
        "text",
        DataType.VARCHAR,
        max_length=65_535,
        enable_analyzer=True,
        analyzer_params={"tokenizer": "jieba"},
    )
    for field in ("source", "department", "region", "date"):
        schema.add_field(field, DataType.VARCHAR, max_length=2_048)
    schema.add_field("gen", DataType.INT64)
    schema.add_field("bm25", DataType.SPARSE_FLOAT_VECTOR)
    schema.add_function(
        Function(
            name="bm25",
            function_type=FunctionType.BM25,
            input_field_names=["text"],
            output_field_names=["bm25"],
        )
    )
    indexes = client.prepare_index_params()
    indexes.add_index(
        "bm25",
        index_type="SPARSE_INVERTED_INDEX",
        metric_type="BM25",
        params={"bm25_k1": 1.2, "bm25_b": 0.75},
    )
    client.create_collection(BUILTIN, schema=schema, index_params=indexes)
    fields = [*CHUNK_FIELDS, "department", "region", "date", "gen"]
    rows = milvus.query(catalog.target, catalog.collection, visible(catalog), fields)
    client.insert(
        BUILTIN,
        [
            {"pk": r["pk"], "text": chunk_of(r).search_text}
            | {k: r[k] for k in ("source", "department", "region", "date", "gen")}
            for r in rows
        ],
    )

    class Builtin(MilvusStore):
        def lexical(
            self, tokens: Sequence[str], boosts: Mapping[str, float], k: int, where: Filter | None
        ) -> Scored:
            expr = self.expression(where)
            if expr is None or not tokens:
                return []
            found = client.search(
                BUILTIN,
                [" ".join(tokens)],
                anns_field="bm25",
                limit=k,
                filter=expr,
                output_fields=[],
                search_params={"metric_type": "BM25"},
            )
            # milvus-lite reports BM25 as a negative distance (smaller is nearer).
            return [(int(h["pk"]), abs(float(h["distance"]))) for h in found[0] if h["distance"]]

    other = with_index(qa, Builtin(catalog), settings)
    try:
        for split in ("dev", "test"):
            questions = read_questions(ROOT / "eval" / f"{split}.jsonl")
            for mode in ("bm25", "hybrid"):
                for label, pipeline in (("zhice sparse", qa), ("built-in BM25", other)):
                    m = metrics(run(pipeline, questions, mode))
                    print(
                        f"{split:5} {mode:7} {label:14} hit@1 {m['hit@1']:.4f} "
                        f"hit@5 {m['hit@5']:.4f} mrr@10 {m['mrr@10']:.4f} "
                        f"keywords {m['keyword_accuracy']:.4f}",
                        flush=True,
                    )
    finally:
        client.drop_collection(BUILTIN)


if __name__ == "__main__":
    main()
