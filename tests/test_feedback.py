"""POST /feedback: validation, the JSON-lines log, and concurrent writers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.answer.qa import QA
from service.api.app import create_app
from service.api.feedback import Feedback, FeedbackLog
from service.api.routes.feedback import feedback_path
from service.config import Settings
from service.errors import FeedbackLogError

GOOD = {
    "question": "国务院哪份文件提出探索用大模型提升线上智能客服的意图识别？",
    "answer": "《关于进一步优化政务服务…》：探索应用自然语言大模型…[1]",
    "rating": "down",
}


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "feedback.jsonl"


@pytest.fixture
def client(fake_qa_settings: Settings, fake_qa: QA, log_path: Path) -> Iterator[TestClient]:
    settings = fake_qa_settings.model_copy(update={"feedback_log": log_path})
    with TestClient(create_app(settings, qa=fake_qa)) as c:
        yield c


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_feedback_appends_one_json_line(client: TestClient, log_path: Path) -> None:
    body = {**GOOD, "comment": "  没有回答到点子上  ", "request_id": "ab12cd34"}
    response = client.post("/feedback", json=body)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "recorded"
    client.post("/feedback", json={**GOOD, "rating": "up"})
    first, second = _lines(log_path)
    assert first["question"] == GOOD["question"] and first["answer"] == GOOD["answer"]
    assert first["rating"] == "down" and first["comment"] == "没有回答到点子上"
    assert first["request_id"] == "ab12cd34"
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert second["rating"] == "up" and second["comment"] is None
    # Chinese is written as Chinese, not \u escapes, so the log reads as it is.
    assert "国务院" in log_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"rating": "meh"}, 422, "validation_error"),
        ({"rating": None}, 422, "validation_error"),
        ({"question": "   "}, 422, "validation_error"),
        ({"question": "问" * 2001}, 422, "validation_error"),
        ({"answer": ""}, 422, "validation_error"),
        ({"answer": "答" * 8001}, 422, "validation_error"),
        ({"comment": "评" * 1001}, 422, "validation_error"),
        ({"request_id": "bad id\nforged"}, 422, "validation_error"),
        ({"request_id": 123}, 422, "validation_error"),
        ({"stars": 5}, 422, "validation_error"),
    ],
)
def test_bad_feedback_is_rejected_and_not_logged(
    client: TestClient, log_path: Path, change: dict[str, Any], status: int, code: str
) -> None:
    body = {**GOOD, **change}
    response = client.post("/feedback", json={k: v for k, v in body.items() if v is not None})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert not log_path.exists()


def test_missing_fields_and_bad_json(client: TestClient, log_path: Path) -> None:
    response = client.post("/feedback", json={"rating": "up"})
    assert response.status_code == 422
    assert "question" in response.json()["error"]["message"]
    response = client.post(
        "/feedback", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert client.get("/feedback").status_code == 405
    assert not log_path.exists()


def test_unwritable_log_is_a_503_in_the_error_shape(
    fake_qa_settings: Settings, fake_qa: QA, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = fake_qa_settings.model_copy(update={"feedback_log": blocker / "feedback.jsonl"})
    with TestClient(create_app(settings, qa=fake_qa)) as client:
        response = client.post("/feedback", json=GOOD)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "feedback_unavailable"


def test_concurrent_writers_never_interleave(log_path: Path) -> None:
    log = FeedbackLog(log_path)
    # Long answers make a torn write likely if appends were not serialised.
    answer = "长" * 6000
    threads, per_thread = 8, 25

    def write(n: int) -> None:
        for i in range(per_thread):
            log.append(Feedback(question=f"问题{n}-{i}", answer=answer, rating="up"))

    workers = [threading.Thread(target=write, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    records = _lines(log_path)
    assert len(records) == threads * per_thread
    assert {r["question"] for r in records} == {
        f"问题{n}-{i}" for n in range(threads) for i in range(per_thread)
    }
    assert all(r["answer"] == answer for r in records)


def test_log_record_is_stable(log_path: Path) -> None:
    moment = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    record = FeedbackLog(log_path).append(
        Feedback(question="问", answer="答", rating="up", comment="好", request_id="r1"), moment
    )
    assert record == {
        "time": "2026-11-23T08:30:00+00:00",
        "question": "问",
        "answer": "答",
        "rating": "up",
        "comment": "好",
        "request_id": "r1",
    }
    assert _lines(log_path) == [record]


def test_log_error_carries_its_status(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(FeedbackLogError) as raised:
        FeedbackLog(tmp_path / "dir").append(Feedback(question="问", answer="答", rating="up"))
    assert raised.value.status == 503


def test_default_log_sits_beside_the_index(tmp_path: Path) -> None:
    settings = Settings(index_dir=tmp_path / "data" / "index")
    assert feedback_path(settings) == tmp_path / "data" / "feedback.jsonl"
    explicit = tmp_path / "fb.jsonl"
    assert feedback_path(settings.model_copy(update={"feedback_log": explicit})) == explicit
