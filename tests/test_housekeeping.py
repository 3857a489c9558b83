"""Connection timeouts, and what crashed writes leave behind removed at startup."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient

from ingest.store import current_version, locked
from service.answer.qa import QA
from service.api.app import create_app
from service.api.server import MAX_HEAD_BYTES, uvicorn_config
from service.config import Settings
from tests.conftest import free_port, private_copy, wait_for


@pytest.fixture
def served(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[tuple[str, int]]:
    """`zhice serve`'s uvicorn configuration: a 1 s header deadline, 1 s keep-alive."""
    overrides = {"port": free_port(), "header_timeout": 1.0, "keep_alive_timeout": 1}
    settings = Settings(**(fake_qa_settings.model_dump() | overrides))
    server = uvicorn.Server(uvicorn_config(create_app(settings, qa=fake_qa), settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(f"http://127.0.0.1:{settings.port}", "/healthz")
        yield "127.0.0.1", settings.port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> bool:
    """Whether the server closes the connection within `seconds` (sending `trickle` slowly)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            pass
        except ConnectionResetError:
            return True
        if trickle:
            try:
                sock.sendall(trickle)
            except (BrokenPipeError, ConnectionResetError):
                return True
    return False


def test_a_request_head_sent_slowly_is_cut_off(served: tuple[str, int]) -> None:
    with socket.create_connection(served) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        # A header byte every 0.2 s would reset an idle timer forever; the deadline holds.
        assert _closed_within(sock, 20, trickle=b"X")


def test_a_connection_that_sends_nothing_is_closed(served: tuple[str, int]) -> None:
    with socket.create_connection(served) as sock:
        assert _closed_within(sock, 20)


def test_an_idle_keep_alive_connection_is_closed(served: tuple[str, int]) -> None:
    with socket.create_connection(served) as sock:
        reader = sock.makefile("rb")
        for _ in range(2):  # a kept-alive connection serves request after request
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.readline().startswith(b"HTTP/1.1 200")
            head = dict(
                line.decode().lower().split(":", 1) for line in iter(reader.readline, b"\r\n")
            )
            reader.read(int(head["content-length"]))
        assert _closed_within(sock, 20)


def test_an_oversized_request_head_is_refused(served: tuple[str, int]) -> None:
    with socket.create_connection(served) as sock:
        # Headers that go on past the limit without ending: never buffered beyond it.
        padding = b"X-Padding: " + b"a" * 2 * MAX_HEAD_BYTES + b"\r\n"
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + padding)
        sock.settimeout(20)
        assert sock.recv(65536).startswith(b"HTTP/1.1 400")


# --- leftovers of crashed writes ---------------------------------------------------------


def _leftovers(settings: Settings) -> list[Path]:
    """What a write killed at various points leaves: a staged upload, unfinished versions."""
    made = [
        settings.corpus_dir / f".upload-{'0' * 32}.tmp",
        settings.index_dir / ".tmp-v-20260101T000000-abcdef",
        settings.index_dir / "v-20260101T000000-fedcba",  # written, never made current
    ]
    made[0].write_bytes(b"half an upload")
    for directory in made[1:]:
        directory.mkdir()
        (directory / "chunks.jsonl").write_text("{}\n", encoding="utf-8")
    link = settings.index_dir / ".current-v-20260101T000000-fedcba"
    os.symlink("v-20260101T000000-fedcba", link)
    return [*made, link]


@pytest.fixture
def kb(fake_qa_settings: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """A private copy of the indexed corpus."""
    return private_copy(fake_qa_settings, tmp_path, request)


def test_leftovers_are_removed_at_startup(kb: Settings, fake_qa: QA) -> None:
    version = current_version(kb.index_dir)
    leftovers = _leftovers(kb)
    with TestClient(create_app(kb, qa=fake_qa)) as client:
        assert client.get("/readyz").status_code == 200
    assert not any(os.path.lexists(path) for path in leftovers)
    assert current_version(kb.index_dir) == version and (kb.index_dir / str(version)).is_dir()
    assert len(list(kb.corpus_dir.iterdir())) == 5


def test_leftovers_are_kept_while_another_process_writes(kb: Settings, fake_qa: QA) -> None:
    leftovers = _leftovers(kb)
    with locked(kb.index_dir):  # as `zhice ingest` in another process would
        with TestClient(create_app(kb, qa=fake_qa)) as client:
            assert client.get("/healthz").status_code == 200
    assert all(os.path.lexists(path) for path in leftovers)
