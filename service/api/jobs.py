"""The write queue: document updates run on ingestion threads of their own, a few at a time.

Every upload, replacement or removal is a job. A request takes a place (an
`Admission`) before its body is read; there are `workers + waiting` places, and when
none is free the request is refused at once with 503 `busy` and `Retry-After`. The
place is held until the job has finished, so the memory and CPU that updates may take
are bounded, and request threads — the ones answering questions and probes — never
wait for the index lock or for embedding. Merges of an index's delta segment run on
background threads of their own (`Merges`), so no update waits for one.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from ingest.update import Action
from service.api.schemas.core import DocumentUpdate, JobPublic
from service.api.schemas.errors import ErrorDetail
from service.errors import BusyError, ZhiceError

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed"]
# Finished jobs remembered for GET /jobs/{id}; older ones are forgotten first.
KEEP_FINISHED = 1000
_MAX_RETRY_AFTER = 300
INGEST_NICE = 10


@dataclass(eq=False)
class Job:
    """One document update; `result` once done, `error` once failed."""

    action: Action
    source: str
    collection: str | None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: JobStatus = "queued"
    result: DocumentUpdate | None = None
    error: ZhiceError | None = None
    stop: threading.Event = field(default_factory=threading.Event)  # set: cancel

    def public(self) -> JobPublic:
        """The job as GET /jobs/{id} shows it."""
        error = self.error
        return JobPublic(
            id=self.id,
            status=self.status,
            action=self.action,
            source=self.source,
            collection=self.collection,
            result=self.result,
            error=ErrorDetail(code=error.code, message=error.message) if error else None,
        )


class Admission:
    """A place in the queue, held from before the body is read until the job ends."""

    def __init__(self, leave: Callable[[], None]) -> None:
        self._leave = leave
        self._lock = threading.Lock()
        self._held = True
        self.submitted = False

    def release(self) -> None:
        """Give the place back (once; later calls do nothing)."""
        with self._lock:
            held, self._held = self._held, False
        if held:
            self._leave()


def _yield_cpu() -> None:
    """Lower this ingestion or merge thread's CPU priority (nice 10), so questions come first.

    On Linux a thread is a task with its own nice value, inherited by the threads it
    starts — torch's workers for this thread's forward passes, faiss's for an HNSW
    build — so embedding an upload or merging takes the cores only when answering does
    not need them.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), INGEST_NICE)
    except (AttributeError, OSError):  # not Linux, or not permitted: run as is
        log.info("could not lower the %s thread's priority", threading.current_thread().name)


class IngestQueue:
    """Runs document updates on `workers` threads, with at most `waiting` more queued."""

    def __init__(self, workers: int, waiting: int, *, keep: int = KEEP_FINISHED) -> None:
        self.workers = workers
        self.capacity = workers + waiting
        self._executor = ThreadPoolExecutor(
            workers, thread_name_prefix="zhice-ingest", initializer=_yield_cpu
        )
        self._lock = threading.Lock()
        self._admitted = 0
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._keep = keep
        self._seconds: deque[float] = deque([1.0], maxlen=16)  # recent job durations

    def admit(self) -> Admission:
        """A place for one more update, or BusyError (never waits)."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise BusyError(
                    f"{self._admitted} document updates are running or waiting; retry later",
                    self._retry_after(),
                )
            self._admitted += 1
        return Admission(self._leave)

    def submit(
        self, admission: Admission, job: Job, work: Callable[[], DocumentUpdate]
    ) -> Future[DocumentUpdate]:
        """Queue `work` as `job`; the admission is released when it has finished."""
        admission.submitted = True
        with self._lock:
            self._jobs[job.id] = job
            self._forget_old()

        def run() -> DocumentUpdate:
            began = time.perf_counter()
            job.status = "running"
            try:
                job.result = work()
                job.status = "done"
                return job.result
            except ZhiceError as exc:
                job.error, job.status = exc, "failed"
                raise
            except Exception as exc:
                log.exception("document update %s failed", job.id)
                failure = ZhiceError("internal error; the update was logged")
                job.error, job.status = failure, "failed"
                raise failure from exc
            finally:
                with self._lock:  # read under the same lock by _retry_after
                    self._seconds.append(time.perf_counter() - began)
                admission.release()

        try:
            return self._executor.submit(run)
        except RuntimeError as exc:  # shutting down
            admission.release()
            with self._lock:
                retry = self._retry_after()
            raise BusyError("the service is shutting down", retry) from exc

    def get(self, job_id: str) -> Job | None:
        """A job by id, while it is remembered."""
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        """Drop queued jobs, ask running ones to stop, and end the threads once they have."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for job in self._jobs.values():
                job.stop.set()

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1

    def _retry_after(self) -> int:
        """Seconds until a place is likely free: the queue's length at recent job speed.

        Call with the lock held.
        """
        mean = sum(self._seconds) / len(self._seconds)
        return max(1, min(_MAX_RETRY_AFTER, math.ceil(mean * self._admitted / self.workers)))

    def _forget_old(self) -> None:
        finished = [i for i, j in self._jobs.items() if j.status in ("done", "failed")]
        for job_id in finished[: max(0, len(self._jobs) - self._keep)]:
            del self._jobs[job_id]


class Merges:
    """Background merges of indexes' delta segments: one at a time per index, at nice 10.

    `before_rebase` is passed to each merge (`ingest.merge.merge`): a hook for tests that
    hold a merge while updates land.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self.before_rebase: Callable[[], None] | None = None

    def start(self, key: str, work: Callable[[Callable[[], None] | None], None]) -> None:
        """Run `work(before_rebase)` on a new thread unless a merge of `key` runs already.

        A failure is logged; the next update that finds a merge due tries again.
        """
        with self._lock:
            if key in self._running:
                return
            self._running.add(key)

        def run() -> None:
            _yield_cpu()
            try:
                work(self.before_rebase)
            except Exception:
                log.exception("merging %s failed; the next update will try again", key)
            finally:
                with self._lock:
                    self._running.discard(key)

        threading.Thread(target=run, daemon=True, name="zhice-merge").start()
