"""Small talk that needs no retrieval: greetings, thanks and clearly off-topic asks."""

from __future__ import annotations

import re
from typing import Literal

SmallTalk = Literal["greeting", "thanks", "out_of_scope"]

_SCOPE = "大模型、人工智能等领域的政策文件和产业报告"
REPLIES: dict[SmallTalk, str] = {
    "greeting": (
        f"您好！我是知策，可以回答{_SCOPE}中的问题，并给出原文出处。"
        "例如：“国务院哪份文件提出用大模型改进政务线上客服？”"
    ),
    "thanks": f"不客气！如果还有关于{_SCOPE}的问题，欢迎继续提问。",
    "out_of_scope": (
        f"抱歉，这个问题不在我的服务范围内。我只回答{_SCOPE}中的问题，"
        "例如某项政策由哪个部门发布、提出了哪些措施。"
    ),
}

_FILLER = r"[\s,，.。!！~～?？呀啊哈呢吧嘛哦噢]*"
_GREETING = re.compile(
    rf"^{_FILLER}(?:(你好|您好|你们好|hi|hello|hey|嗨|哈喽|早上好|上午好|中午好|下午好|晚上好|早安|"
    rf"晚安|在吗|在不在|有人吗)(呀|啊|哇)?{_FILLER})+$",
    re.IGNORECASE,
)
_THANKS = re.compile(
    rf"^{_FILLER}(谢谢|谢谢你|谢谢您|多谢|感谢|非常感谢|太感谢了|辛苦了|thanks|thank you|thx)"
    rf"(你|您|啦|了)?{_FILLER}(再见|拜拜|bye)?{_FILLER}$",
    re.IGNORECASE,
)
# Only unmistakable everyday asks: a policy question never matches these.
_OFF_TOPIC = re.compile(
    r"天气|气温|下雨|下雪|穿什么|讲个?笑话|笑话|唱首?歌|你是谁|你叫什么|你几岁|你多大|"
    r"现在几点|今天几号|今天星期几|吃什么|好吃|股票.*(涨|跌)|彩票|星座|算命|"
    r"写一首诗|写首诗|陪我聊"
)
_TOPIC = re.compile(
    r"政策|文件|意见|方案|措施|规划|大模型|人工智能|算力|智算|模型|数据|产业|报告|ai", re.IGNORECASE
)


def small_talk(question: str) -> SmallTalk | None:
    """The kind of small talk a question is, or None when it should go to retrieval."""
    text = question.strip()
    if _GREETING.match(text):
        return "greeting"
    if _THANKS.match(text):
        return "thanks"
    if _OFF_TOPIC.search(text) and not _TOPIC.search(text):
        return "out_of_scope"
    return None
