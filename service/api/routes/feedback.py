"""POST /feedback: the chat page's 👍/👎 on an answer, appended to a JSON-lines log."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import StateDep
from service.api.feedback import Feedback, FeedbackLog
from service.api.schemas.core import MAX_QUESTION_CHARS, Text
from service.api.schemas.errors import documented
from service.config import Settings

router = APIRouter(tags=["feedback"])

MAX_ANSWER_CHARS = MAX_QUESTION_CHARS * 4  # as long as a turn of `history` may be
MAX_COMMENT_CHARS = 1000
_created = threading.Lock()


class FeedbackRequest(BaseModel):
    """A rating of one answer, with the question it answered."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: Text
    answer: str = Field(min_length=1, max_length=MAX_ANSWER_CHARS)
    rating: Literal["up", "down"]
    comment: str | None = Field(None, max_length=MAX_COMMENT_CHARS)
    request_id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9._:+/=-]{1,128}$",
        description="The `X-Request-ID` of the rated answer, to find it in the logs.",
    )


class FeedbackRecorded(BaseModel):
    """The feedback was written to the log."""

    status: Literal["recorded"] = "recorded"
    time: str


def get_feedback_log(request: Request, state: StateDep) -> FeedbackLog:
    """The app's feedback log (one per app, so one lock guards its writers)."""
    with _created:
        log: FeedbackLog | None = getattr(request.app.state, "zhice_feedback", None)
        if log is None:
            log = FeedbackLog(feedback_path(state.settings))
            request.app.state.zhice_feedback = log
    return log


def feedback_path(settings: Settings) -> Path:
    """Where feedback goes: the setting, else `feedback.jsonl` beside the index directory."""
    return settings.feedback_log or settings.index_dir.parent / "feedback.jsonl"


FeedbackLogDep = Annotated[FeedbackLog, Depends(get_feedback_log)]


@router.post(
    "/feedback",
    response_model=FeedbackRecorded,
    status_code=201,
    responses=documented(400, 413, 422, 503),
)
def feedback(body: FeedbackRequest, log: FeedbackLogDep) -> FeedbackRecorded:
    """Record a 👍 (`up`) or 👎 (`down`) on an answer, with an optional comment."""
    comment = body.comment.strip() if body.comment else None
    record = log.append(
        Feedback(
            question=body.question,
            answer=body.answer,
            rating=body.rating,
            comment=comment or None,
            request_id=body.request_id,
        )
    )
    return FeedbackRecorded(time=str(record["time"]))
