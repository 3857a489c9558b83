"""The tokeniser's dictionaries are built for the corpus: every entry occurs in it.

A word the reports never use cannot help match them; such an entry exists only for
some question, which is tuning to that question (paraphrases are the model's job).
"""

from __future__ import annotations

from importlib import resources

import pytest

from ingest.text import normalize
from tests.conftest import CORPUS

DATA = resources.files("ingest").joinpath("data")


def _entries(name: str) -> list[str]:
    lines = DATA.joinpath(name).read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def corpus_text() -> str:
    return normalize("\n".join(p.read_text(encoding="utf-8") for p in CORPUS.glob("*.txt")))


def test_userdict_words_occur_in_the_corpus(corpus_text: str) -> None:
    absent = [line.split()[0] for line in _entries("userdict.txt")]
    absent = [w for w in absent if normalize(w) not in corpus_text]
    assert not absent, f"userdict words the reports never use: {absent}"


def test_synonym_words_occur_in_the_corpus(corpus_text: str) -> None:
    absent = [w for line in _entries("synonyms.txt") for w in line.split()]
    absent = [w for w in absent if normalize(w) not in corpus_text]
    assert not absent, f"synonyms the reports never use: {absent}"
