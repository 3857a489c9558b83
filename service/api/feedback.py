"""The feedback log: one JSON line per 👍/👎, appended safely from many threads."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from service.errors import FeedbackLogError


@dataclass(frozen=True)
class Feedback:
    """What a user thought of one answer."""

    question: str
    answer: str
    rating: str
    comment: str | None = None
    request_id: str | None = None


class FeedbackLog:
    """Appends one JSON object per line to `path`; thread safe, creates the directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, feedback: Feedback, now: datetime | None = None) -> dict[str, object]:
        """Write one line and return the record written."""
        moment = now or datetime.now(UTC)
        record: dict[str, object] = {"time": moment.isoformat(timespec="seconds")}
        record.update(asdict(feedback))
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        # The lock keeps this process's writers from interleaving; O_APPEND plus a single
        # write per line keeps other processes (several uvicorn workers) from doing so.
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    _write_all(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise FeedbackLogError(f"cannot record feedback: {exc.strerror}") from exc
        return record


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
