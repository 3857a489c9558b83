"""Validate the hand-made evaluation question set in eval/dev.jsonl."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Each split's file and the prefix of its ids (q001…, t001…).
SPLITS = {"dev": "q", "test": "t"}
CORPUS_DIR = ROOT / "corpus"

REQUIRED_FIELDS = {
    "id": str,
    "question": str,
    "type": str,
    "answer": str,
    "evidence": list,
    "keywords": list,
}
ALLOWED_TYPES = {"fact", "table", "number", "multi", "unanswerable"}
MIN_QUESTIONS = {"dev": 100, "test": 120}
MIN_UNANSWERABLE = {"dev": 15, "test": 35}
MIN_MULTI = {"dev": 10, "test": 20}


def _path(split: str) -> Path:
    return ROOT / "eval" / f"{split}.jsonl"


def _load_lines(split: str) -> list[str]:
    return [line for line in _path(split).read_text(encoding="utf-8").splitlines() if line.strip()]


def _load_rows() -> list[dict]:
    return [
        {**json.loads(line), "split": split}
        for split in SPLITS
        if _path(split).exists()
        for line in _load_lines(split)
    ]


def _corpus_files() -> list[str]:
    return sorted(p.name for p in CORPUS_DIR.glob("*.txt"))


def _corpus_text(name: str) -> str:
    return (CORPUS_DIR / name).read_text(encoding="utf-8")


def _sources(row: dict) -> list[str]:
    src = row.get("source")
    if src is None:
        return []
    if isinstance(src, str):
        return [src]
    return list(src)


ROWS = _load_rows()
ANSWERABLE = [r for r in ROWS if r.get("type") != "unanswerable"]


@pytest.mark.parametrize("split", SPLITS)
def test_file_exists(split: str) -> None:
    assert _path(split).is_file(), f"missing {_path(split)}"


@pytest.mark.parametrize("split", SPLITS)
def test_every_line_parses(split: str) -> None:
    for n, line in enumerate(_load_lines(split), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - failure path
            pytest.fail(f"line {n} is not valid JSON: {exc}")
        assert isinstance(obj, dict), f"line {n} is not a JSON object"


def _required_fields_and_types(row: dict) -> None:
    for field, typ in REQUIRED_FIELDS.items():
        assert field in row, f"{row.get('id')}: missing field {field!r}"
        assert isinstance(row[field], typ), f"{row.get('id')}: {field!r} must be {typ.__name__}"
    assert "source" in row, f"{row['id']}: missing field 'source'"
    src = row["source"]
    assert (
        src is None
        or isinstance(src, str)
        or (isinstance(src, list) and src and all(isinstance(s, str) for s in src))
    ), f"{row['id']}: bad source {src!r}"
    assert row["question"].strip(), f"{row['id']}: empty question"
    assert all(isinstance(e, str) and e for e in row["evidence"]), f"{row['id']}: bad evidence"
    assert all(isinstance(k, str) and k for k in row["keywords"]), f"{row['id']}: bad keywords"
    assert row["type"] in ALLOWED_TYPES, f"{row['id']}: bad type {row['type']!r}"


@pytest.mark.parametrize(("split", "prefix"), SPLITS.items())
def test_ids_unique_and_sequential(split: str, prefix: str) -> None:
    ids = [r["id"] for r in ROWS if r["split"] == split]
    dupes = [i for i, c in Counter(ids).items() if c > 1]
    assert not dupes, f"duplicate ids: {dupes}"
    assert ids == [f"{prefix}{i:03d}" for i in range(1, len(ids) + 1)], (
        f"ids must be {prefix}001, {prefix}002, ... in order"
    )


@pytest.mark.parametrize("split", SPLITS)
def test_questions_unique(split: str) -> None:
    # A follow-up ("北京呢？") may recur after a different conversation.
    rows = [r for r in ROWS if r["split"] == split]
    questions = [(r["question"].strip(), json.dumps(r.get("history", []))) for r in rows]
    dupes = [q for q, c in Counter(questions).items() if c > 1]
    assert not dupes, f"duplicate questions: {dupes}"


def _every_row(split: str, rows: list[dict], check: Callable[[dict], None]) -> None:
    """Run a row check on every row of a split; fail once, listing every failing row."""
    problems = []
    for row in rows:
        if row["split"] != split:
            continue
        try:
            check(row)
        except AssertionError as exc:
            problems.append(str(exc).splitlines()[0])
    assert not problems, "\n".join(problems)


MULTI_TURN = [r for r in ROWS if "history" in r]
MULTI_TURN_IDS = [f"{r['split']}:{r.get('id')}" for r in MULTI_TURN]


@pytest.mark.parametrize("row", MULTI_TURN, ids=MULTI_TURN_IDS)
def test_history_is_a_conversation(row: dict) -> None:
    history = row["history"]
    assert isinstance(history, list) and history, f"{row['id']}: history must be a non-empty list"
    for turn in history:
        assert isinstance(turn, dict) and set(turn) == {"role", "content"}, (
            f"{row['id']}: each turn is {{'role', 'content'}}, got {turn!r}"
        )
        assert turn["role"] in {"user", "assistant"}, f"{row['id']}: bad role {turn['role']!r}"
        assert isinstance(turn["content"], str) and turn["content"].strip(), (
            f"{row['id']}: empty turn"
        )
    roles = [t["role"] for t in history]
    assert roles[0] == "user", f"{row['id']}: history must open with the user"
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), (
        f"{row['id']}: turns must alternate user/assistant"
    )


def test_enough_multi_turn_cases() -> None:
    answerable = [r for r in MULTI_TURN if r["type"] != "unanswerable"]
    assert len(answerable) >= 10, f"only {len(answerable)} answerable multi-turn questions"


def _unanswerable_consistency(row: dict) -> None:
    if row["type"] == "unanswerable":
        assert row["source"] is None, f"{row['id']}: unanswerable must have source null"
        assert row["evidence"] == [], f"{row['id']}: unanswerable must have no evidence"
        assert row["keywords"] == [], f"{row['id']}: unanswerable must have no keywords"
        assert row["answer"] == "", f"{row['id']}: unanswerable must have empty answer"
    else:
        assert row["source"] is not None, f"{row['id']}: answerable question needs a source"
        assert row["evidence"], f"{row['id']}: answerable question needs evidence"
        assert row["keywords"], f"{row['id']}: answerable question needs keywords"
        assert row["answer"].strip(), f"{row['id']}: answerable question needs an answer"


def _sources_exist(row: dict) -> None:
    for name in _sources(row):
        assert (CORPUS_DIR / name).is_file(), f"{row['id']}: source {name} not in corpus/"


def _evidence_verbatim(row: dict) -> None:
    texts = [_corpus_text(n) for n in _sources(row) if (CORPUS_DIR / n).is_file()]
    for ev in row["evidence"]:
        assert any(ev in t for t in texts), f"{row['id']}: evidence not found verbatim: {ev!r}"


def _keywords_in_source(row: dict) -> None:
    joined = "\n".join(_corpus_text(n) for n in _sources(row) if (CORPUS_DIR / n).is_file())
    for kw in row["keywords"]:
        assert kw in joined, f"{row['id']}: keyword {kw!r} not in source text"


@pytest.mark.parametrize("split", SPLITS)
def test_minimum_size(split: str) -> None:
    rows = [r for r in ROWS if r["split"] == split]
    assert len(rows) >= MIN_QUESTIONS[split], f"only {len(rows)} questions"
    for kind, least in (("unanswerable", MIN_UNANSWERABLE), ("multi", MIN_MULTI)):
        n = sum(1 for r in rows if r["type"] == kind)
        assert n >= least[split], f"only {n} {kind} questions in {split}"
    present = {r["type"] for r in rows}
    assert ALLOWED_TYPES <= present, f"missing types in {split}: {ALLOWED_TYPES - present}"


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", _corpus_files())
def test_every_corpus_file_covered(split: str, name: str) -> None:
    used = {s for r in ROWS if r["split"] == split for s in _sources(r)}
    assert name in used, f"no question uses corpus file {name}"


# Row checks, each run over every row of a split (answerable rows only where it says).
ROW_CHECKS = {
    "required_fields_and_types": (ROWS, _required_fields_and_types),
    "unanswerable_consistency": (ROWS, _unanswerable_consistency),
    "sources_exist": (ANSWERABLE, _sources_exist),
    "evidence_verbatim": (ANSWERABLE, _evidence_verbatim),
    "keywords_in_source": (ANSWERABLE, _keywords_in_source),
}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("check", ROW_CHECKS)
def test_every_row(split: str, check: str) -> None:
    rows, function = ROW_CHECKS[check]
    _every_row(split, rows, function)
