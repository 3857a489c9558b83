from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from service.answer.faq import FAQ, read_entries
from service.errors import FAQError
from tests.fakes import HashEmbedder

ENTRIES = [
    {
        "id": "suanliquan",
        "question": "如何申请算力券？",
        "answer": "请登录市经信局网站提交申请。",
        "paraphrases": ["算力券怎么申请"],
    },
    {"question": "知识库多久更新一次？", "answer": "每月更新一次。"},
]


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), "utf-8")
    return path


def test_reads_jsonl_and_csv(tmp_path: Path) -> None:
    entries = read_entries(_write(tmp_path / "faq.jsonl", ENTRIES))
    assert [e.id for e in entries] == ["suanliquan", "2"]
    assert entries[0].paraphrases == ("算力券怎么申请",)
    csv_path = tmp_path / "faq.csv"
    csv_path.write_text(
        "question,answer,paraphrases\n如何申请算力券？,请登录网站。,怎么申请|申请流程\n"
    )
    assert read_entries(csv_path)[0].paraphrases == ("怎么申请", "申请流程")


@pytest.mark.parametrize(
    "content", ['{"question": "问"}', "not json", '["a list"]', '{"question": "", "answer": "x"}']
)
def test_bad_entries_are_reported(tmp_path: Path, content: str) -> None:
    path = tmp_path / "faq.jsonl"
    path.write_text(content, "utf-8")
    with pytest.raises(FAQError):
        read_entries(path)


def test_matches_question_and_listed_paraphrases_only(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    faq = FAQ(_write(tmp_path / "faq.jsonl", ENTRIES), embedder, threshold=0.99)
    for question in ("如何申请算力券？", "算力券怎么申请"):
        match = faq.match(question, embedder.embed_query(question))
        assert match is not None and match.entry.id == "suanliquan"
    assert (
        faq.match(
            "国务院哪份文件提出大模型客服？", embedder.embed_query("国务院哪份文件提出大模型客服？")
        )
        is None
    )


def test_reloads_when_the_file_changes(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    path = _write(tmp_path / "faq.jsonl", ENTRIES[:1])
    faq = FAQ(path, embedder, threshold=0.99)
    assert faq.match("知识库多久更新一次？", embedder.embed_query("知识库多久更新一次？")) is None
    _write(path, ENTRIES)
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    match = faq.match("知识库多久更新一次？", embedder.embed_query("知识库多久更新一次？"))
    assert match is not None and match.entry.answer == "每月更新一次。"


def test_missing_file_means_no_entries(tmp_path: Path) -> None:
    faq = FAQ(tmp_path / "none.jsonl", HashEmbedder(), threshold=0.5)
    assert faq.match("算力券", HashEmbedder().embed_query("算力券")) is None


def test_a_question_of_another_form_or_subject_is_not_matched(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    faq = FAQ(
        _write(tmp_path / "faq.jsonl", ENTRIES), embedder, 0.0, lambda q: ["北京"] * ("北京" in q)
    )
    match = faq.match("如何申请算力券？", embedder.embed_query("如何申请算力券？"))
    assert match is not None and match.entry.id == "suanliquan"
    # Everything passes the threshold of 0, yet no entry mentions 北京.
    assert faq.match("北京的算力券", embedder.embed_query("北京的算力券")) is None
    # Nor does an entry answer a question of another form about the same thing.
    assert faq.match("算力券是什么？", embedder.embed_query("算力券是什么？")) is None
    positives, negatives = faq.scores(["北京的算力券", "知识库多久更新？"])
    assert len(positives) == 2 and negatives[0] == 0.0 and negatives[1] > 0.0


def test_a_broken_edit_keeps_the_previous_entries(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    path = _write(tmp_path / "faq.jsonl", ENTRIES)
    faq = FAQ(path, embedder, threshold=0.99)
    path.write_text('{"question": "没有答案"}\n', encoding="utf-8")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    match = faq.match("如何申请算力券？", embedder.embed_query("如何申请算力券？"))
    assert match is not None and match.entry.id == "suanliquan"
    with pytest.raises(FAQError):  # at start-up, a broken file is an error
        FAQ(path, embedder, threshold=0.99)
