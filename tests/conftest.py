"""Shared fixtures: a fake-model index for fast tests, the real model and a live server.

`store` is the backend every fixture-built knowledge base lives on (fake-model and
real-model alike): `local` unless ZHICE_TEST_STORE says otherwise — `milvus` (a
milvus-lite server in its own process, as a deployment would run Milvus) or
`local,milvus` for both. `make test` runs the suite on local, then, with
ZHICE_TEST_STORE=milvus, again on Milvus: only the tests that use `store`; those marked
`local_store` (they read the local index format itself) are skipped there, with reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ingest.pipeline import ingest
from ingest.tokenize import Tokenizer
from service.answer.build import build_qa, embedder_for
from service.answer.qa import QA
from service.api.app import create_app
from service.config import Settings
from tests.fakes import GatedEmbedder, HashEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
QUESTIONS = ROOT / "eval" / "dev.jsonl"  # the tuning split
STORES = ("local", "milvus")
TEST_STORES = tuple(os.environ.get("ZHICE_TEST_STORE", "local").split(","))


def pytest_configure(config: pytest.Config) -> None:
    """Refuse an unknown ZHICE_TEST_STORE before anything runs."""
    if not TEST_STORES or not set(TEST_STORES) <= set(STORES):
        raise pytest.UsageError(f"ZHICE_TEST_STORE: a comma-separated subset of {STORES}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test built on `store` runs once per backend of ZHICE_TEST_STORE."""
    if "store" in metafunc.fixturenames:
        metafunc.parametrize("store", TEST_STORES, indirect=True, scope="session")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without the local store, keep only tests that use `store`; skip `local_store` ones."""
    if "local" not in TEST_STORES:
        uses = ["store" in getattr(item, "fixturenames", ()) for item in items]
        config.hook.pytest_deselected(
            items=[i for i, use in zip(items, uses, strict=True) if not use]
        )
        items[:] = [i for i, use in zip(items, uses, strict=True) if use]
    for item in items:
        marker = item.get_closest_marker("local_store")
        callspec = getattr(item, "callspec", None)
        if marker and callspec is not None and callspec.params.get("store", "local") != "local":
            item.add_marker(pytest.mark.skip(reason=f"local store only: {marker.args[0]}"))


@pytest.fixture(scope="session")
def store(request: pytest.FixtureRequest) -> str:
    """The backend under test (see pytest_generate_tests)."""
    return str(request.param)


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A milvus-lite server in a child process (`python -m milvus_lite server`)."""
    port = free_port()
    data = tmp_path_factory.mktemp("milvus")
    command = [sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(data)]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(data.parent / f"{data.name}.log", "wb"),  # noqa: SIM115 (lives with server)
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("milvus-lite server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def store_settings(store: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings fields that put a knowledge base on `store`, in its own Milvus collections."""
    if store == "local":
        return {"store": "local"}
    uri = request.getfixturevalue("milvus_uri")
    return {"store": "milvus", "milvus_uri": uri, "milvus_collection": f"t{uuid.uuid4().hex[:8]}"}


def store_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a child process these settings' store."""
    return {
        "ZHICE_STORE": settings.store,
        "ZHICE_MILVUS_URI": settings.milvus_uri,
        "ZHICE_MILVUS_COLLECTION": settings.milvus_collection,
    }


def private_copy(
    settings: Settings, root: Path, request: pytest.FixtureRequest, **extra: Any
) -> Settings:
    """A copy of a knowledge base (corpus and index) that a test may change.

    On Milvus the catalog is copied and rebuilt into new collections, reusing every
    stored vector, so no test sees another's writes.
    """
    corpus, index = root / "corpus", root / "index"
    shutil.copytree(settings.corpus_dir, corpus)
    shutil.copytree(settings.index_dir, index, symlinks=True)
    fields = {"corpus_dir": corpus, "index_dir": index} | store_settings(settings.store, request)
    copy = Settings(**(settings.model_dump() | fields | extra))
    if copy.store == "milvus":
        fake = copy.embedding_model == "fake-hash"
        ingest(
            copy.corpus_dir,
            copy.index_dir,
            copy.embedding_model,
            HashEmbedder if fake else lambda: request.getfixturevalue("real_qa").retriever.embedder,
            backend=copy.embedding_backend,
            force=True,
            progress=False,
            milvus=copy.milvus_target(),
        )
    return copy


def index_fake(settings: Settings) -> None:
    """Index settings' corpus with the fake embedder, on settings' store."""
    ingest(
        settings.corpus_dir,
        settings.index_dir,
        "fake-hash",
        HashEmbedder,
        progress=False,
        milvus=settings.milvus_target(),
    )


def _fake_settings(root: Path, store: str, request: pytest.FixtureRequest) -> Settings:
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    # The fake embedder's similarities are not on e5's scale, so refusal is off here;
    # the real-model tests check refusal.
    return Settings(
        corpus_dir=corpus,
        index_dir=root / "index",
        embedding_model="fake-hash",
        refusal_threshold=0.0,
        **store_settings(store, request),
    )


@pytest.fixture
def fake_settings(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> Settings:
    """A private copy of the bundled corpus, to be indexed with the fake embedder."""
    return _fake_settings(tmp_path, store, request)


@pytest.fixture(scope="session")
def fake_qa_settings(
    tmp_path_factory: pytest.TempPathFactory, store: str, request: pytest.FixtureRequest
) -> Settings:
    """The bundled corpus indexed once with the fake embedder (tests must not modify it)."""
    settings = _fake_settings(tmp_path_factory.mktemp("fake"), store, request)
    index_fake(settings)
    return settings


@pytest.fixture(scope="session")
def fake_qa(fake_qa_settings: Settings) -> QA:
    """A QA pipeline over the bundled corpus with the fake embedder."""
    return build_qa(fake_qa_settings, HashEmbedder())


@pytest.fixture(scope="session")
def real_settings(
    tmp_path_factory: pytest.TempPathFactory, store: str, request: pytest.FixtureRequest
) -> Settings:
    """The default model and the bundled corpus, indexed once per test session and store."""
    index_dir = tmp_path_factory.mktemp("real") / "index"
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir, **store_settings(store, request))
    ingest(
        settings.corpus_dir,
        settings.index_dir,
        settings.embedding_model,
        lambda: embedder_for(settings),
        backend=settings.embedding_backend,
        progress=False,
        milvus=settings.milvus_target(),
    )
    return settings


@pytest.fixture(scope="session")
def real_qa(real_settings: Settings) -> QA:
    """The real pipeline, loaded once."""
    return build_qa(real_settings)


def free_port() -> int:
    """A TCP port nobody is listening on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve app with a real uvicorn on a free port; yields its URL once it listens."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(url, "/healthz")
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for(url: str, path: str, seconds: float = 120) -> None:
    """Poll until GET url+path answers 200."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url}{path} did not answer 200 within {seconds} s")


@pytest.fixture(scope="session")
def live_server(real_settings: Settings) -> Iterator[str]:
    """A real uvicorn server on a free port, serving the real model and corpus."""
    with running(create_app(real_settings)) as url:
        wait_for(url, "/readyz")
        yield url


@dataclass
class Gated:
    """A live server whose document updates wait at `embedder.gate` until a test opens it."""

    url: str
    embedder: GatedEmbedder
    settings: Settings
    app: FastAPI

    def wait_until_stopped(self, seconds: float = 30) -> None:
        """Wait until the server has asked a running update to stop (its client left)."""
        jobs = self.app.state.zhice.jobs
        deadline = time.monotonic() + seconds
        while not any(job.stop.is_set() for job in jobs._jobs.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no update was asked to stop within {seconds} s")
            time.sleep(0.01)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    """The real tokenizer (jieba with the domain dictionary), loaded once."""
    return Tokenizer()


@pytest.fixture
def gated(fake_settings: Settings) -> Iterator[Gated]:
    """A real server over a private corpus copy: one ingestion thread, two places waiting."""
    settings = Settings(**(fake_settings.model_dump() | {"ingest_queue": 2}))
    index_fake(settings)
    embedder = GatedEmbedder()
    app = create_app(settings, qa=build_qa(settings, embedder))
    with running(app) as url:
        try:
            yield Gated(url, embedder, settings, app)
        finally:
            embedder.gate.set()  # let the ingestion thread finish before the server stops
