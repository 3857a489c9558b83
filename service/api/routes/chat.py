"""OpenAI-compatible chat: POST /v1/chat/completions (plain or streamed) and GET /v1/models."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from service.answer.qa import Result
from service.answer.rewrite import Turn
from service.api.chat_text import Cut, FinishReason, cut, estimate_tokens, markers, pieces
from service.api.deps import StateDep
from service.api.schemas.chat import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    Usage,
    ZhiceInfo,
)
from service.api.schemas.core import COLLECTION_PATTERN, MAX_QUESTION_CHARS, CitationPublic
from service.api.schemas.errors import documented
from service.api.views import public_citations
from service.errors import InvalidRequestError, NotFoundError, UnsupportedError

router = APIRouter(prefix="/v1", tags=["chat"])

# The one model zhice serves. Requests may name any model (bot platforms often fix the
# name, e.g. "gpt-4o-mini"); the answer comes from the same pipeline either way.
MODEL_ID = "zhice"
_STARTED = int(time.time())
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Conversation:
    """The question (last user message) and the turns before it."""

    question: str
    history: list[Turn]


@router.get("/models", response_model=ModelList)
def list_models() -> ModelList:
    """The model ids to use with /v1/chat/completions (any other name is answered alike)."""
    return ModelList(object="list", data=[_card()])


@router.get("/models/{model_id}", response_model=ModelCard, responses=documented(404, 422))
def get_model(model_id: str) -> ModelCard:
    """One model by id."""
    if model_id != MODEL_ID:
        raise NotFoundError(f"no model {model_id!r}; this server serves {MODEL_ID!r}")
    return _card()


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "stream: true"},
        **documented(400, 404, 413, 422, 503),
    },
)
def chat_completions(
    body: ChatRequest,
    state: StateDep,
    collection: Annotated[
        str | None,
        Header(
            alias="X-Zhice-Collection",
            max_length=40,
            json_schema_extra={"pattern": COLLECTION_PATTERN},
        ),
    ] = None,
) -> ChatCompletion | StreamingResponse:
    """Answer the last user message with citations; earlier turns resolve follow-ups.

    The `X-Zhice-Collection` header chooses the knowledge base (default: `default`).
    """
    qa = state.pipeline(collection)
    if body.n not in (None, 1):
        raise UnsupportedError("n: only one choice (n=1) is supported")
    talk = conversation(body.messages)
    result = qa.ask(talk.question, state.settings.top_k, None, talk.history)
    state.metrics.answers.labels("refused" if result.refused else "answered").inc()
    stop = [body.stop] if isinstance(body.stop, str) else body.stop or []
    answer = cut(result.answer, stop, body.max_completion_tokens or body.max_tokens)
    completion = _completion(body, result, answer, public_citations(qa, result.citations))
    if body.stream:
        usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(
            _events(completion, usage), media_type="text/event-stream", headers=_SSE_HEADERS
        )
    return completion


def conversation(messages: Sequence[ChatMessage]) -> Conversation:
    """Split messages into the question and its history, or raise a 4xx error."""
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        raise InvalidRequestError("messages: there is no user message to answer")
    question = _text(messages[last], strict=True).strip()
    if not question:
        raise InvalidRequestError("messages: the last user message has no text")
    if len(question) > MAX_QUESTION_CHARS:
        raise InvalidRequestError(
            f"messages: the question is over {MAX_QUESTION_CHARS:,} characters"
        )
    history = [
        Turn(m.role, _text(m, strict=False))
        for m in messages[:last]
        if m.role in ("user", "assistant")
    ]
    return Conversation(question, history)


def _text(message: ChatMessage, *, strict: bool) -> str:
    """A message's text; `strict` rejects parts that are not text (the question's)."""
    content = message.content
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for part in content:
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif strict:
            raise UnsupportedError(f"messages: content parts of type {part.type!r} are not read")
    return "\n".join(texts)


def _completion(
    body: ChatRequest, result: Result, answer: Cut, citations: list[CitationPublic]
) -> ChatCompletion:
    prompt = sum(estimate_tokens(_text(m, strict=False)) for m in body.messages)
    completion = estimate_tokens(answer.text)
    if answer.text != result.answer:  # a cut answer keeps the citations it still marks
        kept = markers(answer.text)
        citations = [c for c in citations if c.id in kept]
    return ChatCompletion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        object="chat.completion",
        created=int(time.time()),
        model=body.model,
        choices=[
            Choice(
                index=0,
                message=AssistantMessage(role="assistant", content=answer.text),
                finish_reason=answer.finish_reason,
            )
        ],
        usage=Usage(
            prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
        ),
        citations=citations,
        zhice=ZhiceInfo(
            refused=result.refused,
            intent=result.intent,
            query=result.query,
            evidence=result.evidence,
            timings_ms=result.timings_ms,
            composer=result.composer,
            llm_fallback=result.llm_fallback,
        ),
    )


def _events(completion: ChatCompletion, include_usage: bool) -> Iterator[str]:
    """Server-Sent Events in OpenAI's chunk format, ending with `data: [DONE]`."""
    usage = {"usage": None} if include_usage else {}

    def chunk(delta: Delta, finish: FinishReason | None = None, **extra: object) -> str:
        event = ChatCompletionChunk.model_validate(
            {
                "id": completion.id,
                "object": "chat.completion.chunk",
                "created": completion.created,
                "model": completion.model,
                "choices": [ChunkChoice(index=0, delta=delta, finish_reason=finish)],
                **usage,
                **extra,
            }
        )
        return f"data: {event.model_dump_json(exclude_unset=True)}\n\n"

    yield chunk(Delta(role="assistant", content=""))
    for piece in pieces(completion.choices[0].message.content):
        yield chunk(Delta(content=piece))
    finish = completion.choices[0].finish_reason
    yield chunk(Delta(), finish, citations=completion.citations, zhice=completion.zhice)
    if include_usage:
        final = ChatCompletionChunk(
            id=completion.id,
            object="chat.completion.chunk",
            created=completion.created,
            model=completion.model,
            choices=[],
            usage=completion.usage,
        )
        yield f"data: {final.model_dump_json(exclude_unset=True)}\n\n"
    yield "data: [DONE]\n\n"


def _card() -> ModelCard:
    return ModelCard(id=MODEL_ID, object="model", created=_STARTED, owned_by="zhice")
