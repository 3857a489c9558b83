"""The official `openai` client against a real server (real model, bundled corpus)."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

pytestmark = pytest.mark.e2e

QUESTION = "国务院哪份文件提出探索用大模型提升线上智能客服的意图识别？"
TITLE = "《关于进一步优化政务服务提升行政效能推动“高效办成一件事”的指导意见》"


@pytest.fixture(scope="module")
def client(live_server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live_server}/v1", api_key="x", max_retries=0)


def _ask(client: openai.OpenAI, messages: list[Any]) -> Any:
    return client.chat.completions.create(model="zhice", messages=messages)


def _extension(obj: Any, name: str) -> Any:
    extra = obj.model_extra or {}
    assert name in extra, f"no {name!r} extension field in {obj}"
    return extra[name]


def _assert_quotes_are_document_text(live_server: str, citations: list[dict[str, Any]]) -> None:
    assert citations
    for citation in citations:
        doc = httpx.get(f"{live_server}/documents/{citation['source']}", timeout=30).json()
        assert doc["text"][citation["start"] : citation["end"]] == citation["quote"]


def test_models_are_listed(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["zhice"]


def test_cited_answer(client: openai.OpenAI, live_server: str) -> None:
    completion = _ask(client, [{"role": "user", "content": QUESTION}])
    content = completion.choices[0].message.content
    assert TITLE in content and "2024年1月" in content
    assert completion.choices[0].finish_reason == "stop"
    citations = _extension(completion, "citations")
    _assert_quotes_are_document_text(live_server, citations)
    assert all(f"[{c['id']}]" in content for c in citations)
    assert _extension(completion, "zhice")["refused"] is False
    assert completion.usage is not None and completion.usage.completion_tokens > 0


def test_streamed_answer_matches(client: openai.OpenAI, live_server: str) -> None:
    plain = _ask(client, [{"role": "user", "content": QUESTION}])
    stream = client.chat.completions.create(
        model="zhice",
        messages=[{"role": "user", "content": QUESTION}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage_chunk = chunks.pop()
    assert usage_chunk.choices == [] and usage_chunk.usage is not None
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content or "" for c in chunks]
    assert sum(1 for d in deltas if d) > 1  # several pieces, not one
    assert "".join(deltas) == plain.choices[0].message.content
    final = chunks[-1]
    assert final.choices[0].finish_reason == "stop"
    citations = _extension(final, "citations")
    assert citations == _extension(plain, "citations")
    _assert_quotes_are_document_text(live_server, citations)
    assert _extension(final, "zhice")["refused"] is False


def test_follow_up_after_a_real_first_answer(client: openai.OpenAI) -> None:
    first = _ask(client, [{"role": "user", "content": QUESTION}])
    messages = [
        {"role": "system", "content": "你是政务服务助手。"},
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "那它是哪个部门发布的？"},
    ]
    follow_up = _ask(client, messages)
    assert "国务院" in follow_up.choices[0].message.content
    assert _extension(follow_up, "zhice")["query"] == f"{TITLE}是哪个部门发布的？"


def test_errors_reach_the_client_in_its_shape(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _ask(client, [{"role": "system", "content": "没有用户消息"}])
    assert caught.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="zhice", messages=[{"role": "user", "content": QUESTION}], n=2
        )
    assert caught.value.code == "unsupported"


def test_ask_shows_the_rewritten_follow_up(live_server: str) -> None:
    body = httpx.post(
        f"{live_server}/ask",
        json={
            "question": "北京呢？",
            "history": [
                {"role": "user", "content": "湖北计划到2025年人工智能产业规模超过多少？"},
                {"role": "assistant", "content": "超过1500亿元。"},
            ],
            "debug": True,
        },
        timeout=60,
    ).json()
    assert body["debug"]["query"] == "北京计划到2025年人工智能产业规模超过多少？"
    assert "3000亿元" in body["answer"]
