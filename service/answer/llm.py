"""Optional LLM answers through any OpenAI-compatible /chat/completions server.

The model only writes; zhice decides what may be said. It sees numbered passages, must
cite them as [n], and afterwards every sentence is checked against the passage it
cites: uncited sentences, citations of passages it was not given, and figures or names
the cited passage does not contain are dropped. If nothing survives, or the server is
slow, failing or incoherent, the extractive answer stands and the response says why.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from ingest.text import normalize
from ingest.types import Citation, Hit
from service.errors import LLMError

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "你是政务智能客服助手“知策”。只根据用户给出的编号资料回答问题，不要使用资料以外的知识。"
    "每一句话末尾用[编号]标注依据的资料，例如[1]；资料中没有答案时，只回答“知识库中没有找到”。"
    "回答简洁，使用中文。"
)
_SENTENCE = re.compile(r"[^。！？!?\n]+[。！？!?]?(?:\[\d+\])*")
_MARK = re.compile(r"\[(\d+)\]")
_FIGURE = re.compile(r"\d+(?:\.\d+)?")
# A sentence is supported when most of its character bigrams occur in the cited
# passage: paraphrase is allowed, new content is not.
_SUPPORT = 0.5


@dataclass(frozen=True)
class LLMAnswer:
    """A checked answer: text with [n] markers matching citations, and what was dropped."""

    text: str
    citations: list[Citation]
    dropped: list[str]


class LLMComposer:
    """Asks an OpenAI-compatible server to write the answer from the passages."""

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout: float = 20.0
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = model
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def compose(self, question: str, hits: Sequence[Hit], texts: Sequence[str]) -> LLMAnswer:
        """Write and check an answer; raise LLMError when no usable answer comes back."""
        reply = self._complete(question, texts)
        return check(reply, hits, texts)

    def _complete(self, question: str, texts: Sequence[str]) -> str:
        passages = "\n".join(f"[{n}] {t}" for n, t in enumerate(texts, start=1))
        body = {
            "model": self.model,
            "temperature": 0,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"资料：\n{passages}\n\n问题：{question}"},
            ],
        }
        try:
            response = self._client.post("/chat/completions", json=body)
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(content, str) or not content.strip():
            raise LLMError("empty or non-text reply")
        return content


def check(reply: str, hits: Sequence[Hit], texts: Sequence[str]) -> LLMAnswer:
    """Keep the sentences whose citations support them; renumber the citations."""
    kept: list[str] = []
    dropped: list[str] = []
    order: list[int] = []  # passage index (0-based) per new citation number
    for sentence in (s.strip() for s in _SENTENCE.findall(reply)):
        if not sentence:
            continue
        cited = [int(n) - 1 for n in _MARK.findall(sentence)]
        claim = _MARK.sub("", sentence).strip()
        if not cited or not all(0 <= i < len(texts) for i in cited):
            dropped.append(sentence)
            continue
        if not any(_supported(claim, texts[i]) for i in cited):
            dropped.append(sentence)
            continue
        for i in cited:
            if i not in order:
                order.append(i)
        marks = "".join(f"[{order.index(i) + 1}]" for i in dict.fromkeys(cited))
        kept.append(claim + marks)
    if not kept:
        raise LLMError("no sentence of the reply was supported by the passage it cites")
    citations = [
        Citation(
            id=n,
            source=hits[i].chunk.source,
            title=hits[i].chunk.title,
            start=hits[i].chunk.start,
            end=hits[i].chunk.end,
            quote=hits[i].chunk.text,
        )
        for n, i in enumerate(order, start=1)
    ]
    return LLMAnswer("".join(kept), citations, dropped)


def _supported(claim: str, passage: str) -> bool:
    """Every figure of the claim is in the passage, and most of its wording too."""
    text, source = normalize(claim), normalize(passage)
    if any(figure not in source for figure in _FIGURE.findall(text)):
        return False
    pairs = [text[i : i + 2] for i in range(len(text) - 1) if not text[i : i + 2].isspace()]
    if not pairs:
        return False
    return sum(1 for p in pairs if p in source) / len(pairs) >= _SUPPORT
