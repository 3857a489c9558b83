"""Shared fixtures: a fake-model index for fast tests, the real model and a live server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from ingest.pipeline import ingest
from service.answer.build import build_qa, embedder_for
from service.answer.qa import QA
from service.api.app import create_app
from service.config import Settings
from tests.fakes import GatedEmbedder, HashEmbedder

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus"
QUESTIONS = ROOT / "eval" / "dev.jsonl"  # the tuning split


def _fake_settings(root: Path) -> Settings:
    corpus = root / "corpus"
    shutil.copytree(CORPUS, corpus)
    # The fake embedder's similarities are not on e5's scale, so refusal is off here;
    # the real-model tests check refusal.
    return Settings(
        corpus_dir=corpus,
        index_dir=root / "index",
        embedding_model="fake-hash",
        refusal_threshold=0.0,
    )


@pytest.fixture
def fake_settings(tmp_path: Path) -> Settings:
    """A private copy of the bundled corpus, to be indexed with the fake embedder."""
    return _fake_settings(tmp_path)


@pytest.fixture(scope="session")
def fake_qa_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The bundled corpus indexed once with the fake embedder (tests must not modify it)."""
    settings = _fake_settings(tmp_path_factory.mktemp("fake"))
    embedder = HashEmbedder()
    ingest(settings.corpus_dir, settings.index_dir, "fake-hash", lambda: embedder, progress=False)
    return settings


@pytest.fixture(scope="session")
def fake_qa(fake_qa_settings: Settings) -> QA:
    """A QA pipeline over the bundled corpus with the fake embedder."""
    return build_qa(fake_qa_settings, HashEmbedder())


@pytest.fixture(scope="session")
def real_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The default model and the bundled corpus, indexed once per test session."""
    index_dir = tmp_path_factory.mktemp("real") / "index"
    settings = Settings(corpus_dir=CORPUS, index_dir=index_dir)
    ingest(
        settings.corpus_dir,
        settings.index_dir,
        settings.embedding_model,
        lambda: embedder_for(settings),
        backend=settings.embedding_backend,
        progress=False,
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


@pytest.fixture
def gated(fake_settings: Settings) -> Iterator[Gated]:
    """A real server over a private corpus copy: one ingestion thread, two places waiting."""
    settings = Settings(**(fake_settings.model_dump() | {"ingest_queue": 2}))
    ingest(settings.corpus_dir, settings.index_dir, "fake-hash", HashEmbedder, progress=False)
    embedder = GatedEmbedder()
    with running(create_app(settings, qa=build_qa(settings, embedder))) as url:
        try:
            yield Gated(url, embedder, settings)
        finally:
            embedder.gate.set()  # let the ingestion thread finish before the server stops
