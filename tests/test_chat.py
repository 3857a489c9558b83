"""The OpenAI-compatible chat API in-process (fake embedder): shapes, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.answer.qa import QA
from service.api.app import create_app
from service.config import Settings

QUESTION = "国务院 政务服务 智能客服 意图识别"


@pytest.fixture
def client(fake_qa_settings: Settings, fake_qa: QA) -> Iterator[TestClient]:
    with TestClient(create_app(fake_qa_settings, qa=fake_qa)) as c:
        yield c


def _chat(client: TestClient, **fields: Any) -> Any:
    body = {"model": "zhice", "messages": [{"role": "user", "content": QUESTION}]} | fields
    return client.post("/v1/chat/completions", json=body)


def _events(response: Any) -> list[Any]:
    """The SSE `data:` payloads, JSON-decoded except the final `[DONE]`."""
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in response.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines), lines
    data = [line.removeprefix("data: ") for line in lines]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def _assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def test_completion_shape_and_citations(client: TestClient) -> None:
    response = _chat(client, temperature=0.2, max_tokens=4000, user="u-1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "zhice"
    (choice,) = body["choices"]
    assert choice["index"] == 0 and choice["finish_reason"] == "stop"
    assert choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    assert body["citations"] and not body["zhice"]["refused"]
    for citation in body["citations"]:
        assert f"[{citation['id']}]" in content
        doc = client.get(f"/documents/{citation['source']}").json()
        assert doc["text"][citation["start"] : citation["end"]] == citation["quote"]
    usage = body["usage"]
    assert usage["prompt_tokens"] == len(QUESTION.replace(" ", ""))  # one per character
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert set(body["zhice"]) >= {"refused", "intent", "query", "evidence", "timings_ms"}
    assert body["zhice"]["composer"] == "extractive" and body["zhice"]["llm_fallback"] is None


def test_any_model_name_is_answered_and_echoed(client: TestClient) -> None:
    body = _chat(client, model="gpt-4o-mini").json()
    assert body["model"] == "gpt-4o-mini"
    assert body["citations"]


def test_models_list_and_retrieve(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["zhice"]
    assert client.get("/v1/models/zhice").json()["object"] == "model"
    _assert_error(client.get("/v1/models/gpt-4"), 404, "not_found")


def test_stream_matches_the_plain_answer(client: TestClient) -> None:
    plain = _chat(client).json()
    events = _events(_chat(client, stream=True))
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert len({e["id"] for e in events}) == 1
    first, *middle, last = events
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert first["choices"][0]["finish_reason"] is None
    deltas = [e["choices"][0]["delta"]["content"] for e in middle]
    assert len(deltas) > 1  # streamed in pieces, not in one go
    assert "".join(deltas) == plain["choices"][0]["message"]["content"]
    assert all(e["choices"][0]["finish_reason"] is None for e in middle)
    assert last["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert last["citations"] == plain["citations"]
    assert last["zhice"]["query"] == plain["zhice"]["query"]
    assert all("citations" not in e and "usage" not in e for e in [first, *middle])


def test_stream_usage_chunk_when_asked(client: TestClient) -> None:
    events = _events(_chat(client, stream=True, stream_options={"include_usage": True}))
    *chunks, final = events
    assert all(e["usage"] is None for e in chunks)
    assert final["choices"] == []
    assert final["usage"]["total_tokens"] > 0


def test_list_of_parts_content_and_system_message(client: TestClient) -> None:
    messages = [
        {"role": "system", "content": "你是政务服务助手。"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "国务院 政务服务"},
                {"type": "text", "text": "智能客服 意图识别"},
            ],
        },
    ]
    body = _chat(client, messages=messages).json()
    assert body["citations"]
    assert "智能客服" in body["zhice"]["query"]


def test_earlier_turns_resolve_the_follow_up(client: TestClient) -> None:
    messages = [
        {"role": "user", "content": "哪份文件提出建设超大规模智算中心？"},
        {
            "role": "assistant",
            "content": "《关于推动未来产业创新发展的实施意见》提出建设超大规模智算中心。[1]",
        },
        {"role": "user", "content": "那它是哪个部门发布的？"},
    ]
    body = _chat(client, messages=messages).json()
    assert body["zhice"]["query"] == "《关于推动未来产业创新发展的实施意见》是哪个部门发布的？"


@pytest.mark.parametrize(
    "fields",
    [
        {"top_p": 0.9, "seed": 7, "presence_penalty": 0.5, "frequency_penalty": -0.5},
        {"n": 1, "logprobs": False, "stream": False, "store": False, "metadata": {"k": "v"}},
        {"stop": None, "max_completion_tokens": 500, "parallel_tool_calls": False},
        {"response_format": {"type": "text"}, "tool_choice": "none", "tools": []},
        {"stream_options": None, "service_tier": "auto", "safety_identifier": "x"},
    ],
)
def test_standard_fields_are_tolerated(client: TestClient, fields: dict[str, Any]) -> None:
    assert _chat(client, **fields).status_code == 200


def test_stop_cuts_the_answer(client: TestClient) -> None:
    full = _chat(client).json()["choices"][0]["message"]["content"]
    stop = full[10:12]
    body = _chat(client, stop=[stop]).json()
    content = body["choices"][0]["message"]["content"]
    assert content == full[: full.find(stop)]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_cuts_with_finish_reason_length(client: TestClient) -> None:
    body = _chat(client, max_tokens=5).json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5
    assert body["citations"] == []  # no marker survives five tokens
    events = _events(_chat(client, max_tokens=5, stream=True))
    assert events[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"messages": [{"role": "system", "content": "只有系统消息"}]}, 400, "invalid_request"),
        ({"messages": [{"role": "user", "content": "   "}]}, 400, "invalid_request"),
        ({"messages": [{"role": "user", "content": []}]}, 400, "invalid_request"),
        ({"messages": [{"role": "user", "content": None}]}, 400, "invalid_request"),
        ({"messages": [{"role": "user", "content": "问" * 2001}]}, 400, "invalid_request"),
        ({"n": 2}, 400, "unsupported"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            400,
            "unsupported",
        ),
        ({"messages": []}, 422, "validation_error"),
        ({"messages": [{"role": "robot", "content": "x"}]}, 422, "validation_error"),
        ({"messages": [{"role": "user", "content": 5}]}, 422, "validation_error"),
        (
            {"messages": [{"role": "user", "content": "x", "mood": "happy"}]},
            422,
            "validation_error",
        ),
        ({"temperature": 3}, 422, "validation_error"),
        ({"top_k": 3}, 422, "validation_error"),
        ({"model": ""}, 422, "validation_error"),
        ({"stream": "yes"}, 422, "validation_error"),
    ],
)
def test_bad_requests_use_the_error_shape(
    client: TestClient, fields: dict[str, Any], status: int, code: str
) -> None:
    _assert_error(_chat(client, **fields), status, code)
    # Streaming requests fail the same way, before any event is sent.
    _assert_error(_chat(client, **({"stream": True} | fields)), status, code)


def test_missing_model_and_messages(client: TestClient) -> None:
    _assert_error(client.post("/v1/chat/completions", json={}), 422, "validation_error")
    response = client.post(
        "/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"}
    )
    _assert_error(response, 400, "invalid_json")
