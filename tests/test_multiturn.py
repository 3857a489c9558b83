"""Multi-turn rewriting: which follow-ups are resolved, and into what."""

from __future__ import annotations

import pytest

from ingest.tokenize import Tokenizer
from service.answer.rewrite import Rewrite, Turn, rewrite


def _history(*pairs: tuple[str, str]) -> list[Turn]:
    turns = []
    for question, answer in pairs:
        turns += [Turn("user", question), Turn("assistant", answer)]
    return turns


@pytest.mark.parametrize(
    ("previous", "follow_up", "resolved"),
    [
        # A place, year, batch or model name swapped into the previous question.
        (
            "湖北计划到2025年人工智能产业规模超过多少？",
            "北京呢？",
            "北京计划到2025年人工智能产业规模超过多少？",
        ),
        (
            "上海市2024年出台了哪些涉及大模型的政策？",
            "那安徽省呢？",
            "安徽省2024年出台了哪些涉及大模型的政策？",
        ),
        ("宁夏回族自治区有哪些大模型政策？", "山东怎么样？", "山东有哪些大模型政策？"),
        (
            "2023年中国大模型市场规模大约是多少？",
            "2024年呢？",
            "2024年中国大模型市场规模大约是多少？",
        ),
        ("第二批备案大模型是什么时候公布的？", "第三批呢？", "第三批备案大模型是什么时候公布的？"),
        ("GPT-4是哪天正式发布的？", "那GPT-5呢？", "GPT-5是哪天正式发布的？"),
        (
            "杭州和成都对备案企业分别奖励多少？",
            "北京和上海呢？",
            "北京和上海对备案企业分别奖励多少？",
        ),
        # A place narrows a national question; a year is added where there was none.
        (
            "到2023年底，我国智能算力规模有多大？",
            "北京呢？",
            "到2023年底，北京智能算力规模有多大？",
        ),
        ("大模型市场规模大约是多少？", "2024年呢？", "2024年大模型市场规模大约是多少？"),
        # A pronoun replaced by a model name of the previous question.
        (
            "GPT-4是哪天正式发布的？",
            "它一次最多能处理多少个文本令牌？",
            "GPT-4一次最多能处理多少个文本令牌？",
        ),
        (
            "Meta的Llama 3.1提供哪几种参数规模？",
            "它的上下文窗口有多长？",
            "Llama 3.1的上下文窗口有多长？",
        ),
        (
            "GPT-4o mini替代了哪个模型成为ChatGPT默认模型？",
            "它是什么时候发布的？",
            "GPT-4o mini是什么时候发布的？",
        ),
        (
            "《5G规模化应用“扬帆”行动升级方案》是什么时候发布的？",
            "该方案由几个部门联合发布？",
            "《5G规模化应用“扬帆”行动升级方案》由几个部门联合发布？",
        ),
    ],
)
def test_follow_up_becomes_a_complete_question(
    tokenizer: Tokenizer, previous: str, follow_up: str, resolved: str
) -> None:
    result = rewrite(follow_up, _history((previous, "……")), tokenizer)
    assert result == Rewrite(resolved, resolved)


def test_pronoun_takes_the_document_the_answer_named(tokenizer: Tokenizer) -> None:
    history = _history(
        (
            "哪个文件提出建设超大规模智算中心？",
            "《关于推动未来产业创新发展的实施意见》（2024年1月）：…[1]",
        )
    )
    result = rewrite("那它是哪个部门发布的？", history, tokenizer)
    assert result.question == "《关于推动未来产业创新发展的实施意见》是哪个部门发布的？"


@pytest.mark.parametrize(
    ("previous", "follow_up"),
    [
        ("北京的人工智能算力券方案是哪个部门出台的？", "什么时候出台的？"),
        ("宁夏对大模型项目最高能给多少资金支持？", "需要满足什么条件？"),
        ("山西推进煤矿智能化的方案要建一个以什么为核心的平台？", "这个方案是什么时候发布的？"),
        ("GPT-4是哪天正式发布的？", "发布时间呢？"),
        ("国产大模型面临哪些挑战？", "为什么？"),
        ("湖北的行动方案有哪些目标？", "具体有哪些措施？"),
    ],
)
def test_unresolvable_follow_up_retrieves_with_the_previous_question(
    tokenizer: Tokenizer, previous: str, follow_up: str
) -> None:
    result = rewrite(follow_up, _history((previous, "……")), tokenizer)
    # Retrieval sees the topic; the composer answers what was asked now.
    assert result == Rewrite(f"{previous} {follow_up}", follow_up)


@pytest.mark.parametrize(
    "question",
    [
        "广东率先提出要打造什么数据特区？",
        "什么是算力券？",
        "国产大模型在其中哪些任务上落后？",
        "其他省份出台了哪些大模型政策？",
        "大模型应该如何监管？",
        "北京的大模型机构主要集中在哪个区？",
        "Kimi是哪家公司的产品？",
        "《北京市促进通用人工智能创新发展的若干措施》提出了什么？",
    ],
)
def test_self_contained_questions_are_left_alone(tokenizer: Tokenizer, question: str) -> None:
    history = _history(("GPT-4是哪天正式发布的？", "2023年3月13日。[1]"))
    assert rewrite(question, history, tokenizer) == Rewrite(question, question)


def test_without_history_nothing_changes(tokenizer: Tokenizer) -> None:
    assert rewrite("北京呢？", [], tokenizer) == Rewrite("北京呢？", "北京呢？")
    assert rewrite("它是什么？", [Turn("system", "你好")], tokenizer).query == "它是什么？"


def test_each_turn_builds_on_the_resolved_one_before(tokenizer: Tokenizer) -> None:
    history = _history(
        ("杭州对通过大模型备案的企业奖励多少？", "一次性奖励50万元。"),
        ("成都呢？", "前十名给予100万元一次性奖励。"),
    )
    assert (
        rewrite("那深圳呢？", history, tokenizer).question == "深圳对通过大模型备案的企业奖励多少？"
    )
    follow_up = rewrite("这项奖励是哪个部门出台的？", history, tokenizer)
    assert follow_up.query == "成都对通过大模型备案的企业奖励多少？ 这项奖励是哪个部门出台的？"
    assert follow_up.question == "这项奖励是哪个部门出台的？"


def test_context_is_capped(tokenizer: Tokenizer) -> None:
    history = _history(*[("北京有哪些大模型政策？" * 20, "……")] * 1, *[("具体呢？", "……")] * 10)
    assert len(rewrite("为什么？", history, tokenizer).query) <= 600


def test_assistant_and_system_turns_are_not_questions(tokenizer: Tokenizer) -> None:
    history = [
        Turn("system", "湖北计划到2025年人工智能产业规模超过多少？"),
        Turn("assistant", "湖北计划到2025年人工智能产业规模超过多少？"),
        Turn("user", "2023年中国大模型市场规模大约是多少？"),
        Turn("assistant", "约为50亿元。"),
    ]
    assert (
        rewrite("北京呢？", history, tokenizer).question == "2023年北京大模型市场规模大约是多少？"
    )
