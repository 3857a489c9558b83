"""Which sentence answers the question? A fitted logistic model over sentence features.

The composer reads the sentences (and table rows) of the best passages; each is
described by a few features of how it relates to the question, and the model fitted by
`zhice fit` on CMRC 2018 *trial* questions (the sentence holding the gold span against
its neighbours) and the dev split (the sentence holding the gold keywords) turns them
into the probability that this sentence answers. The composer quotes the most probable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from service.answer.logistic import Logistic, read_parameters

PARAMETERS = "selection.json"
FRAGMENT_CHARS = 12


@dataclass(frozen=True)
class Clues:
    """How one candidate sentence relates to the question."""

    coverage: float  # idf-weighted share of question terms in title, context and sentence
    sentence_coverage: float  # the same in the sentence alone
    bigrams: float  # share of the question's character pairs found in the sentence
    passage: float  # 1 / rank of the sentence's passage among those read
    document: float  # 1 / rank of its document among the documents of the passages read
    anchors: float  # share of the question's anchors (places, names, years) present
    typed: float  # 1 when it holds the kind of answer asked (an amount, a date), or none asked
    focus: float  # 1 when it names what a "how much" question measures, or nothing measured
    fragment: float  # 1 for a scrap shorter than FRAGMENT_CHARS characters
    length: float  # log of its length in characters
    open_end: float  # 1 when it stops without a sentence end (a lead-in like "……看来，")
    table_row: float  # 1 for a table row
    contrast: float  # coverage with each term weighed also by how few sentences read hold it
    below_best: float  # how far its coverage falls short of the best sentence read
    contrast_share: float  # its contrast over the best sentence's
    # The same share as sentence_coverage, over the question's terms its document's
    # opening lacks: what the question asks beyond the subject the document is about.
    beyond_opening: float

    def vector(self) -> list[float]:
        """The features in declaration order."""
        return [float(getattr(self, name)) for name in CLUE_NAMES]


CLUE_NAMES = tuple(f.name for f in fields(Clues))


def length_feature(characters: int) -> float:
    """The `length` clue of a sentence of this many characters."""
    return math.log(max(characters, 1))


def load_selector(path: Path | None = None) -> Logistic:
    """The sentence model from `path`, or the bundled one."""
    return Logistic.from_dict(read_parameters(PARAMETERS, path), CLUE_NAMES)
