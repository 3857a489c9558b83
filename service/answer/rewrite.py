"""Multi-turn: resolve a follow-up question against the conversation before retrieval.

Three kinds of follow-up are told apart:

- ellipsis over a named thing ("北京呢？", "2024年呢？", "第三批呢？", "那GPT-5呢？"): the
  place, year, batch or model name replaces its counterpart in the previous question,
  which makes a complete question ("北京计划到2025年人工智能产业规模超过多少？");
- a pronoun ("它", "其", "该文件", "这份政策"): replaced by what the previous turn was
  about — the 《title》 the previous answer named when the previous question asked for a
  document, else a 《title》 or model name of the previous question;
- anything else that cannot stand alone (a pronoun with no referent, "发布时间呢？",
  "什么时候出台的？", a question of generic words only): retrieval gets the previous
  question as context, the composer the follow-up as asked.

Each user turn is resolved in order, so a third turn builds on the resolved second.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ingest.tokenize import Tokenizer

# Leading connectives of a follow-up ("那它…", "那么北京呢", "还有上海呢").
_CONNECTIVE = re.compile(r"^(那么|那如果|如果是|换成|换作|改成|还有|另外|那|再问|再)[，,\s]*")
# Elliptical endings: "X呢？", "X怎么样？", "X的情况如何？".
_ELLIPSIS = re.compile(r"(的情况|的话|情况)?(呢|怎么样|怎样|如何|又如何|又是多少)[？?！!。.\s]*$")
# Pronouns that point back. 其 only opens a clause (其中/其他/尤其 are not pronouns);
# 这/那/该/此 only with a classifier or a document noun (应该, 这样 are not).
_NOUN = r"(文件|政策|方案|意见|措施|规划|办法|通知|报告|白皮书|计划|模型|公司|企业|产品|机构)"
_PRONOUN = re.compile(
    r"它们|(?<!其)它|^(那么?|那)?其(?![中他它余实次])"
    rf"|(?<![应活本])(这|那|该|此)(个|份|项|家|款|部|批|条|一)?{_NOUN}"
    r"|(这|那)(个|份|项|家|款|些)"
)
# A previous question asking for a document: its answer names the referent.
_ASKS_DOCUMENT = re.compile(rf"(哪|什么|何)[份个项部条家些]?[^？?，,]{{0,6}}{_NOUN}|叫什么|名称")
_TITLE = re.compile(r"《[^《》]{2,80}》")
# Model and product names: Latin words, optionally with a version (GPT-4, Llama 3.1).
_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-]*(?:[\s\-]?\d+(?:\.\d+)*[A-Za-z]*)?(?:\s?mini)?")
_GENERIC_LATIN = frozenset({"ai", "aigc", "agi", "llm", "gpu", "cpu", "api", "app", "pue", "it"})
# The kinds of name an elliptical follow-up can swap in: one pattern each.
_YEAR = re.compile(r"(?<!\d)(19|20)\d\d年")
_ORDINAL = re.compile(r"第[一二三四五六七八九十\d]+[批代届期次]")
_MODEL = re.compile(r"[A-Za-z][A-Za-z\-]*[\s\-]?\d+(?:\.\d+)*[A-Za-z]*(?:\s?mini)?")
_PLACE_SUFFIX = r"(省|市|回族自治区|壮族自治区|维吾尔自治区|自治区|特别行政区|新区)?"
# The whole country, which a place follow-up narrows ("全国…多少？" → "北京呢？").
_NATIONAL = re.compile(r"我国|全国|国内|中国(?!移动|联通|电信|信通院|信息通信|人民|经营报|科学院)")
_JOINERS = re.compile(r"[的和与及、,，\s]|以及")
# Words that never make a question self-contained ("什么时候出台的？" needs a subject).
_GENERIC = frozenset(
    """时间 日期 年份 部门 单位 机构 发布 出台 印发 公布 推出 发文 条件 要求 标准 目标 措施
    举措 政策 方案 意见 办法 规定 重点 领域 作用 意义 影响 原因 特点 优势 问题 挑战 金额 资金
    钱 额度 规模 数量 数字 比例 占比 名字 名称 全称 简称 作者 来源 出处 包括 包含 提供 满足
    支持 补贴 奖励 资助 上限 最高 一共 其他 别的 另外 具体 主要 详细 细节 情况 怎么回事 为啥
    意思 解释 说明 举例 例子 还有 再 又 多 长 大 高 呢 吗 第一 第二 哪一个""".split()
)
_MAX_QUERY = 600


@dataclass(frozen=True)
class Turn:
    """One message of a conversation."""

    role: str
    content: str


@dataclass(frozen=True)
class Rewrite:
    """A question resolved against the conversation.

    `query` is what retrieval searches for; `question` is what the composer answers:
    the follow-up made self-contained where it could be, else the follow-up as asked
    (the answer must fit the follow-up, not repeat the previous answer).
    """

    query: str
    question: str


@dataclass(frozen=True)
class _Previous:
    """The previous user turn, resolved, and the assistant's reply to it."""

    resolved: Rewrite
    reply: str


def rewrite(question: str, history: Sequence[Turn], tokenizer: Tokenizer) -> Rewrite:
    """Resolve `question` against the earlier turns (oldest first)."""
    previous: _Previous | None = None
    reply = ""
    for turn in history:
        text = turn.content.strip()
        if turn.role == "user" and text:
            resolved = resolve(text, previous, tokenizer)
            previous, reply = _Previous(resolved, ""), ""
        elif turn.role == "assistant" and previous is not None:
            reply = text
            previous = _Previous(previous.resolved, reply)
    return resolve(question, previous, tokenizer)


def resolve(question: str, previous: _Previous | None, tokenizer: Tokenizer) -> Rewrite:
    """One follow-up against the resolved previous turn."""
    if previous is None:
        return Rewrite(question, question)
    elliptical = _ELLIPSIS.search(question)
    if elliptical:
        body = _CONNECTIVE.sub("", question[: elliptical.start()]).strip()
        swapped = _swap(body, previous.resolved, tokenizer.places)
        if swapped is not None:
            return swapped
    if _PRONOUN.search(question):
        referent = _referent(previous)
        if referent:
            resolved = _CONNECTIVE.sub("", _PRONOUN.sub(referent, question, count=1))
            return Rewrite(resolved, resolved)
    if elliptical or _PRONOUN.search(question) or _lacks_subject(question, tokenizer):
        return Rewrite(_join(previous.resolved.query, question), question)
    return Rewrite(question, question)


def _lacks_subject(question: str, tokenizer: Tokenizer) -> bool:
    """True when nothing in the question names what it is about."""
    if tokenizer.anchors(question) or _TITLE.search(question):
        return False
    return all(t in _GENERIC for t in tokenizer.tokenize(question))


def _referent(previous: _Previous) -> str | None:
    """What a pronoun in the follow-up most likely points at."""
    asked = previous.resolved.question
    titles = _matches(_TITLE, asked)
    if _ASKS_DOCUMENT.search(asked):
        titles = _matches(_TITLE, previous.reply) + titles
    names = [n for n in _matches(_LATIN_NAME, asked) if n.lower() not in _GENERIC_LATIN]
    # A versioned model name is what a question is about ("Meta的Llama 3.1…",
    # "GPT-4o mini替代了…ChatGPT…"); else the first name.
    versioned = [n for n in names if any(ch.isdigit() for ch in n)]
    candidates = titles + versioned + names
    return candidates[0] if candidates else None


def _swap(body: str, previous: Rewrite, places: tuple[str, ...]) -> Rewrite | None:
    """The previous question with the follow-up's place, year, batch or model swapped in."""
    if not body:
        return None
    patterns = _kinds(places)
    present = {kind: _matches(p, body) for kind, p in patterns.items() if p.search(body)}
    rest = body
    for pattern in patterns.values():
        rest = pattern.sub("", rest)
    if not present or _JOINERS.sub("", rest):
        return None  # the follow-up says more than names: not a plain swap
    question, query = previous.question, previous.query
    for kind, values in present.items():
        new = "和".join(values)
        group = _group(patterns[kind])  # "杭州和成都" is swapped as a whole
        old = _matches(group, question) or _matches(group, query)
        if not old and kind == "place":
            old = _NATIONAL.findall(question) or _NATIONAL.findall(query)
        if old:
            question, query = question.replace(old[0], new), query.replace(old[0], new)
        elif kind in ("place", "year"):
            question, query = new + question, new + query
        else:
            return None
    return Rewrite(query, question)


@functools.lru_cache(maxsize=8)
def _kinds(places: tuple[str, ...]) -> dict[str, re.Pattern[str]]:
    names = "|".join(sorted(map(re.escape, places), key=len, reverse=True)) or "(?!)"
    return {
        "place": re.compile(f"(?:{names}){_PLACE_SUFFIX}"),
        "year": _YEAR,
        "ordinal": _ORDINAL,
        "model": _MODEL,
    }


def _group(pattern: re.Pattern[str]) -> re.Pattern[str]:
    """One or more of pattern, joined by 和/与/及/、."""
    return re.compile(f"(?:{pattern.pattern})(?:(?:以及|和|与|及|、)(?:{pattern.pattern}))*")


def _matches(pattern: re.Pattern[str], text: str) -> list[str]:
    return [m.group(0) for m in pattern.finditer(text)]


def _join(context: str, question: str) -> str:
    """The previous query as context for a follow-up, capped at `_MAX_QUERY` characters."""
    joined = f"{context} {question}"
    return joined[-_MAX_QUERY:]
