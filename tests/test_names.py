"""Document names: checked in bytes before any work, one normalisation (NFC) everywhere."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import httpx
import pytest

from ingest.errors import InvalidSourceError, UnsupportedFormatError
from ingest.names import MAX_SOURCE_BYTES, NAME_MAX_BYTES, source_name
from ingest.update import STAGED, stage_upload
from tests.conftest import Gated

CAFE = "Café-算力报告.txt"  # é precomposed (NFC)
CAFE_NFD = unicodedata.normalize("NFD", CAFE)


@pytest.mark.parametrize(
    "name",
    ["算力报告.txt", "2024 年 政策（修订版）.docx", "a" * (MAX_SOURCE_BYTES - 4) + ".txt"],
)
def test_plain_names_are_kept_as_they_are(name: str) -> None:
    assert source_name(name) == name


@pytest.mark.parametrize("chars", [82, 300])
def test_names_too_long_in_bytes_are_refused(chars: int) -> None:
    name = "政" * chars + ".txt"  # 82 characters: far under 255, but 250 bytes
    with pytest.raises(InvalidSourceError, match=f"{len(name.encode())} bytes in UTF-8"):
        source_name(name)


def test_the_byte_limit_leaves_room_for_temporary_names() -> None:
    longest = "政" * ((MAX_SOURCE_BYTES - 4) // 3) + ".txt"
    assert source_name(longest) == longest
    assert len(f".{longest}.XXXXXX".encode()) <= NAME_MAX_BYTES  # rsync's temporary name
    with pytest.raises(InvalidSourceError):
        source_name("政" + longest)


def test_length_is_checked_before_the_suffix() -> None:
    with pytest.raises(InvalidSourceError):
        source_name("政" * 82 + ".exe")
    with pytest.raises(UnsupportedFormatError):
        source_name("政" * 10 + ".exe")


@pytest.mark.parametrize(
    "name",
    [
        "report\u202etxt.exe.txt",  # RIGHT-TO-LEFT OVERRIDE: reads as report exe.txt
        "算力\u200b报告.txt",  # ZERO WIDTH SPACE
        "\ufeff报告.txt",  # BYTE ORDER MARK
        "报告\u2028第二行.txt",  # LINE SEPARATOR
        "报告\x00.txt",
        "报告\n.txt",
        "报告\x7f.txt",
        "报告\x85.txt",  # C1 control (NEXT LINE)
    ],
)
def test_control_and_format_characters_are_refused(name: str) -> None:
    with pytest.raises(InvalidSourceError, match="control or invisible format") as refused:
        source_name(name)
    assert "U+" in refused.value.message and refused.value.status == 400


def test_names_are_normalised_to_nfc() -> None:
    assert CAFE_NFD != CAFE and source_name(CAFE_NFD) == CAFE


def test_staged_uploads_are_never_named_from_the_document(tmp_path: Path) -> None:
    staged = stage_upload(tmp_path, b"data")
    assert STAGED.fullmatch(staged.name) and staged.read_bytes() == b"data"
    assert len(staged.name.encode()) < 50


# --- over HTTP ---------------------------------------------------------------------------


def _upload(url: str, name: str, method: str = "POST") -> httpx.Response:
    target = f"{url}/documents" if method == "POST" else f"{url}/documents/{name}"
    files = {"file": (name, "海口市提出培育50家大模型服务企业。".encode(), "text/plain")}
    return httpx.request(method, target, files=files, timeout=30)


@pytest.mark.parametrize("chars", [82, 300])
def test_long_names_get_400_before_any_embedding(gated: Gated, chars: int) -> None:
    files = sorted(os.listdir(gated.settings.corpus_dir))
    response = _upload(gated.url, "政" * chars + ".txt")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_filename" and "bytes in UTF-8" in error["message"]
    assert gated.embedder.passage_batches == 0 and not gated.embedder.holding.is_set()
    assert sorted(os.listdir(gated.settings.corpus_dir)) == files


def test_a_right_to_left_override_gets_400(gated: Gated) -> None:
    response = _upload(gated.url, "report\u202etxt.exe.txt")
    assert response.status_code == 400 and "U+202E" in response.json()["error"]["message"]


def test_every_route_sees_one_spelling_of_a_name(gated: Gated) -> None:
    gated.embedder.gate.set()
    added = _upload(gated.url, CAFE_NFD)
    assert added.status_code == 201 and added.json()["source"] == CAFE
    assert (gated.settings.corpus_dir / CAFE).exists()
    for spelling in (CAFE, CAFE_NFD):
        document = httpx.get(f"{gated.url}/documents/{spelling}", timeout=10)
        assert document.status_code == 200 and document.json()["source"] == CAFE
        search = {"query": "大模型服务企业", "filters": {"source": [spelling]}}
        hits = httpx.post(f"{gated.url}/search", json=search, timeout=10).json()["passages"]
        assert hits and {h["source"] for h in hits} == {CAFE}
    assert _upload(gated.url, CAFE_NFD, "PUT").status_code == 200
    removed = httpx.delete(f"{gated.url}/documents/{CAFE_NFD}", timeout=30)
    assert removed.status_code == 200 and removed.json()["source"] == CAFE
    assert httpx.get(f"{gated.url}/documents/{CAFE}", timeout=10).status_code == 404
