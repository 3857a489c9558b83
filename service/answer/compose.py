"""The extractive answer composer: verbatim sentences or table rows, each cited."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from ingest.text import normalize, sentence_spans
from ingest.tokenize import ORDINAL, Tokenizer
from ingest.types import Chunk, Citation, Document, Hit, table_row_sentence
from service.answer.answerability import Features, Scorer, mean_probability
from service.answer.filters import Filter, named_spans
from service.answer.logistic import Logistic
from service.answer.parts import Part, split_parts
from service.answer.selection import FRAGMENT_CHARS, Clues, length_feature
from service.answer.store import TermStats

REFUSAL = "知识库中没有找到能回答这个问题的内容。"
NOT_FOUND = "知识库中没有找到"
_LIST_QUESTION = re.compile(r"哪些|列举|列出|有几|几项|几个|都有|清单|盘点")
# What kind of answer a question wants, and what such an answer must contain.
_ASKS_MONEY = re.compile(
    r"(钱|金额|资金|额度|投资|价格|费用|补贴|奖励|资助).{0,6}(多少|多大|几)|多少钱"
)
_ASKS_AMOUNT = re.compile(r"多少|多大|多长|多高|多久|比例|占比|几成|几倍")
# "Which policies…" lists must list policies, not whatever mentions the topic.
_ASKS_POLICIES = re.compile(r"哪些[^，。？?]{0,16}(政策|文件|措施|方案|意见|规划|法规)[？?]?$")
_POLICY = re.compile(r"《|政策|方案|意见|措施|办法|规划|条例|通知|policy")
_POLICY_WORD = re.compile(r"政策|文件|措施|方案|意见|规划|法规|办法|条例|通知")
# Words of a filtered list question that say what kind of thing to list or how it came
# about, not what it is about: "2024年广东省发布了哪些大模型相关政策" is about 大模型.
_LISTING_WORDS = frozenset(
    """发布 出台 印发 颁布 推出 制定 出 发 涉及 提到 提及 跟 支持 发展 推动 促进 政策 措施 政策措施
    方案 意见 办法 规划 法规 条例 通知 文件 省份 城市 地方 地区 国家 层面 年 月 过""".split()
)
_ASKS_DATE = re.compile(r"哪天|哪一天|何时|什么时候|哪年|哪一年|几月|几号|日期")
_MONEY = re.compile(r"\d[\d.,]*\s*(万|亿)?元|[一二两三四五六七八九十百千万亿]+元")
# An amount is a number with a unit or a percentage; 2024年 and 3月 are dates, not
# amounts, but 连续34年 is one, and so are the issuing bodies counted as 七部委 or 六部门.
_AMOUNT = re.compile(
    r"\d[\d.,]*\s*(%|％|倍|亿|万|千|百|个|家|项|条|元|张|块|台|座|人|天|次|成|种|类|款|名|位|所|卡|"
    r"p|eflops|flops|pflops|tflops|b|gb|tb|w|瓦|度|分)|(?<!\d)\d{1,3}\s*年|\d\.\d+e\+\d+|"
    r"[一二两三四五六七八九十百千]+[亿万倍个家项条元成部]",
    re.IGNORECASE,
)
# The words just before 多少/多大 name what is measured (缺口, 参数量, 投资); an answer
# that never mentions it answers something else.
_AMOUNT_WORD = re.compile(
    r"(是|有|为|达到|达|约|大约|会达到|能达到|了)?(多少|多大|多长|多高|多久)(?=[？?。，,]|$)"
)
# "多少块GPU", "几家企业": what is counted follows the measure word.
_COUNTED = re.compile(
    r"(?<!哪)(?:多少|几)[个块家项条种批所台份名位座款张次分]?([^？?，,。的]{1,12})"
)
_YEAR = re.compile(r"^(19|20)\d\d$")
# Questions that want every item of an enumeration.
_ENUMERATES = re.compile(r"哪些|哪几|哪[两二三四五六七八九十]|几[个项类点方条]|分别|列举|有什么")
_NUMERALS = "一二三四五六七八九十"
# How far after an enumeration's first item its last may end, in characters.
_ENUMERATION_WINDOW = 800
# An item this short without a sentence end is a heading over its text.
_ITEM_HEADING = 12


@dataclass(frozen=True)
class _Enumeration:
    """One way of numbering items: 一是/二是, 其一/其二, (1)/(2), 1 /2 ."""

    first: re.Pattern[str]  # where the first item is (anywhere in its sentence)
    numbered: str  # the pattern of item n at a sentence start, {n} to fill in
    arabic: bool

    def item(self, n: int) -> re.Pattern[str]:
        """The start of item n (1-based)."""
        mark = str(n) if self.arabic else _NUMERALS[min(n, 10) - 1]
        return re.compile(self.numbered.format(n=re.escape(mark)))

    def starts(self, display: str) -> bool:
        """True when a sentence starts some item of this style."""
        return any(self.item(n).match(display) for n in range(1, 11))


_ENUMERATION = (
    _Enumeration(re.compile("一是"), r"^[，,；;]?\s*{n}是", False),
    _Enumeration(re.compile("其一"), r"^[，,；;]?\s*其{n}", False),
    _Enumeration(re.compile(r"[(（]1[)）]"), r"^\s*[(（]{n}[)）]", True),
    _Enumeration(re.compile(r"^1[\s、.．]"), r"^\s*{n}[\s、.．]", True),
)
_DATE = re.compile(r"\d{2,4}\s*年|\d{1,2}\s*月|\d{4}[-/.]\d{1,2}|[一二三四五六七八九十]+月")

# How many passages the composer reads, and how close to the best a candidate's
# selection probability must be for it to be added: a runner-up of a fact answer at half
# the best's, an item of a list at 0.3 of it (chosen on the dev split; 0.7 and 0.5 gave
# shorter answers holding fewer of its gold keywords).
_READ_PASSAGES = 5
_LIST_RATIO = 0.3
_EXTRA_RATIO = 0.5
_MAX_LIST_ITEMS = 12
# Share of a sentence's character pairs found in another for the two to count as one.
_SAME_WORDS = 0.85
_HEADING_CHARS = 40
_SENTENCE_ENDS = tuple("。！？；!?;…：:")
# Constraints a question can set that the answer must meet: a time scope finer than a
# year, and a stage of a policy's life. Asked and absent from the answer, the question
# is probably about something the reports do not state.
_TIME_SCOPE = re.compile(r"年底|年末|年初|上半年|下半年|[一二三四1-4]季度|\d{1,2}月")
_STAGE = re.compile(r"生效|施行|实施|废止|到期|截止|试行|征求意见")
# A document's opening (its title, the head of its lead sentence) names its subject, which
# most of its sentences share; the question terms it lacks are what tells them apart
# (Clues.beyond_opening). Chosen on CMRC trial and dev by out-of-fold top-1 of the fitted
# selection: 30, 60, 100 and 200 characters gave 0.835, 0.826, 0.810 and 0.804 (0.792
# without the clue).
_OPENING_CHARS = 30
# What a question's character pairs are taken from: letters and digits, not punctuation.
_WORD_CHARS = re.compile(r"[\w]")


@dataclass(frozen=True)
class Candidate:
    """A sentence or table row that might answer the question."""

    chunk: Chunk
    start: int
    end: int
    display: str
    text: str  # normalised title, context and display, for matching
    coverage: float
    typed: bool  # holds the kind of answer asked for (a date, an amount, money)
    score: float  # the selection model's probability that it answers (a list row: coverage)
    clues: Clues | None = None  # what the selection model scored


@dataclass(frozen=True)
class _Read:
    """A sentence or row of a passage read, before it is scored."""

    chunk: Chunk
    rank: int  # of its passage among those read
    document_rank: int  # of its document among the documents of the passages read
    start: int
    end: int
    display: str
    plain: str  # the display normalised
    text: str  # normalised title, context and display


@dataclass(frozen=True)
class Answer:
    """The composed answer; `evidence` in [0, 1] is what refusal is decided on."""

    text: str
    refused: bool
    citations: list[Citation]
    evidence: float
    intent: str
    features: tuple[Features | None, ...] = ()  # of the evidence, one per part
    score_ms: float = 0.0  # reading the passages' sentences and scoring them and the evidence


class _Stopwatch:
    """Milliseconds spent inside its `with` blocks."""

    def __init__(self) -> None:
        self.ms = 0.0
        self._began = 0.0

    def __enter__(self) -> None:
        self._began = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.ms += (time.perf_counter() - self._began) * 1000


@dataclass(frozen=True)
class Reading:
    """A question as the composer reads it, before any passage arrives.

    Read once per question, while its vector is being encoded: the intent ("fact",
    "list" or "multi") and what each part asks for — one need for a single question,
    one per part of a multi-part one.
    """

    question: str
    intent: str
    needs: tuple[tuple[Part | None, _Need], ...]

    def parts(self) -> list[tuple[str, Sequence[str]]]:
        """Each part's text and tokens, to retrieve for it; [] for a single question."""
        return [(part.text, need.tokens) for part, need in self.needs if part is not None]


@dataclass(frozen=True)
class _Need:
    """What the question asks for, derived once per question."""

    tokens: Sequence[str]  # the question's (or part's), as the tokenizer cut them
    weights: Mapping[str, float]  # question term -> idf
    anchors: Sequence[str]
    wants: re.Pattern[str] | None
    focus: str | None = None  # what a "how much" question measures
    names: Sequence[str] = ()  # proper nouns (寒武纪, 欧盟)
    words: Sequence[str] = ()  # content words of two characters or more
    constraints: Sequence[str] = ()  # time scopes and stages (年底, 生效)
    pairs: frozenset[str] = frozenset()  # the question's character pairs


def _refusal(evidence: float, intent: str, features: tuple[Features | None, ...] = ()) -> Answer:
    return Answer(
        text=REFUSAL,
        refused=True,
        citations=[],
        evidence=evidence,
        intent=intent,
        features=features,
    )


def is_list_question(question: str) -> bool:
    """True for 哪些/列举-style questions that want every matching item."""
    return bool(_LIST_QUESTION.search(question))


class Composer:
    """Picks the sentences of the top passages that best cover the question."""

    def __init__(
        self,
        documents: Mapping[str, Document],
        tokenizer: Tokenizer,
        bm25: TermStats,
        scorer: Scorer,
        selector: Logistic,
        threshold: float | None = None,
    ) -> None:
        self.documents = documents
        self.tokenizer = tokenizer
        self.bm25 = bm25
        self.scorer = scorer
        self.selector = selector
        self.threshold = scorer.threshold if threshold is None else threshold

    def read(self, question: str, tokens: Sequence[str]) -> Reading:
        """What the question asks for, read once before any passage is (see Reading)."""
        parts = split_parts(question, self.tokenizer)
        if parts:
            needs = [
                self._need(p.text, self.tokenizer.tokenize(p.text), [p.anchor] if p.anchor else [])
                for p in parts
            ]
            return Reading(question, "multi", tuple(zip(parts, needs, strict=True)))
        intent = "list" if is_list_question(question) else "fact"
        return Reading(question, intent, ((None, self._need(question, tokens)),))

    def compose(self, question: str, tokens: Sequence[str], hits: Sequence[Hit]) -> Answer:
        """Answer from hits, or refuse when the evidence is below the threshold."""
        reading = self.read(question, tokens)
        return self.answer(reading, [hits] * len(reading.needs))

    def answer(self, reading: Reading, hits: Sequence[Sequence[Hit]]) -> Answer:
        """Answer a question read, from its passages (one list per part), or refuse.

        `score_ms` of the answer is the part of the time spent scoring with the fitted
        models: the passages' sentences (selection) and the evidence (answerability).
        """
        scoring = _Stopwatch()
        if reading.intent == "multi":
            answer = self._compose_parts(reading, hits, scoring)
        else:
            answer = self._compose_one(reading, hits[0], scoring)
        return replace(answer, score_ms=round(scoring.ms, 3))

    def _compose_one(self, reading: Reading, found: Sequence[Hit], scoring: _Stopwatch) -> Answer:
        question, intent = reading.question, reading.intent
        need = reading.needs[0][1]
        with scoring:
            candidates = self._candidates(need, found[:_READ_PASSAGES])
        if not candidates:
            return _refusal(0.0, intent)
        chosen = _choose(candidates, intent)
        with scoring:
            features = (self.features(need, found, chosen, intent),)
        if _ENUMERATES.search(question):
            chosen = self._enumerated(question, chosen)
        with scoring:
            evidence = mean_probability(self.scorer, features)
        if not chosen or evidence < self.threshold:
            return _refusal(evidence, intent, features)
        text, citations = self._render(chosen, intent)
        return Answer(
            text=text,
            refused=False,
            citations=citations,
            evidence=evidence,
            intent=intent,
            features=features,
        )

    def list_rows(
        self, question: str, tokens: Sequence[str], rows: Sequence[Chunk], where: Filter
    ) -> Answer | None:
        """Every row the filter chose that is on the question's topic, each cited; or None.

        The filter has decided the place, time and department; a row is listed when it
        holds each remaining content word of the question (大模型 in "…哪些大模型相关政策"),
        and only policy rows are listed when the question asks for policies. None when no
        row qualifies or the evidence is below the threshold: the question is then
        answered (or refused) from retrieval as usual.
        """
        if _POLICY_WORD.search(question):
            rows = [r for r in rows if "policy" in r.metadata]
        plain = normalize(question)
        decided = named_spans(plain, self.tokenizer.places, where)
        topic = [
            t
            for t in set(tokens)
            if t not in _LISTING_WORDS and not t.isdigit() and not _inside(t, plain, decided)
        ]
        need = self._need(question, tokens)
        chosen = []
        for row in rows:
            display = _row_answer(row)
            text = normalize(f"{row.title}\n{row.context}\n{display}")
            if all(self._present(t, text) for t in topic):
                coverage = self._coverage(need.weights, text)
                chosen.append(
                    Candidate(
                        chunk=row,
                        start=row.start,
                        end=row.end,
                        display=display,
                        text=text,
                        coverage=coverage,
                        typed=True,
                        score=coverage,
                    )
                )
        if not chosen:
            return None
        features = self.features(need, [Hit(c.chunk, 1.0) for c in chosen], chosen, "list")
        evidence = self.scorer.probability(features)
        if evidence < self.threshold:
            return None
        text, citations = self._render(chosen, "list")
        return Answer(
            text=text,
            refused=False,
            citations=citations,
            evidence=evidence,
            intent="list",
            features=(features,),
        )

    def _need(self, question: str, tokens: Sequence[str], anchors: Sequence[str] = ()) -> _Need:
        return _Need(
            tokens=tokens,
            weights={t: self.bm25.term_idf(t) for t in set(tokens)},
            anchors=list(anchors) or self.tokenizer.anchors(question),
            wants=_wanted_answer(question),
            focus=self._focus(question),
            names=self.tokenizer.names(question),
            words=[t for t in dict.fromkeys(tokens) if len(t) > 1 and not t.isdigit()],
            constraints=[
                normalize(c) for c in (*_TIME_SCOPE.findall(question), *_STAGE.findall(question))
            ],
            pairs=_pairs(normalize(question)),
        )

    def candidates(
        self, question: str, tokens: Sequence[str], hits: Sequence[Hit]
    ) -> list[Candidate]:
        """The sentences and rows of the passages read, most probable answer first."""
        return self._candidates(self._need(question, tokens), hits[:_READ_PASSAGES])

    def _compose_parts(
        self, reading: Reading, hits: Sequence[Sequence[Hit]], scoring: _Stopwatch
    ) -> Answer:
        """Answer each part from its own passages, each cited, or say it was not found.

        A part the reports do not cover does not sink the others; only when no part is
        answered is the whole question refused.
        """
        chosen: list[Candidate] = []
        answers: list[tuple[Part, list[Candidate]]] = []
        features: list[Features | None] = []
        for (part, need), found in zip(reading.needs, hits, strict=True):
            assert part is not None
            with scoring:
                candidates = self._candidates(need, found[:_READ_PASSAGES])
            fresh = [c for c in candidates if not _overlaps(c, chosen)]
            # Each part is answered as the question it is: a runner-up as close as a fact
            # answer's, every item of a list or of an enumeration it asks for.
            intent = "list" if is_list_question(part.text) else "fact"
            mine = _choose(fresh or candidates, intent) if candidates else []
            if mine and _ENUMERATES.search(part.text):
                mine = self._enumerated(part.text, mine)
            with scoring:
                part_features = self.features(need, found, mine, intent) if mine else None
                probability = self.scorer.probability(part_features) if part_features else 0.0
            features.append(part_features)
            if mine and probability >= self.threshold:
                chosen.extend(c for c in mine if not _overlaps(c, chosen))
                answers.append((part, mine))
            else:
                answers.append((part, []))
        evidence = mean_probability(self.scorer, features)
        if not chosen:
            return _refusal(evidence, "multi", tuple(features))
        citations = self._citations(chosen)
        lines: list[str] = []
        for part, mine in answers:
            if not mine:
                lines.append(f"（{part.text}：{NOT_FOUND}）")
                continue
            for candidate in mine:
                n = next(i for i, c in enumerate(chosen, start=1) if _overlaps(candidate, [c]))
                if f"[{n}]" not in "".join(lines):
                    lines.append(f"{chosen[n - 1].display}[{n}]")
        return Answer(
            text="".join(lines),
            refused=False,
            citations=citations,
            evidence=evidence,
            intent="multi",
            features=tuple(features),
        )

    def features(
        self, need: _Need, hits: Sequence[Hit], chosen: Sequence[Candidate], intent: str
    ) -> Features:
        """What the answer about to be given shows about the question (see answerability).

        Coverage is the idf-weighted share of the question's terms (or synonyms) found in
        the chosen sentences and in the best passage.
        """
        # A fact is answered by one sentence; stitching a year from one sentence to a
        # figure from another is how extractive answers go wrong. Lists use them all.
        used = chosen if intent == "list" else chosen[:1]
        answer_text = "\n".join(c.text for c in used)
        passages = "\n".join(normalize(c.chunk.search_text) for c in used)
        unknown = any(not self._known(a, hits) for a in need.anchors)
        # Years must be in the cited sentences; places and names may be in the
        # surrounding passage (a paragraph about 福建 need not repeat the name).
        missing = [
            a
            for a in need.anchors
            if not self._present(a, answer_text if _YEAR.match(a) else passages)
        ]
        dense = {h.chunk.chunk_id: h.dense_score for h in hits if h.dense_score is not None}
        return Features(
            answer_coverage=self._coverage(need.weights, answer_text),
            passage_coverage=self._coverage(need.weights, normalize(hits[0].chunk.search_text)),
            anchors_unknown=float(unknown),
            anchors_missing=0.0
            if unknown
            else min(2, sum(2 if _YEAR.match(a) else 1 for a in missing)),
            names_unknown=_ratio([n for n in need.names if not self._known(n, hits)], need.names),
            words_unknown=_ratio(
                [w for w in need.words if w not in self.bm25.vocabulary], need.words
            ),
            constraints_missing=float(sum(1 for c in need.constraints if c not in answer_text)),
            untyped=float(need.wants is not None and not any(c.typed for c in used)),
            unfocused=float(bool(need.focus) and not self._present(need.focus or "", answer_text)),
            dense_answer=dense.get(used[0].chunk.chunk_id, 0.0) if used else 0.0,
            dense_best=max(dense.values(), default=0.0),
            # Rows a filter listed were not selected by the model: their coverage stands in.
            selected=used[0].score if used else 0.0,
        )

    def _focus(self, question: str) -> str | None:
        """What a "how much" question measures: the last content word before a final
        多少/多大 ("规模是多少？"), or the first after 多少/几 and a measure word
        ("多少块GPU", "几家企业")."""
        match = _AMOUNT_WORD.search(question)
        if match:
            words = self.tokenizer.tokenize(question[: match.start()])
            return words[-1] if words else None
        counted = _COUNTED.search(question)
        if counted:
            words = [w for w in self.tokenizer.tokenize(counted.group(1)) if len(w) > 1]
            return words[0] if words else None
        return None

    def _known(self, anchor: str, hits: Sequence[Hit]) -> bool:
        """True when the reports mention the anchor at all."""
        if anchor in self.bm25.vocabulary:
            return True
        return any(anchor in normalize(h.chunk.search_text) for h in hits)

    def _candidates(self, need: _Need, hits: Sequence[Hit]) -> list[Candidate]:
        read = self._read(need, hits)
        # A term every sentence holds (the paragraph's subject) tells them apart less than
        # one only a few hold: weigh each question term by idf and by its rarity here.
        n = len(read)
        held = {t: sum(1 for r in read if self._present(t, r.text)) for t in need.weights}
        distinct = {t: w * math.log((n + 1) / (held[t] + 0.5)) for t, w in need.weights.items()}
        coverages = [self._coverage(need.weights, r.text) for r in read]
        top_coverage = max(coverages, default=0.0)
        contrasts = [self._coverage(distinct, r.text) for r in read]
        top_contrast = max(contrasts, default=0.0) or 1.0
        beyond: dict[str, dict[str, float]] = {}  # per document: the terms its opening lacks
        for r in read:
            if r.chunk.source not in beyond:
                opening = normalize(self.documents[r.chunk.source].text[:_OPENING_CHARS])
                beyond[r.chunk.source] = {
                    t: w for t, w in need.weights.items() if not self._present(t, opening)
                }
        out: list[Candidate] = []
        for r, coverage, contrast in zip(read, coverages, contrasts, strict=True):
            plain = r.plain
            typed = need.wants is None or bool(need.wants.search(r.display))
            clues = Clues(
                coverage=coverage,
                sentence_coverage=self._coverage(need.weights, plain),
                bigrams=_ratio([p for p in need.pairs if p in plain], list(need.pairs)),
                passage=1.0 / r.rank,
                document=1.0 / r.document_rank,
                anchors=_share(need.anchors, r.text),
                typed=float(typed),
                focus=float(not need.focus or self._present(need.focus, plain)),
                fragment=float(r.end - r.start < FRAGMENT_CHARS),
                length=length_feature(len(r.display)),
                open_end=float(not r.display.endswith(_SENTENCE_ENDS)),
                table_row=float(r.chunk.kind == "table_row"),
                contrast=contrast,
                below_best=top_coverage - coverage,
                contrast_share=contrast / top_contrast,
                beyond_opening=self._coverage(beyond[r.chunk.source], plain),
            )
            out.append(
                Candidate(
                    chunk=r.chunk,
                    start=r.start,
                    end=r.end,
                    display=r.display,
                    text=r.text,
                    coverage=coverage,
                    typed=typed,
                    score=self.selector.probability(clues.vector()),
                    clues=clues,
                )
            )
        return sorted(out, key=lambda c: -c.score)

    def _read(self, need: _Need, hits: Sequence[Hit]) -> list[_Read]:
        """Every sentence and row of the hits once, less those about other places or
        batches than the question names."""
        seen: set[tuple[str, int, int]] = set()
        out: list[_Read] = []
        places = [a for a in need.anchors if a in self.tokenizer.places]
        ordinals = [a for a in need.anchors if ORDINAL.fullmatch(a)]
        documents = {s: n for n, s in enumerate(dict.fromkeys(h.chunk.source for h in hits), 1)}
        for rank, hit in enumerate(hits, start=1):
            for start, end, display in self._spans(hit.chunk):
                key = (hit.chunk.source, start, end)
                if key in seen:
                    continue
                seen.add(key)
                plain = normalize(display)
                if places and _elsewhere(places, self.tokenizer.places_in(plain), plain):
                    continue
                if ordinals and _elsewhere(ordinals, ORDINAL.findall(plain), plain):
                    continue
                text = normalize(f"{hit.chunk.title}\n{hit.chunk.context}\n{display}")
                document = documents[hit.chunk.source]
                out.append(_Read(hit.chunk, rank, document, start, end, display, plain, text))
        return out

    def _enumerated(self, question: str, chosen: Sequence[Candidate]) -> list[Candidate]:
        """The chosen sentences, each followed by the rest of the enumeration it opens.

        "面临诸多挑战：一是算力资源供不应求…。" answers "面临哪些挑战？" only in part; the
        sentences that go on with 二是, 三是… (or 2, 3…) complete it. Only an enumeration
        of what the question asks for (its last word: 挑战) is followed, not one of
        趋势 that happens to be nearby.
        """
        words = [t for t in self.tokenizer.tokenize(question) if len(t) > 1]
        head = words[-1] if words else None
        out: list[Candidate] = []
        for candidate in chosen:
            if _overlaps(candidate, out):
                continue
            out.append(candidate)
            if candidate.chunk.kind == "table_row" or not head:
                continue
            document = self.documents[candidate.chunk.source].text
            about = candidate.display + _heading_above(document, candidate.start)
            if head not in about:
                continue
            out.extend(i for i in self._continuation(candidate) if not _overlaps(i, out))
        return out

    def _continuation(self, opener: Candidate) -> list[Candidate]:
        """The items after an opener holding the first ("…：一是…"), or after one that
        announces them ("需重点关注四个核心性能", then "1 有效性…")."""
        text = self.documents[opener.chunk.source].text
        window = min(len(text), opener.end + _ENUMERATION_WINDOW)
        expected = 2
        style = next((st for st in _ENUMERATION if st.first.search(opener.display)), None)
        if style is None:
            after = next(sentence_spans(text, opener.end, window), None)
            following = text[after[0] : after[1]] if after else ""
            style = next((st for st in _ENUMERATION if st.item(1).match(following)), None)
            expected = 1
        if style is None:
            return []
        found: list[Candidate] = []
        for start, end in sentence_spans(text, opener.end, window):
            display = " ".join(text[start:end].split())
            if not display:
                continue
            if not style.item(expected).match(display):
                if style.item(expected + 1).match(display) or style.starts(display):
                    break  # an enumeration, but not this one's next item
                continue  # a sentence inside the current item
            found.append(replace(opener, start=start, end=end, display=display))
            expected += 1
        return _with_bodies(text, found, style)

    def _spans(self, chunk: Chunk) -> list[tuple[int, int, str]]:
        """Answerable units of a chunk: the row itself, or its sentences."""
        if chunk.kind == "table_row":
            return [(chunk.start, chunk.end, _row_answer(chunk))]
        text = self.documents[chunk.source].text
        spans = _attach_headings(text, list(sentence_spans(text, chunk.start, chunk.end)))
        return [(s, e, " ".join(text[s:e].split())) for s, e in spans]

    def _coverage(self, weights: Mapping[str, float], text: str) -> float:
        """Idf-weighted share of question terms (or their synonyms) present in text."""
        total = sum(weights.values())
        if not total:
            return 0.0
        return sum(w for term, w in weights.items() if self._present(term, text)) / total

    def _present(self, term: str, text: str) -> bool:
        return term in text or any(s in text for s in self.tokenizer.synonyms.get(term, ()))

    def _citations(self, chosen: Sequence[Candidate]) -> list[Citation]:
        return [
            Citation(
                id=n,
                source=c.chunk.source,
                title=c.chunk.title,
                start=c.start,
                end=c.end,
                quote=self.documents[c.chunk.source].text[c.start : c.end],
            )
            for n, c in enumerate(chosen, start=1)
        ]

    def _render(self, chosen: Sequence[Candidate], intent: str) -> tuple[str, list[Citation]]:
        citations = self._citations(chosen)
        if intent == "list" and len(chosen) > 1:
            lines = [f"{n}. {c.display}[{n}]" for n, c in enumerate(chosen, start=1)]
            return f"共找到{len(chosen)}项：\n" + "\n".join(lines), citations
        return "".join(f"{c.display}[{n}]" for n, c in enumerate(chosen, start=1)), citations


def _elsewhere(asked: Sequence[str], named: Sequence[str], display: str) -> bool:
    """True when a sentence names places (or batches…), but none of those asked about.

    "上海到2025年…达到多少？" must not be answered with Beijing's figure, nor "第一批…" with
    the second batch, however close the rest of the sentence; a sentence naming none of
    them, or one asked about, stays. `named` are the ones the sentence names.
    """
    return bool(named) and not any(a in display for a in asked)


def _heading_above(text: str, start: int) -> str:
    """The nearest heading line (short, no sentence end) before offset `start`."""
    lines = text[max(0, start - 2000) : start].splitlines()
    for line in reversed(lines[-30:]):
        line = line.strip()
        if line and len(line) <= _HEADING_CHARS and not line.endswith(_SENTENCE_ENDS):
            return line
    return ""


def _with_bodies(text: str, items: list[Candidate], style: _Enumeration) -> list[Candidate]:
    """Items that are only a heading ("2 稳定性") take the sentence under them."""
    out = []
    for item in items:
        if len(item.display) <= _ITEM_HEADING and not item.display.endswith(_SENTENCE_ENDS):
            body = next(sentence_spans(text, item.end, min(len(text), item.end + 400)), None)
            if body is not None and not style.starts(text[body[0] : body[1]].strip()):
                end = body[1]
                item = replace(item, end=end, display=" ".join(text[item.start : end].split()))
        out.append(item)
    return out


def _attach_headings(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Join a heading line to the sentence after it: a bare heading answers nothing."""
    out: list[tuple[int, int]] = []
    pending: int | None = None
    for start, end in spans:
        begin = start if pending is None else pending
        if _is_heading(text, start, end):
            pending = begin
            continue
        out.append((begin, end))
        pending = None
    if pending is not None:
        # The chunk ends on a heading: its text is in the next chunk, so read on, once.
        last = spans[-1][1]
        window = sentence_spans(text, last, min(len(text), last + _HEADING_CHARS * 8))
        body = next((e for s, e in window if not _is_heading(text, s, e)), last)
        out.append((pending, body))
    return out


def _is_heading(text: str, start: int, end: int) -> bool:
    """A short line of its own without a sentence end."""
    return (
        end - start <= _HEADING_CHARS
        and not text[start:end].endswith(_SENTENCE_ENDS)
        and (end == len(text) or text[end] == "\n")
    )


def _row_answer(chunk: Chunk) -> str:
    """A table row as an answer: 《名称》（2024年1月，国务院）：内容, else its fields."""
    fields = chunk.metadata
    if "policy" not in fields:
        return table_row_sentence("", fields)
    who = "，".join(
        v for v in (fields.get("date"), fields.get("department"), fields.get("region")) if v
    )
    head = f"《{fields['policy']}》" + (f"（{who}）" if who else "")
    return f"{head}：{fields['content']}" if fields.get("content") else head


def _inside(token: str, text: str, spans: Sequence[tuple[int, int]]) -> bool:
    """True when every occurrence of token in text overlaps a span (海市 in 上海市)."""
    starts = [m.start() for m in re.finditer(re.escape(token), text)]
    return bool(starts) and all(any(s < i + len(token) and i < e for s, e in spans) for i in starts)


def _pairs(text: str) -> frozenset[str]:
    """The character pairs of a text's letters and digits."""
    pairs = set()
    for i in range(len(text) - 1):
        if _WORD_CHARS.match(text[i]) and _WORD_CHARS.match(text[i + 1]):
            pairs.add(text[i : i + 2])
    return frozenset(pairs)


def _ratio(part: Sequence[str], whole: Sequence[str]) -> float:
    return len(part) / len(whole) if whole else 0.0


def _share(anchors: Sequence[str], text: str) -> float:
    return sum(1 for a in anchors if a in text) / len(anchors) if anchors else 1.0


def _wanted_answer(question: str) -> re.Pattern[str] | None:
    """The pattern an answer must match for money, amount or date questions."""
    if _ASKS_MONEY.search(question):
        return _MONEY
    if _ASKS_POLICIES.search(question):
        return _POLICY
    if _ASKS_DATE.search(question):
        return _DATE
    if _ASKS_AMOUNT.search(question):
        return _AMOUNT
    return None


def _choose(candidates: Sequence[Candidate], intent: str) -> list[Candidate]:
    """The best candidate, plus close runners-up (all matching items for lists)."""
    best = candidates[0]
    if intent == "list":
        same_kind = [c for c in candidates if c.chunk.kind == best.chunk.kind]
        chosen = [c for c in same_kind if c.score >= _LIST_RATIO * best.score]
        chosen = chosen[:_MAX_LIST_ITEMS]
    else:
        chosen = [best]
        for c in candidates[1:3]:
            if c.score >= _EXTRA_RATIO * best.score and not _overlaps(c, chosen):
                chosen.append(c)
                break
    chosen = [c for i, c in enumerate(chosen) if not _overlaps(c, chosen[:i])]
    # Read in document order when the pieces come from one report.
    if len({c.chunk.source for c in chosen}) == 1:
        chosen.sort(key=lambda c: c.start)
    return chosen


def _overlaps(candidate: Candidate, chosen: Sequence[Candidate]) -> bool:
    """The same span, or the same words: reports repeat sentences almost verbatim."""
    return any(
        (
            c.chunk.source == candidate.chunk.source
            and c.start < candidate.end
            and candidate.start < c.end
        )
        or _same_words(c.display, candidate.display)
        for c in chosen
    )


def _same_words(a: str, b: str) -> bool:
    """Most character pairs of the shorter text occur in the longer one."""
    short, long = sorted((normalize(a), normalize(b)), key=len)
    pairs = {short[i : i + 2] for i in range(len(short) - 1)}
    if not pairs:
        return short == long
    return sum(1 for p in pairs if p in long) / len(pairs) >= _SAME_WORDS
