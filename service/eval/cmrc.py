"""`zhice eval --cmrc`: open-domain retrieval and answers over the CMRC 2018 dev set.

Every paragraph becomes one document of a temporary corpus (`<paragraph id>.txt`),
indexed by the normal ingestion pipeline with the configured model. A question's
relevant document is its own paragraph; retrieval is scored at the document level:
the rank of the paragraph's first chunk among retrieved chunks, counting each
document once. Answers are composed as `/ask` would, and scored with CMRC's EM/F1.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.text import sentence_spans
from ingest.types import Hit
from service.answer.fusion import Fusion
from service.answer.qa import QA
from service.answer.retrieval import Mode, Retriever
from service.config import Settings
from service.errors import CmrcError
from service.eval.cmrc_metrics import contains, exact_match, f1, strip_markers

SEED = 2018
KS = (1, 5, 10)
# Chunks retrieved per question to rank documents: paragraphs are at most ~1,000
# characters (under ten chunks), so 100 chunks always span more than ten documents.
CHUNKS = 100
ANSWER_PASSAGES = 10


@dataclass(frozen=True)
class CmrcQuestion:
    """A question, its gold answers and the id of the paragraph that answers it."""

    id: str
    question: str
    answers: tuple[str, ...]
    paragraph: str

    @property
    def source(self) -> str:
        """The document name of its paragraph in the benchmark corpus."""
        return source_name(self.paragraph)


@dataclass(frozen=True)
class CmrcSet:
    """Paragraph texts by id, and the questions, in file order."""

    paragraphs: Mapping[str, str]
    questions: Sequence[CmrcQuestion]


@dataclass
class CmrcOutcome:
    """Document ranks per configuration (None: not retrieved) and the answer's scores."""

    question: CmrcQuestion
    ranks: dict[str, int | None]
    answer: str
    refused: bool
    em: float
    f1: float
    contains: float
    top: list[str] = field(default_factory=list)  # best documents of the main configuration
    # Answer length over the length of the paragraph's sentence holding the gold answer
    # (None when refused, or the gold answer is in no one sentence).
    length_ratio: float | None = None


@dataclass
class Bench:
    """An indexed benchmark corpus, ready to be asked."""

    qa: QA
    configurations: dict[str, tuple[Retriever, Mode]]
    questions: Sequence[CmrcQuestion]
    build: dict[str, Any]
    paragraphs: Mapping[str, str] = field(default_factory=dict)  # by id


def source_name(paragraph: str) -> str:
    """The corpus file name for a paragraph id."""
    return f"{paragraph}.txt"


def load_cmrc(path: Path) -> CmrcSet:
    """Read a CMRC 2018 (SQuAD-format) JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        paragraphs: dict[str, str] = {}
        questions = []
        for article in data["data"]:
            for p in article["paragraphs"]:
                paragraphs[str(p["id"])] = str(p["context"])
                for qa in p["qas"]:
                    answers = tuple(dict.fromkeys(str(a["text"]) for a in qa["answers"]))
                    questions.append(
                        CmrcQuestion(str(qa["id"]), str(qa["question"]), answers, str(p["id"]))
                    )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CmrcError(f"cannot read CMRC data from {path}: {exc}") from exc
    return CmrcSet(paragraphs, questions)


def sample(
    questions: Sequence[CmrcQuestion], n: int | None, seed: int = SEED
) -> list[CmrcQuestion]:
    """A deterministic sample of n questions in file order (all when n is None or larger)."""
    if n is None or n >= len(questions):
        return list(questions)
    keep = set(random.Random(seed).sample(range(len(questions)), n))
    return [q for i, q in enumerate(questions) if i in keep]


def corpus_for(
    cmrc: CmrcSet, questions: Sequence[CmrcQuestion], total: int | None, seed: int = SEED
) -> dict[str, str]:
    """The questions' own paragraphs plus random distractors up to `total` (None: all)."""
    if total is None:
        return dict(cmrc.paragraphs)
    needed = list(dict.fromkeys(q.paragraph for q in questions))
    others = [p for p in cmrc.paragraphs if p not in set(needed)]
    random.Random(seed).shuffle(others)
    chosen = set(needed + others[: max(0, total - len(needed))])
    return {p: text for p, text in cmrc.paragraphs.items() if p in chosen}


def write_corpus(paragraphs: Mapping[str, str], directory: Path) -> None:
    """One UTF-8 text file per paragraph, named by its id (and no other files)."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = {source_name(p): text for p, text in paragraphs.items()}
    for stale in directory.glob("*.txt"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (directory / name).write_text(text, encoding="utf-8")


@contextmanager
def open_bench(
    path: Path,
    settings: Settings,
    *,
    questions: int | None = None,
    paragraphs: int | None = None,
    workdir: Path | None = None,
) -> Iterator[Bench]:
    """Index the benchmark corpus (in workdir, reused when current; else a temp dir)."""
    from ingest.pipeline import ingest
    from service.answer.build import build_qa, embedder_for

    cmrc = load_cmrc(path)
    chosen = sample(cmrc.questions, questions)
    corpus = corpus_for(cmrc, chosen, paragraphs)
    with tempfile.TemporaryDirectory(prefix="zhice-cmrc-") as tmp:
        root = workdir or Path(tmp)
        local = settings.model_copy(
            update={"corpus_dir": root / "corpus", "index_dir": root / "index"}
        )
        write_corpus(corpus, local.corpus_dir)
        began = time.perf_counter()
        embedder = embedder_for(local)
        loaded = time.perf_counter()
        built = ingest(
            local.corpus_dir,
            local.index_dir,
            local.embedding_model,
            lambda: embedder,
            backend=local.embedding_backend,
            batch_size=local.batch_size,
        )
        build = {
            "paragraphs": built.documents,
            "chunks": built.chunks,
            "embedded": built.embedded,
            "model_load_seconds": round(loaded - began, 2),
            "index_seconds": round(built.seconds, 2),
        }
        qa = build_qa(local, embedder)
        yield Bench(qa, configurations(qa, local), chosen, build, cmrc.paragraphs)


def configurations(qa: QA, settings: Settings) -> dict[str, tuple[Retriever, Mode]]:
    """hybrid (the configured fusion), hybrid with the other fusion, dense and BM25 alone."""
    main = qa.retriever
    other: Fusion = "rrf" if settings.fusion == "zscore" else "zscore"
    alternative = Retriever(
        main.store,
        main.embedder,
        main.tokenizer,
        candidates=settings.candidates,
        rrf_k=settings.rrf_k,
        fusion=other,
    )
    return {
        "hybrid": (main, "hybrid"),
        f"hybrid-{other}": (alternative, "hybrid"),
        "dense": (main, "dense"),
        "bm25": (main, "bm25"),
    }


def document_rank(hits: Sequence[Hit], source: str) -> int | None:
    """1-based rank of `source` among the distinct documents of the hits, or None."""
    seen: list[str] = []
    for hit in hits:
        if hit.chunk.source == source:
            return len(seen) + 1
        if hit.chunk.source not in seen:
            seen.append(hit.chunk.source)
    return None


def ask(bench: Bench, q: CmrcQuestion) -> CmrcOutcome:
    """Retrieve with every configuration (the question is embedded once) and answer."""
    prepared = bench.qa.retriever.prepare(q.question, "hybrid")
    ranks: dict[str, int | None] = {}
    hybrid: list[Hit] = []
    for name, (retriever, mode) in bench.configurations.items():
        hits = retriever.search(prepared, CHUNKS, None, mode)
        ranks[name] = document_rank(hits, q.source)
        if name == "hybrid":
            hybrid = hits
    answer = bench.qa.composer.compose(q.question, prepared.tokens, hybrid[:ANSWER_PASSAGES])
    text = "" if answer.refused else strip_markers(answer.text)
    top = list(dict.fromkeys(h.chunk.source for h in hybrid))[:5]
    gold = gold_sentence(bench.paragraphs.get(q.paragraph, ""), q.answers)
    return CmrcOutcome(
        question=q,
        ranks=ranks,
        answer=answer.text,
        refused=answer.refused,
        em=exact_match(text, q.answers),
        f1=f1(text, q.answers),
        contains=contains(text, q.answers),
        top=top,
        length_ratio=round(len(text) / len(gold), 3) if text and gold else None,
    )


def gold_sentence(paragraph: str, answers: Sequence[str]) -> str | None:
    """The first sentence of the paragraph that holds a gold answer, or None."""
    for start, end in sentence_spans(paragraph):
        if any(a and a in paragraph[start:end] for a in answers):
            return paragraph[start:end]
    return None


def run(bench: Bench, on_progress: Callable[[], None] | None = None) -> list[CmrcOutcome]:
    """Ask every benchmark question."""
    outcomes = []
    for q in bench.questions:
        outcomes.append(ask(bench, q))
        if on_progress:
            on_progress()
    return outcomes


def retrieval_metrics(ranks: Sequence[int | None]) -> dict[str, float]:
    """R@k (the paragraph among the top k documents) and MRR@10."""
    out = {f"R@{k}": _mean(r is not None and r <= k for r in ranks) for k in KS}
    out["MRR@10"] = _mean(1 / r if r is not None and r <= 10 else 0.0 for r in ranks)
    return out


def summarise(outcomes: Sequence[CmrcOutcome]) -> dict[str, Any]:
    """Retrieval figures per configuration and answer figures of the main one."""
    names = list(outcomes[0].ranks) if outcomes else []
    answered = [o for o in outcomes if not o.refused]
    return {
        "questions": len(outcomes),
        "retrieval": {n: retrieval_metrics([o.ranks[n] for o in outcomes]) for n in names},
        "answers": {
            "EM": _mean(o.em for o in outcomes),
            "F1": _mean(o.f1 for o in outcomes),
            "contains_gold": _mean(o.contains for o in outcomes),
            "refused": _mean(o.refused for o in outcomes),
            "EM_answered": _mean(o.em for o in answered),
            "F1_answered": _mean(o.f1 for o in answered),
            "median_length_ratio": _median(
                [o.length_ratio for o in outcomes if o.length_ratio is not None]
            ),
        },
    }


def misses(outcomes: Sequence[CmrcOutcome], k: int = 1) -> list[dict[str, Any]]:
    """Questions whose paragraph the main configuration did not rank within the top k."""
    return [
        {
            "id": o.question.id,
            "question": o.question.question,
            "paragraph": o.question.paragraph,
            "ranks": o.ranks,
            "top": o.top,
            "answer": o.answer,
        }
        for o in outcomes
        if o.ranks.get("hybrid") is None or (o.ranks["hybrid"] or 0) > k
    ]


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return round((ordered[middle - 1] + ordered[middle]) / 2, 3)


def _mean(values: Any) -> float:
    items = [float(v) for v in values]
    return round(sum(items) / len(items), 4) if items else 0.0
