"""Chinese tokenisation for BM25 and keyword matching (the one owner of jieba)."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from importlib.resources import files
from typing import Any

from ingest.text import normalize

_DATA = files("ingest") / "data"
# Words that pin a question to something specific: a place, an organisation, a Latin
# name (GPT, Sora), a year or version, an ordinal (第四批). If the reports do not
# mention the anchor, they cannot answer the question.
_PLACE_SUFFIX = re.compile(r"^(.+?)(省|市|自治区|特别行政区)$")
_NUMBER = re.compile(r"^(\d{2,}|\d+\.\d+)$")
ORDINAL = re.compile(r"第[一二三四五六七八九十\d]+[批代届期大条项次]")
_LATIN = re.compile(r"^[a-z][a-z0-9.\-]+$")
_MODEL_NAME = re.compile(r"[a-z]+-?\d+(?:\.\d+)?[a-z]*")
# jieba's part-of-speech tags for names: people, places, organisations, other proper
# nouns, abbreviations (欧盟) and Latin words.
_NAME_TAGS = frozenset({"nr", "nrt", "ns", "nt", "nz", "j", "eng"})


class Tokenizer:
    """jieba in search mode with the domain user dictionary and filler stop-words."""

    def __init__(self) -> None:
        import jieba

        logging.getLogger("jieba").setLevel(logging.WARNING)
        jieba.setLogLevel(logging.WARNING)
        self._jieba: Any = jieba.Tokenizer()
        self._lock = threading.Lock()
        self._tagger: Any = None  # jieba.posseg over the same dictionary, made on first use
        with _DATA.joinpath("userdict.txt").open("r", encoding="utf-8") as userdict:
            self._jieba.load_userdict(userdict)
        text = _DATA.joinpath("stopwords.txt").read_text(encoding="utf-8")
        self.stopwords = frozenset(word.strip() for word in text.splitlines() if word.strip())
        places = _DATA.joinpath("places.txt").read_text(encoding="utf-8")
        self.places = tuple(
            w for line in places.splitlines() for w in line.split("#", 1)[0].split()
        )
        self.synonyms = _read_synonyms(_DATA.joinpath("synonyms.txt").read_text(encoding="utf-8"))

    def tokenize(self, text: str) -> list[str]:
        """Search-mode tokens of normalised text, without stop-words and punctuation."""
        with self._lock:  # jieba's lazy initialisation is not thread-safe
            words = self._jieba.cut_for_search(normalize(text))
            return [w for w in words if w.strip() and _is_word(w) and w not in self.stopwords]

    def words(self, text: str) -> list[str]:
        """jieba's precise-mode words of text as given: together they are the text."""
        with self._lock:
            return list(self._jieba.cut(text))

    def anchors(self, text: str) -> list[str]:
        """Specific words of a question: places, Latin names, years and versions, ordinals."""
        plain = normalize(text)
        words = [w.strip() for w in self.words(plain)]
        out = _MODEL_NAME.findall(plain) + ORDINAL.findall(plain)
        for word in words:
            if word in self.stopwords or word in out:
                continue
            # Short Latin words (AI, CTO, API) are too often written out in Chinese.
            latin = _LATIN.match(word) and len(word) >= 4
            if _NUMBER.match(word) or latin:
                out.append(word)
        # Places by gazetteer: 北京市 and 北京 are one anchor, matched by its short form.
        out.extend(place for place in self.places_in(text) if place not in out)
        return out

    def names(self, text: str) -> list[str]:
        """Proper nouns of a question by jieba's part-of-speech tags (寒武纪, 欧盟, H100)."""
        plain = normalize(text)
        with self._lock:
            if self._tagger is None:
                import jieba.posseg

                self._tagger = jieba.posseg.POSTokenizer(self._jieba)
            pairs = [(p.word.strip(), p.flag) for p in self._tagger.cut(plain)]
        return [
            w for w, flag in pairs if flag in _NAME_TAGS and len(w) >= 2 and w not in self.stopwords
        ]

    def places_in(self, text: str) -> list[str]:
        """The gazetteer's places that text names, in gazetteer order."""
        return [place for place in self.places if place in text]

    def expand(self, tokens: list[str]) -> list[str]:
        """Tokens plus their synonyms (计算能力 → 算力), each once, originals first."""
        out = list(dict.fromkeys(tokens))
        seen = set(out)
        for token in tokens:
            for synonym in self.synonyms.get(token, ()):
                if synonym not in seen:
                    seen.add(synonym)
                    out.append(synonym)
        return out


def fingerprint() -> str:
    """A hash of the dictionaries: an index tokenised with other ones is stale."""
    digest = hashlib.sha256()
    for name in ("userdict.txt", "stopwords.txt", "synonyms.txt", "places.txt"):
        digest.update(_DATA.joinpath(name).read_bytes())
    return digest.hexdigest()[:16]


def _read_synonyms(text: str) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for line in text.splitlines():
        words = [normalize(w) for w in line.split("#", 1)[0].split()]
        for word in words:
            groups[word] = groups.get(word, ()) + tuple(w for w in words if w != word)
    return groups


def _is_word(token: str) -> bool:
    return any(ch.isalnum() for ch in token)
