"""CMRC 2018's answer metrics: exact match and F1 over mixed segmentation.

Follows the official `cmrc2018_evaluate.py`: text is lower-cased; each CJK character
is one segment while runs of other characters (Latin words, numbers) are split into
word tokens; the listed punctuation is dropped (without ending a run, as there);
F1 is computed from the longest common *contiguous* run of segments between the
prediction and a gold answer, and the best gold answer counts. NLTK's word tokenizer
is replaced by a small rule (words, numbers with decimals, single symbols), which
agrees with it on the Latin and digit runs such answers hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

# The official script's punctuation list (not all of Unicode punctuation); its "……"
# entry is two characters long and never equals a single one, so it is left out.
PUNCTUATION = frozenset("-:_*^/\\~`+=，。：？！“”；’《》·、「」（）－～『』")
_CJK = re.compile(r"[\u4e00-\u9fa5]")
_LATIN_TOKEN = re.compile(r"\w+(?:[.,']\w+)*|[^\w\s]")
_MARKER = re.compile(r"\[\d+\]")


def strip_markers(answer: str) -> str:
    """A composed answer without its `[n]` citation markers."""
    return _MARKER.sub("", answer)


def segments(text: str) -> list[str]:
    """Mixed segmentation with punctuation removed: CJK characters and Latin tokens."""
    out: list[str] = []
    run = ""
    for char in text.lower().strip():
        if char in PUNCTUATION:
            continue
        if _CJK.match(char):
            out.extend(_LATIN_TOKEN.findall(run))
            run = ""
            out.append(char)
        else:
            run += char
    out.extend(_LATIN_TOKEN.findall(run))
    return out


def remove_punctuation(text: str) -> str:
    """Lower-cased text without the official punctuation characters."""
    return "".join(ch for ch in text.lower().strip() if ch not in PUNCTUATION)


def longest_common_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest contiguous run of segments shared by a and b."""
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def f1(prediction: str, answers: Iterable[str]) -> float:
    """Best F1 of the prediction against any gold answer."""
    predicted = segments(prediction)
    best = 0.0
    for answer in answers:
        gold = segments(answer)
        common = longest_common_run(gold, predicted)
        if common:
            precision, recall = common / len(predicted), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """1.0 when the prediction equals a gold answer up to case and punctuation."""
    predicted = remove_punctuation(prediction)
    return float(any(remove_punctuation(a) == predicted for a in answers))


def contains(prediction: str, answers: Iterable[str]) -> float:
    """1.0 when some gold answer occurs in the prediction (up to case and punctuation)."""
    predicted = remove_punctuation(prediction)
    return float(any(remove_punctuation(a) and remove_punctuation(a) in predicted for a in answers))
