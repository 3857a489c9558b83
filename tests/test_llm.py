"""The LLM composer against a small OpenAI-compatible server on loopback, well and badly behaved."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ingest.types import Chunk, Hit
from service.answer.llm import LLMComposer, check
from service.errors import LLMError
from tests.fake_llm import failure, reply, serving

PASSAGES = [
    "2024年1月 | 国务院 | 关于进一步优化政务服务提升行政效能推动“高效办成一件事”的指导意见 | "
    "探索应用自然语言大模型等技术,提升线上智能客服的意图识别和精准回答能力。 |",
    "北京市经济和信息化局于今年10月出台《人工智能算力券实施方案(2023-2025年)》。",
]
GOOD = (
    "国务院2024年1月的指导意见提出探索应用自然语言大模型等技术，提升线上智能客服的意图识别能力。[1]"
)
REPLIES = {
    "good": GOOD,
    "uncited": GOOD + "该政策还为每家企业提供500万元补贴。",
    "invented": GOOD + "北京市算力券每年发放5亿元。[2]",
    "bad-index": GOOD + "另外还有其他文件。[7]",
}


def _hits() -> list[Hit]:
    return [
        Hit(Chunk(f"doc#{i}:x", "doc.txt", "标题", 100 * i, 100 * i + len(t), t), 1.0)
        for i, t in enumerate(PASSAGES)
    ]


async def _completions(request: Request) -> Response:
    body = await request.json()
    model = body["model"]
    assert body["messages"][0]["role"] == "system"
    assert "[1]" in body["messages"][1]["content"]
    if model == "slow":
        await asyncio.sleep(3)
    if model in {"error", "garbage"}:
        return failure(model)
    if model == "no-choices":
        return JSONResponse({"choices": []})
    content = REPLIES.get(model, GOOD)
    return reply(content)


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with serving(_completions) as url:
        yield url


def _compose(url: str, model: str, timeout: float = 2.0) -> tuple[str, list[str]]:
    composer = LLMComposer(url, model, api_key="secret", timeout=timeout)
    try:
        answer = composer.compose("国务院哪份文件提出用大模型改进政务客服？", _hits(), PASSAGES)
    finally:
        composer.close()
    for citation in answer.citations:
        assert citation.quote in PASSAGES
    return answer.text, answer.dropped


def test_a_cited_answer_passes(llm_url: str) -> None:
    text, dropped = _compose(llm_url, "good")
    assert text == GOOD and dropped == []


@pytest.mark.parametrize("model", ["uncited", "invented", "bad-index"])
def test_unsupported_claims_never_reach_the_user(llm_url: str, model: str) -> None:
    text, dropped = _compose(llm_url, model)
    assert text == GOOD
    assert len(dropped) == 1
    assert not re.search(r"500万元|5亿元|其他文件", text)


@pytest.mark.parametrize("model", ["slow", "error", "garbage", "no-choices"])
def test_misbehaving_servers_raise_for_fallback(llm_url: str, model: str) -> None:
    with pytest.raises(LLMError):
        _compose(llm_url, model, timeout=0.5)


def test_nothing_supported_raises() -> None:
    with pytest.raises(LLMError):
        check("大模型产业规模将达到一万亿元。[1]", _hits(), PASSAGES)


def test_citations_are_renumbered_in_order_of_use() -> None:
    first = "北京市经济和信息化局出台了人工智能算力券实施方案。"
    second = "国务院提出提升线上智能客服的意图识别能力。"
    answer = check(f"{first}[2]{second}[1]", _hits(), PASSAGES)
    assert answer.text == f"{first}[1]{second}[2]"
    assert [c.quote for c in answer.citations] == [PASSAGES[1], PASSAGES[0]]
