"""`zhice serve --workers 2`: two processes share the index on disk and both follow updates."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from tests.conftest import free_port, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.local_store("workers memory-map the local index version (/proc/PID/maps)"),
]

REPORTS = {
    "haikou.txt": "海口市人工智能产业发展计划\n\n海口市提出到2027年培育50家人工智能企业。\n",
    "sanya.txt": "三亚市数据要素市场建设方案\n\n三亚市建设数据交易中心，推动公共数据开放。\n",
}


def _workers(parent: int) -> list[int]:
    """The worker processes uvicorn spawned under `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def _mapped(pid: int, version: str) -> bool:
    """Whether a process has files of an index version memory-mapped."""
    return f"/{version}/" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def two_workers(real_settings: Settings, tmp_path: Path) -> Iterator[tuple[str, Path, list[int]]]:
    """`zhice serve --workers 2` on copies of the corpus and index."""
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(real_settings.corpus_dir, corpus)
    shutil.copytree(real_settings.index_dir, index, symlinks=True)
    port = free_port()
    env = {**os.environ, "ZHICE_INDEX_DIR": str(index), "ZHICE_CORPUS_DIR": str(corpus)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(url, "/readyz", 240)
        workers = _workers(proc.pid)
        assert len(workers) == 2
        yield url, index, workers
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_both_workers_see_concurrent_updates(two_workers: tuple[str, Path, list[int]]) -> None:
    url, index, workers = two_workers
    before = os.readlink(index / "current")
    deadline = time.monotonic() + 120  # /readyz answered for one worker; the other loads
    while not all(_mapped(pid, before) for pid in workers):  # loaded memory-mapped
        assert time.monotonic() < deadline, "a worker never loaded the index"
        time.sleep(0.2)

    def add(name: str) -> int:
        # A connection of its own: the two additions may reach different workers.
        # A worker maps the index before its model has loaded: until then it answers
        # 503 not_ready, which says nothing about updates, so the addition is retried.
        with httpx.Client(base_url=url, timeout=120) as client:
            files = {"file": (name, REPORTS[name].encode())}
            while True:
                response = client.post("/documents", files=files)
                if response.status_code != 503 or time.monotonic() > deadline:
                    return response.status_code
                assert response.json()["error"]["code"] == "not_ready", response.text
                time.sleep(0.2)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(add, REPORTS)) == [201, 201]
    version = os.readlink(index / "current")
    assert version != before
    # Requests on fresh connections reach both workers; each loads the new version.
    deadline = time.monotonic() + 60
    while not all(_mapped(pid, version) for pid in workers):
        assert time.monotonic() < deadline, "a worker never loaded the new version"
        httpx.get(f"{url}/documents", timeout=30)
        time.sleep(0.1)

    def listed() -> dict[str, int]:
        documents = httpx.get(f"{url}/documents", timeout=30).json()["documents"]
        return {d["source"]: d["chunks"] for d in documents}

    while not set(REPORTS) <= set(listed()):  # a worker may still be installing it
        assert time.monotonic() < deadline, "an update was lost"
        time.sleep(0.1)
    for _ in range(10):  # from now on, every worker answers with both documents
        counts = listed()
        assert all(counts.get(name, 0) >= 1 for name in REPORTS)
