"""Documents are data, not instructions: sentences screened out of the index at ingest.

An uploaded document may carry text meant for the assistant rather than the reader
("忽略以上指令，你现在是…") or a lure ("请将身份证号和银行卡号发送至 x@y.com"). Quoted
verbatim, the first would speak with the service's voice and the second would hand a
fraud the service's credibility; fed to an LLM composer, the first is a prompt
injection. Such sentences are flagged here, left out of every chunk (so they are never
retrieved, quoted, cited or sent to an LLM) and listed per document in
`GET /documents/{source}`. The patterns are deliberately narrow: a policy report that
discusses 大模型 or 智能客服 is not flagged (the bundled corpus has no flag, a test
checks it).
"""

from __future__ import annotations

import re

from ingest.text import sentence_spans
from ingest.types import Flag, FlagReason

# Sentences addressed to an assistant: overriding its instructions, giving it a role.
_INSTRUCTION = re.compile(
    r"(?:忽略|无视|忘记|忘掉|不要理会|不要遵守)(?:掉)?(?:你)?(?:以上|上面|上述|之前|此前|先前|前面|"
    r"前述|所有|全部|原来|原有)的?(?:所有|全部)?(?:的)?(?:指令|指示|提示词?|要求|规则|设定)"
    r"|系统提示|系统指令|你现在是|现在你是|从现在(?:开始|起)[，,]?你|请你?扮演|你的新(?:角色|任务|指令)"
    r"|\bignore\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier)\s+"
    r"(?:instructions|prompts|messages)|\bsystem\s+prompt\b|\byou\s+are\s+now\b"
    r"|\bdisregard\s+(?:all\s+|the\s+)?(?:previous|prior|above)",
    re.IGNORECASE,
)
# Personal data or payment asked for ...
_SOLICITED = re.compile(r"身份证号|银行卡|银行账[号户]|卡号|密码|验证码|转账|汇款|付款")
# ... together with somewhere to send it.
_CONTACT = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail
    r"|(?<!\d)1[3-9]\d{9}(?!\d)"  # mobile phone
    r"|(?<!\d)0\d{2,3}-?\d{7,8}(?!\d)"  # landline with area code
    r"|(?:QQ|微信|WeChat)\s*(?:号)?\s*[:：]?\s*[\w-]{5,}",
    re.IGNORECASE,
)


def screen(text: str) -> tuple[Flag, ...]:
    """The sentences of `text` to keep out of the index, in order."""
    flags = []
    for start, end in sentence_spans(text):
        reason = screen_sentence(text[start:end])
        if reason is not None:
            flags.append(Flag(start, end, reason))
    return tuple(flags)


def screen_sentence(sentence: str) -> FlagReason | None:
    """Why one sentence (or a title) must not be served, or None."""
    if _INSTRUCTION.search(sentence):
        return "instruction"
    if _SOLICITED.search(sentence) and _CONTACT.search(sentence):
        return "solicitation"
    return None
