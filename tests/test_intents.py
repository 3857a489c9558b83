from __future__ import annotations

import pytest

from service.answer.intents import small_talk
from service.answer.qa import QA


@pytest.mark.parametrize(
    "text", ["你好", "您好！", "hi", "Hello~", "在吗？", "早上好呀", "嗨，你好"]
)
def test_greetings(text: str) -> None:
    assert small_talk(text) == "greeting"


@pytest.mark.parametrize("text", ["谢谢", "谢谢你！", "非常感谢", "thanks", "多谢，再见"])
def test_thanks(text: str) -> None:
    assert small_talk(text) == "thanks"


@pytest.mark.parametrize(
    "text", ["今天北京天气怎么样？", "给我讲个笑话", "你是谁", "明天会下雨吗", "中午吃什么好"]
)
def test_clearly_off_topic(text: str) -> None:
    assert small_talk(text) == "out_of_scope"


@pytest.mark.parametrize(
    "text",
    [
        "你好，国务院哪份文件提出用大模型改进政务客服？",
        "谢谢，那北京的算力券政策呢？",
        "气象大模型有哪些政策支持？",
        "人工智能数据标注产业的政策",
        "2024年广东省发布了哪些大模型相关政策？",
        "大模型能预测天气吗",
    ],
)
def test_questions_go_to_retrieval(text: str) -> None:
    assert small_talk(text) is None


def test_greeting_is_answered_without_retrieval(fake_qa: QA) -> None:
    result = fake_qa.ask("你好", 5)
    assert result.intent == "greeting"
    assert not result.refused
    assert result.citations == [] and result.passages == []
    assert "知策" in result.answer


@pytest.mark.parametrize(("question", "intent"), [("哪些省份发布了算力券政策？", "list")])
def test_list_and_fact_questions_are_told_apart(fake_qa: QA, question: str, intent: str) -> None:
    assert fake_qa.ask(question, 5).intent == intent
    assert fake_qa.ask("国务院哪份文件提出探索大模型客服？", 5).intent == "fact"
