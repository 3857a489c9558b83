"""`make soak`: abuse a real server on copies of the data, and print what it withstood.

Not part of `make test` (it takes minutes and its figures are timings). Against
`zhice serve` in a child process, on a private copy of the corpus and index:

1. a DOCX bomb (546 KB that unpacks to 150 MB): status, seconds, peak memory added;
2. the worst DOCX the limits accept (text just under the allowance, every character
   its own run, so markup near its allowance too): seconds to live, peak memory added;
3. an upload flood, twice: 50 concurrent 5 MB uploads while probes and questions run
   — the p50/p99 of /healthz and /ask during it, every upload's status and seconds,
   then every accepted document asked about and the document list compared — once with
   `Expect: 100-continue`, once sending bodies first;
4. 16 clients asking questions for `--ask-seconds` (default 600);
5. schemathesis with every check, `--examples` (default 100) per operation, fixed seed;
6. `--kills` (default 20) kill -9 trials: an upload under way, the server killed at a
   random moment, restarted, and checked: the document whole or absent, no leftovers.

    python -m tests.soak [--ask-seconds 600] [--examples 100] [--kills 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx

from ingest.store import current_version, load_index
from service.config import Settings
from service.eval.evaluation import read_questions
from tests.bench import percentiles, start_server
from tests.conftest import CORPUS, QUESTIONS, ROOT
from tests.samples import docx_bomb, docx_bytes, wordml_docx
from tests.test_schemathesis_e2e import command as schemathesis_command

FLOOD = 50
FLOOD_BYTES = 5 * 1024 * 1024
ASK_CLIENTS = 16
PROMPT_SECONDS = 2.0  # what "answered at once" means for a refused or queued upload
Rows = list[tuple[str, str]]


@dataclass
class Probe:
    """Requests a thread sends again and again until stopped; latencies in ms."""

    url: str
    call: Callable[[httpx.Client], httpx.Response]
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, pause: float = 0.0) -> threading.Thread:
        """Start probing in a thread."""

        def loop() -> None:
            with httpx.Client(base_url=self.url, timeout=30) as http:
                while not self.stop.is_set():
                    began = time.perf_counter()
                    try:
                        status = self.call(http).status_code
                    except httpx.HTTPError as exc:
                        self.failures[type(exc).__name__] += 1
                        continue
                    self.latencies.append((time.perf_counter() - began) * 1000)
                    if status != 200:
                        self.failures[str(status)] += 1
                    time.sleep(pause)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        return thread


def _figures(latencies: list[float]) -> str:
    if not latencies:
        return "no answers"
    p50, _, p99 = percentiles(latencies)
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(latencies)} requests)"


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    return _status_mb(pid, "VmHWM:")


def _rss_mb(pid: int) -> float:
    """The process's resident memory now (VmRSS), in MB."""
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak(pid: int) -> float:
    """Start the process's peak memory (VmHWM) afresh at what it holds now, in MB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _rss_mb(pid)


def bomb(url: str, pid: int) -> Rows:
    """Upload the 546 KB DOCX that unpacks to 150 MB; how fast and how much memory."""
    data = docx_bomb()
    before = _reset_peak(pid)
    began = time.perf_counter()
    files = {"file": ("bomb.docx", data)}
    response = httpx.post(f"{url}/documents", files=files, timeout=120)
    seconds = time.perf_counter() - began
    added = _peak_rss_mb(pid) - before
    code = response.json().get("error", {}).get("code", "")
    unpacked = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
    return [
        (
            f"DOCX bomb ({len(data) / 1e3:.0f} KB → {unpacked / 1e6:.0f} MB)",
            f"{response.status_code} {code} in {seconds:.2f} s; peak RSS +{added:.0f} MB",
        )
    ]


def _largest_docx(settings: Settings) -> bytes:
    """The reports' sentences shuffled into 96% of the text allowance, one run a character
    (two XML elements each, near the markup allowance): the worst DOCX still accepted."""
    sentences = [
        s.strip() + "。"
        for path in sorted(settings.corpus_dir.glob("*.txt"))
        for s in path.read_text(encoding="utf-8").split("。")
        if len(s.strip()) > 10
    ]
    random.Random(7).shuffle(sentences)
    text = "".join(sentences * (settings.max_document_chars // sum(map(len, sentences)) + 1))
    text = text[: int(settings.max_document_chars * 0.96)]

    def paragraphs() -> Any:
        for at in range(0, len(text), 120):
            runs = (
                f"<w:r><w:t>{escape(ch)}</w:t></w:r>" for ch in text[at : at + 120] if ch.strip()
            )
            yield ("<w:p>" + "".join(runs) + "</w:p>").encode()

    return wordml_docx(paragraphs())


def largest(url: str, pid: int, settings: Settings) -> Rows:
    """Upload the worst DOCX the limits accept, wait until it is live, then delete it."""
    data = _largest_docx(settings)
    before = _reset_peak(pid)
    began = time.perf_counter()
    response = httpx.post(f"{url}/documents", files={"file": ("largest.docx", data)}, timeout=1800)
    seconds = time.perf_counter() - began
    added = _peak_rss_mb(pid) - before
    body = response.json()
    httpx.delete(f"{url}/documents/largest.docx", timeout=600)
    what = f"{body.get('chunks', '?')} chunks" if response.is_success else body["error"]["code"]
    return [
        (
            f"largest accepted DOCX ({len(data) / 1e6:.1f} MB, "
            f"{settings.max_document_chars * 0.96:,.0f} characters)",
            f"{response.status_code} ({what}) live in {seconds:.1f} s; peak RSS +{added:.0f} MB",
        )
    ]


def _flood_document(flood: str, n: int) -> bytes:
    """A real 5 MB DOCX: a few dozen paragraphs to index, and 5 MB of media beside them."""
    paragraphs = [f"{flood}第{n}号洪峰文件第{k}条：示范项目建设与保障措施说明。" for k in range(40)]
    out = io.BytesIO(docx_bytes(paragraphs, heading=f"{flood}第{n}号洪峰文件"))
    with zipfile.ZipFile(out, "a", zipfile.ZIP_STORED) as archive:
        archive.writestr("word/media/scan.bin", os.urandom(FLOOD_BYTES))
    return out.getvalue()


def flood(url: str, questions: list[str], expect_continue: bool) -> Rows:
    """50 concurrent 5 MB uploads while /healthz and /ask are probed.

    With `expect_continue` the uploads send `Expect: 100-continue` (as curl does for
    large bodies) and their bodies only once told to; else, as httpx and browsers do,
    the whole body first — so a refused upload's answer waits for its own sending.
    """
    prefix = "expecting" if expect_continue else "eager"
    label = "甲组" if expect_continue else "乙组"  # each flood's documents its own words
    documents = [_flood_document(label, n) for n in range(FLOOD)]
    listed = _documents(url)
    health = Probe(url, lambda http: http.get("/healthz"))
    ask = Probe(url, lambda http: http.post("/ask", json={"question": random.choice(questions)}))
    threads = [health.run(pause=0.02), ask.run()]
    time.sleep(1)
    start = threading.Barrier(FLOOD)
    send = _post_expecting_continue if expect_continue else _post

    def upload(n: int) -> tuple[int, float, str | None]:
        request = httpx.Request(
            "POST",
            f"{url}/documents",
            files={"file": (f"{prefix}-{n}.docx", documents[n])},
            headers={"Prefer": "respond-async"},
        )
        request.read()
        start.wait()
        began = time.perf_counter()
        try:
            status, body = send(request)
        except OSError as exc:
            return 0, time.perf_counter() - began, type(exc).__name__
        job = str(json.loads(body)["id"]) if status == 202 else None
        return status, time.perf_counter() - began, job

    began = time.perf_counter()
    with ThreadPoolExecutor(FLOOD) as pool:
        answers = list(pool.map(upload, range(FLOOD)))
    jobs = {n: job for n, (status, _, job) in enumerate(answers) if status == 202 and job}
    outcomes = Counter(_finish(url, job) for job in jobs.values())
    drained = time.perf_counter() - began
    accepted = {f"{prefix}-{n}.docx": n for n in jobs}
    health.stop.set()
    ask.stop.set()
    for thread in threads:
        thread.join()

    statuses = Counter(status for status, _, _ in answers)
    prompt = sum(1 for s, secs, _ in answers if s in (202, 429, 503) and secs <= PROMPT_SECONDS)
    seconds = sorted(secs for _, secs, _ in answers)
    how = "Expect: 100-continue" if expect_continue else "bodies sent first"
    return [
        (
            f"flood: {FLOOD} × {FLOOD_BYTES // 2**20} MB uploads ({how})",
            ", ".join(f"{n}× {s}" for s, n in sorted(statuses.items())),
        ),
        (
            f"  answered 2xx/429/503 within {PROMPT_SECONDS:.0f} s",
            f"{prompt} of {FLOOD} (median {seconds[FLOOD // 2]:.2f} s, "
            f"slowest {seconds[-1]:.2f} s)",
        ),
        (
            "  queued jobs",
            ", ".join(f"{n} {o}" for o, n in outcomes.items()) + f"; all done in {drained:.1f} s",
        ),
        ("  /healthz during the flood", _figures(health.latencies) + _failed(health)),
        ("  /ask during the flood", _figures(ask.latencies) + _failed(ask)),
        ("  afterwards", _afterwards(url, listed, accepted, label)),
    ]


def _documents(url: str) -> dict[str, int]:
    """Every document served, with its number of chunks."""
    listed = httpx.get(f"{url}/documents", timeout=30).json()["documents"]
    return {d["source"]: d["chunks"] for d in listed}


def _afterwards(url: str, before: dict[str, int], accepted: dict[str, int], label: str) -> str:
    """Whether each accepted upload is answered from, and nothing else changed."""
    answered = 0
    for name, n in accepted.items():
        question = f"{label}第{n}号洪峰文件第7条说明了什么？"
        body = httpx.post(f"{url}/ask", json={"question": question}, timeout=30).json()
        answered += any(c["source"] == name for c in body["citations"])
    now = _documents(url)
    added = {name: chunks for name, chunks in now.items() if name not in before}
    others = {name: now.get(name) for name in before}
    unchanged = set(added) == set(accepted) and others == before
    return f"{answered} of {len(accepted)} accepted documents answered from, with a citation; " + (
        "the others unchanged" if unchanged else f"CHANGED: added {sorted(added)}"
    )


def _post(request: httpx.Request) -> tuple[int, bytes]:
    with httpx.Client(timeout=60) as http:
        response = http.send(request)
    return response.status_code, response.content


def _post_expecting_continue(request: httpx.Request) -> tuple[int, bytes]:
    """POST over a socket with `Expect: 100-continue`: the body goes only after a 100."""
    headers = dict(request.headers) | {"expect": "100-continue", "connection": "close"}
    head = f"POST {request.url.raw_path.decode()} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    with socket.create_connection((request.url.host, request.url.port or 80), timeout=60) as sock:
        sock.sendall(head.encode() + b"\r\n")
        reader = sock.makefile("rb")
        status, length = _response_head(reader)
        if status == 100:
            sock.sendall(request.content)
            status, length = _response_head(reader)
        return status, reader.read(length)


def _response_head(reader: Any) -> tuple[int, int]:
    """The status and Content-Length of the next response head."""
    status = int(reader.readline().split()[1])
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, length


def _finish(url: str, job: str) -> str:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        body = httpx.get(f"{url}/jobs/{job}", timeout=30).json()
        if body["status"] in ("done", "failed"):
            return str(body["status"] if body["status"] == "done" else body["error"]["code"])
        time.sleep(0.2)
    return "unfinished"


def _failed(probe: Probe) -> str:
    return f"; failures: {dict(probe.failures)}" if probe.failures else "; no failures"


def ask_load(url: str, questions: list[str], seconds: float, pid: int) -> Rows:
    """16 clients asking for `seconds`; the server's resident memory after the first
    tenth (warmed up) and at the end: what grows under steady load is a leak."""
    probes = [
        Probe(url, lambda http: http.post("/ask", json={"question": random.choice(questions)}))
        for _ in range(ASK_CLIENTS)
    ]
    began = time.perf_counter()
    start = _rss_mb(pid)
    threads = [probe.run() for probe in probes]
    time.sleep(seconds / 10)
    warm = _rss_mb(pid)
    time.sleep(seconds - seconds / 10)
    end = _rss_mb(pid)
    for probe in probes:
        probe.stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    latencies = [ms for probe in probes for ms in probe.latencies]
    failures = sum((probe.failures for probe in probes), Counter[str]())
    return [
        (
            f"/ask, {ASK_CLIENTS} clients for {seconds:.0f} s",
            f"{len(latencies) / elapsed:.1f} queries/s; {_figures(latencies)}; "
            f"failures: {dict(failures) or 0}",
        ),
        (
            "server RSS under that load",
            f"{start:.0f} MB before, {warm:.0f} MB after {seconds / 10:.0f} s, {end:.0f} MB "
            f"at the end: {end - warm:+.0f} MB over the last {seconds - seconds / 10:.0f} s",
        ),
    ]


def schemathesis(url: str, examples: int) -> Rows:
    """Every schemathesis check on every operation, as the CI test runs it but longer."""
    with tempfile.TemporaryDirectory() as workdir:
        began = time.perf_counter()
        run = subprocess.run(
            schemathesis_command(url, examples, seed=1),
            capture_output=True,
            text=True,
            cwd=workdir,
        )
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    summary = next((line for line in reversed(lines) if "passed" in line or "failed" in line), "")
    return [
        (
            f"schemathesis -c all, {examples} examples, seed 1",
            f"exit {run.returncode} in {time.perf_counter() - began:.0f} s: {summary.strip('= ')}",
        )
    ]


def kills(settings: Settings, trials: int) -> Rows:
    """kill -9 while an upload is under way; restart; the document is whole or absent."""
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    proc, url, _ = start_server(settings)
    try:
        for trial in range(trials):
            name = f"kill-{trial}.docx"
            paragraphs = [f"第{trial}次断电试验第{k}条：算力调度保障要求。" for k in range(120)]
            data = docx_bytes(paragraphs, heading=f"第{trial}次断电试验")
            index = load_index(
                settings.index_dir, settings.embedding_model, settings.embedding_backend
            )
            before = set(index.documents)
            sender = threading.Thread(target=_quietly_upload, args=(url, name, data))
            sender.start()
            time.sleep(random.uniform(0.05, 8.0))  # before, during or after the commit
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            sender.join()
            proc, url, _ = start_server(settings)
            outcome, problem = _after_kill(settings, url, name, before)
            outcomes[outcome] += 1
            if problem:
                problems.append(f"trial {trial}: {problem}")
    finally:
        proc.kill()
        proc.wait()
    return [
        (
            f"kill -9 during uploads, {trials} trials",
            ", ".join(f"{n} {o}" for o, n in outcomes.items()) + f"; inconsistent: {len(problems)}",
        )
    ] + [("  problem", p) for p in problems]


def _quietly_upload(url: str, name: str, data: bytes) -> None:
    try:
        httpx.post(f"{url}/documents", files={"file": (name, data)}, timeout=120)
    except httpx.HTTPError:
        pass  # the server was killed under it


def _after_kill(settings: Settings, url: str, name: str, before: set[str]) -> tuple[str, str]:
    """("whole" or "absent", what is wrong if anything) once the server has restarted."""
    served = set(_documents(url))
    index = load_index(settings.index_dir, settings.embedding_model, settings.embedding_backend)
    leftovers = [p.name for p in settings.corpus_dir.iterdir() if p.name.startswith(".upload-")]
    leftovers += [
        p.name
        for p in settings.index_dir.iterdir()
        if p.name.startswith(("v-", ".tmp-")) and p.name != current_version(settings.index_dir)
    ]
    if leftovers:
        return "leftovers", f"not removed at startup: {leftovers}"
    if len(index.chunks) != len(index.vectors) or set(index.manifest.corpus) != set(
        index.documents
    ):
        return "inconsistent", "index files disagree"
    if served == before | {name}:
        chunks = [c for c in index.chunks if c.source == name]
        text = index.documents[name].text
        if not chunks or any(text[c.start : c.end] != c.text for c in chunks):
            return "partial", f"{name} served with broken chunks"
        return "whole", ""
    if served == before:
        return "absent", ""
    return "inconsistent", f"served {sorted(served ^ before)}"


def main() -> None:
    """Run every scenario and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ask-seconds", type=float, default=600)
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="zhice-soak-"))
    shutil.copytree(CORPUS, workdir / "corpus")
    shutil.copytree(ROOT / "index", workdir / "index", symlinks=True)
    settings = Settings(corpus_dir=workdir / "corpus", index_dir=workdir / "index")
    questions = [q.question for q in read_questions(QUESTIONS)]
    rows: Rows = []
    proc, url, startup = start_server(settings)
    try:
        rows.append(("startup to ready", f"{startup:.1f} s"))
        rows += bomb(url, proc.pid)
        rows += largest(url, proc.pid, settings)
        rows += flood(url, questions, expect_continue=True)
        rows += flood(url, questions, expect_continue=False)
        rows += ask_load(url, questions, args.ask_seconds, proc.pid)
        rows += schemathesis(url, args.examples)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    try:
        rows += kills(settings, args.kills)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main()
