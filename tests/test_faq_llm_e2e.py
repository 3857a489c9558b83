"""FAQ entries and the optional LLM composer, wired through Settings, over real HTTP.

One server runs with the real model and bundled corpus, an FAQ file in a temporary
directory and `ZHICE_LLM_*` pointing at a small OpenAI-compatible server on loopback
that misbehaves on cue: the question it is given says how.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from service.answer.qa import QA
from service.api.app import create_app
from service.config import Settings
from tests.conftest import running, wait_for
from tests.fake_llm import failure, reply, serving

pytestmark = pytest.mark.e2e

FAQ_FILE = Path(__file__).resolve().parents[1] / "eval" / "faq.jsonl"
KEFU = {
    "id": "kefu",
    "question": "国务院哪份文件提出用大模型改进政务线上客服？",
    "answer": "2024年1月国务院发布的《关于进一步优化政务服务提升行政效能推动“高效办成一件事”"
    "的指导意见》提出，探索应用自然语言大模型等技术，提升线上智能客服的意图识别和精准回答能力。",
    "paraphrases": ["国务院哪个文件要求用大模型提升政务智能客服？"],
}
# Paraphrases nobody listed in the entry.
UNLISTED = [
    "国务院的哪份文件提到借助大模型改善网上政务客服？",
    "哪份国务院文件提出用大模型优化线上客服",
]
INVENTED = ("该政策还为每家企业提供500万元补贴。", "北京市算力券每年发放5亿元。[2]")

# The fake LLM reads the question and misbehaves when it names one of these.
SLOW, FAILING, GARBAGE = "超大规模智算中心", "通义千问", "暂行办法"
calls: list[str] = []


async def _completions(request: Request) -> Response:
    body = await request.json()
    prompt = body["messages"][-1]["content"]
    question = prompt.rsplit("问题：", 1)[-1]
    calls.append(question)
    if SLOW in question:
        await asyncio.sleep(5)
    if FAILING in question:
        return failure("error")
    if GARBAGE in question:
        return failure("garbage")
    # A faithful first sentence of passage [1], then two claims no passage supports.
    first = re.search(r"\[1\] (.+?[。；;]|.+$)", prompt, re.MULTILINE)
    assert first is not None
    content = f"{first.group(1)}[1]" + "".join(INVENTED)
    return reply(content)


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    with serving(_completions) as url:
        yield url


@pytest.fixture(scope="module")
def faq_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("faq") / "faq.jsonl"
    shutil.copy(FAQ_FILE, path)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(KEFU, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def server(real_settings: Settings, faq_path: Path, llm_url: str) -> Iterator[str]:
    llm = {"faq_path": faq_path, "llm_base_url": llm_url, "llm_model": "fake", "llm_timeout": 1.0}
    settings = Settings(**(real_settings.model_dump() | llm))
    with running(create_app(settings)) as url:
        wait_for(url, "/readyz")
        yield url


def _ask(url: str, question: str, **extra: Any) -> dict[str, Any]:
    response = httpx.post(f"{url}/ask", json={"question": question, **extra}, timeout=60)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _quotes_are_document_text(url: str, answer: dict[str, Any]) -> None:
    assert answer["citations"]
    for citation in answer["citations"]:
        doc = httpx.get(f"{url}/documents/{citation['source']}", timeout=30).json()
        assert doc["text"][citation["start"] : citation["end"]] == citation["quote"]


@pytest.mark.parametrize("question", [KEFU["question"], *KEFU["paraphrases"], *UNLISTED])
def test_faq_entry_wins_for_its_question_and_paraphrases(server: str, question: str) -> None:
    before = len(calls)
    answer = _ask(server, question)
    assert (answer["intent"], answer["composer"]) == ("faq", "faq")
    assert answer["answer"] == f"{KEFU['answer']}[1]"
    [citation] = answer["citations"]
    assert (citation["source"], citation["quote"]) == ("faq:kefu", KEFU["answer"])
    assert answer["passages"] == [] and len(calls) == before  # no retrieval, no LLM


def test_the_reports_still_answer_it_when_asked_about_a_report(server: str) -> None:
    source = "000_b09d076724004418.txt"
    answer = _ask(server, KEFU["question"], filters={"source": [source]})
    assert answer["composer"] in {"llm", "extractive"} and not answer["refused"]
    assert {c["source"] for c in answer["citations"]} == {source}


@pytest.mark.parametrize(
    "question",
    ["算力券是什么？", "北京的算力券是哪个部门出台的？", "深圳算力券怎么申请？"],
)
def test_questions_the_faq_does_not_answer_go_to_the_reports(server: str, question: str) -> None:
    # "如何申请算力券？" is an entry; these are about something else, or somewhere else.
    answer = _ask(server, question)
    assert answer["composer"] != "faq"
    assert all(not c["source"].startswith("faq:") for c in answer["citations"])


def test_faq_edits_apply_without_a_restart(server: str, faq_path: Path) -> None:
    question = "知策的服务时间是几点到几点？"
    assert _ask(server, question)["composer"] != "faq"
    entry = {"id": "hours", "question": question, "answer": "知策全天24小时提供服务。"}
    original = faq_path.read_text(encoding="utf-8")
    try:
        faq_path.write_text(original + json.dumps(entry, ensure_ascii=False) + "\n", "utf-8")
        os.utime(faq_path, (faq_path.stat().st_atime, faq_path.stat().st_mtime + 5))
        answer = _ask(server, question)
        assert answer["answer"] == "知策全天24小时提供服务。[1]"
        assert answer["citations"][0]["source"] == "faq:hours"
    finally:
        faq_path.write_text(original, encoding="utf-8")
        os.utime(faq_path, (faq_path.stat().st_atime, faq_path.stat().st_mtime + 10))


def test_a_greeting_gets_a_greeting(server: str) -> None:
    answer = _ask(server, "你好")
    assert answer["intent"] == "greeting" and not answer["refused"]
    assert "知识库中没有找到" not in answer["answer"]


def test_llm_invented_claims_never_reach_the_user(server: str) -> None:
    before = len(calls)
    answer = _ask(server, "北京的人工智能算力券实施方案是什么时候出台的？")
    assert len(calls) == before + 1
    assert answer["composer"] == "llm" and answer["llm_fallback"] is None
    assert not answer["refused"] and re.search(r"\[1\]", answer["answer"])
    assert "500万元" not in answer["answer"] and "5亿元" not in answer["answer"]
    _quotes_are_document_text(server, answer)


@pytest.mark.parametrize(
    ("question", "reason"),
    [
        ("哪个文件提出建设超大规模智算中心？", "Timeout"),
        ("通义千问大模型的备案单位是哪家公司？", "500"),
        ("生成式人工智能服务管理暂行办法由多少个部门联合公布？", "JSON"),
    ],
)
def test_a_failing_llm_falls_back_to_the_extractive_answer(
    server: str, real_qa: QA, question: str, reason: str
) -> None:
    answer = _ask(server, question)
    assert answer["composer"] == "extractive"
    assert answer["llm_fallback"] and reason.lower() in answer["llm_fallback"].lower()
    assert answer["answer"] == real_qa.ask(question, 5).answer
    _quotes_are_document_text(server, answer)


def test_the_llm_is_not_asked_what_retrieval_did_not_find(server: str) -> None:
    before = len(calls)
    answer = _ask(server, "2025年大模型市场规模预计多少？")
    assert answer["refused"] and len(calls) == before
