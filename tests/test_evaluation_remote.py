"""`zhice eval --url`: HTTP responses become the same `Result`s the in-process run judges."""

from __future__ import annotations

import json

import httpx
import pytest

from service.errors import RemoteError
from service.eval.client import RemoteAsker
from service.eval.evaluation import Question, judge

QUESTION = Question(
    "q1", "哪份文件？", "table", ("a.txt",), ("甲乙",), "", ("丙",), (("user", "上一问"),)
)
RESPONSE = {
    "answer": "丙在此[1]",
    "refused": False,
    "citations": [
        {"id": 1, "source": "a.txt", "title": "A", "start": 3, "end": 9, "quote": "含甲乙的句子"}
    ],
    "passages": [
        {
            "chunk_id": "a.txt#0:x",
            "source": "a.txt",
            "title": "A",
            "start": 0,
            "end": 3,
            "text": "无关的",
            "score": 0.9,
        },
        {
            "chunk_id": "a.txt#1:y",
            "source": "a.txt",
            "title": "A",
            "start": 3,
            "end": 9,
            "text": "含甲乙的句子",
            "score": 0.8,
        },
    ],
    "timings_ms": {"total": 12.5},
    "debug": {"query": "上一问 哪份文件？", "intent": "fact", "evidence": 0.42, "threshold": 0.31},
}


def test_remote_answers_are_judged_like_local_ones() -> None:
    sent: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/ask"
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=RESPONSE)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    asker = RemoteAsker("http://zhice.test/", client=client)
    result = asker(QUESTION)
    assert sent == [
        {
            "question": "哪份文件？",
            "top_k": 10,
            "history": [{"role": "user", "content": "上一问"}],
            "debug": True,
        }
    ]
    assert asker.threshold == 0.31
    assert (result.evidence, result.query, result.refused) == (0.42, "上一问 哪份文件？", False)
    outcome = judge(QUESTION, result, 0.01)
    assert (outcome.ranks, outcome.keywords_ok, outcome.citation_ok) == ([2], True, True)
    assert outcome.retrieved == ["a.txt#0:x", "a.txt#1:y"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [(503, {"error": {"code": "not_ready"}}, "503"), (200, {"answer": "x"}, "unexpected")],
)
def test_remote_errors_are_reported(status: int, body: dict[str, object], message: str) -> None:
    client = httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(status, json=body))
    )
    with pytest.raises(RemoteError, match=message):
        RemoteAsker("http://zhice.test", client=client)(QUESTION)


def test_passage_texts_come_from_the_documents_endpoints() -> None:
    documents = {
        "/documents": {"documents": [{"source": "a b.txt"}]},
        "/documents/a%20b.txt": {
            "text": "甲乙丙丁",
            "chunks": [{"start": 0, "end": 2}, {"start": 1, "end": 4}],
        },
    }

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path.decode()
        return (
            httpx.Response(200, json=documents[path]) if path in documents else httpx.Response(404)
        )

    client = httpx.Client(transport=httpx.MockTransport(handler))
    assert RemoteAsker("http://zhice.test", client=client).passage_texts() == ["甲乙", "乙丙丁"]
    failing = httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    assert RemoteAsker("http://zhice.test", client=failing).passage_texts() is None
