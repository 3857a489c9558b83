"""Pydantic models of the OpenAI-compatible chat API (`/v1/chat/completions`, `/v1/models`).

Requests accept every standard Chat Completions field so that existing clients work
unchanged; the ones an extractive answer has no use for (sampling, penalties, tools…)
are accepted and ignored. Fields that are not OpenAI's are rejected (422), as elsewhere.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

from service.api.chat_text import FinishReason
from service.api.schemas.core import CitationPublic, Integer, Positive, whole_number

MAX_MESSAGES = 100
MAX_MESSAGE_CHARS = 32_000

MessageText = Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ContentPart(_Strict):
    """One part of a message's list-form content; only `text` parts are read."""

    type: str
    text: MessageText | None = None
    image_url: JsonValue = None
    input_audio: JsonValue = None
    file: JsonValue = None
    refusal: str | None = None


class ChatMessage(_Strict):
    """A message of the conversation; the last user message is the question."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: MessageText | list[ContentPart] | None = None
    name: str | None = None
    refusal: str | None = None
    tool_calls: list[JsonValue] | None = None
    tool_call_id: str | None = None
    function_call: JsonValue = None
    audio: JsonValue = None


class StreamOptions(_Strict):
    """`include_usage` adds a last chunk with token counts, as OpenAI does."""

    include_usage: bool | None = None
    include_obfuscation: bool | None = None


class ChatRequest(_Strict):
    """A Chat Completions request (OpenAI's fields; see the README for what is used)."""

    model: str = Field(min_length=1, max_length=200, description="Any name; see GET /v1/models.")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_MESSAGES,
        # At least one user message, the one to answer (checked: 400 `invalid_request`).
        json_schema_extra={
            "contains": {"properties": {"role": {"const": "user"}}, "required": ["role"]}
        },
    )
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: Positive | None = Field(None, description="Cuts the answer (estimated tokens).")
    max_completion_tokens: Positive | None = None
    stop: str | list[str] | None = Field(None, description="Cut the answer before these.")
    n: Positive | None = Field(None, description="Only 1 is supported.")
    # Accepted and ignored: the extractive answer is deterministic.
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    seed: Integer | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20), BeforeValidator(whole_number)] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    modalities: list[str] | None = None
    response_format: JsonValue = None
    tools: list[JsonValue] | None = None
    tool_choice: JsonValue = None
    parallel_tool_calls: bool | None = None
    functions: list[JsonValue] | None = None
    function_call: JsonValue = None
    prediction: JsonValue = None
    audio: JsonValue = None
    web_search_options: JsonValue = None


class AssistantMessage(BaseModel):
    """The answer, with `[n]` markers referring to `citations[n-1]`."""

    role: Literal["assistant"]
    content: str
    refusal: None = None


class Choice(BaseModel):
    """The one choice of a completion."""

    index: int
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class Usage(BaseModel):
    """Token counts, estimated: one per Chinese character, Latin word, number or symbol."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ZhiceInfo(BaseModel):
    """zhice's extension: how the answer came about."""

    refused: bool = Field(description="True when the knowledge base does not answer it.")
    intent: str
    query: str = Field(description="The question as retrieved (after multi-turn rewriting).")
    evidence: float = Field(description="Evidence strength 0…1; refused below the threshold.")
    timings_ms: dict[str, float]
    composer: str = Field(description="extractive | llm | faq | reply (see /ask).")
    llm_fallback: str | None = Field(
        None, description="Why the configured LLM's answer was not used, if it was not."
    )


class ChatCompletion(BaseModel):
    """A Chat Completions response plus the `citations` and `zhice` extension fields."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[CitationPublic]
    zhice: ZhiceInfo


class Delta(BaseModel):
    """What a stream chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    """The one choice of a stream chunk."""

    index: int
    delta: Delta
    finish_reason: FinishReason | None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One Server-Sent Event; the final chunk carries the extension fields.

    Serialised with `exclude_unset`, so only the fields a chunk was built with appear.
    """

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    citations: list[CitationPublic] | None = None
    zhice: ZhiceInfo | None = None


class ModelCard(BaseModel):
    """A model id clients can name."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    """The models `/v1/chat/completions` serves."""

    object: Literal["list"]
    data: list[ModelCard]
