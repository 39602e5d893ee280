"""The sparse lexical signal: BM25-style term weights over a CJK-aware tokenization.

all-MiniLM-L6-v2 maps most Chinese characters to [UNK], so dense vectors alone cannot find
Chinese passages. Lexical matching can: CJK runs become overlapping character bigrams (as
Lucene's CJKAnalyzer does: no dictionary, no segmenter), latin text becomes lowercased words.
Qdrant multiplies each query term by its IDF (`Modifier.IDF`), so documents store only the
term-frequency half of BM25 and queries store 1 per term.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass

# BM25's usual constants. Qdrant does not know each document's length relative to the corpus
# average at ingest, so a fixed average (tokens of a typical chunk) stands in for it.
BM25_K1 = 1.2
BM25_B = 0.75
AVERAGE_DOCUMENT_TERMS = 160

_CJK = (
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
)
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")
# "4.2" and "4.3" share both their words ("4", "2"/"3"), so release notes of neighbouring
# versions tie; a dotted number is also kept whole as a term of its own.
_DOTTED_NUMBER = re.compile(r"\d+(?:\.\d+)+")
# Words so frequent they only add noise (IDF would shrink them, but they still cost postings).
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "do",
        "does",
        "can",
        "you",
        "your",
    ]
)


@dataclass(frozen=True)
class SparseVector:
    """Term ids (stable hashes) and their weights, ids ascending."""

    indices: list[int]
    values: list[float]


def terms(text: str) -> list[str]:
    """The lexical terms of `text`: CJK bigrams (a lone CJK character stays a unigram) and words."""
    out: list[str] = []
    for match in _TOKEN.finditer(text.lower()):
        token = match.group()
        if _CJK_RUN.match(token):
            out.extend([token] if len(token) == 1 else _bigrams(token))
        elif token not in _STOPWORDS:
            out.append(token)
    out.extend(_DOTTED_NUMBER.findall(text))
    return out


def document_vector(text: str) -> SparseVector:
    """BM25 term-frequency weights of a passage (IDF is applied by Qdrant at query time)."""
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = BM25_K1 * (1 - BM25_B + BM25_B * length / AVERAGE_DOCUMENT_TERMS)
    weights = {term_id(t): tf * (BM25_K1 + 1) / (tf + norm) for t, tf in counts.items()}
    return _sorted(weights)


def query_vector(text: str) -> SparseVector:
    """One unit per distinct query term: the score is then the sum of matched terms' BM25."""
    return _sorted({term_id(t): 1.0 for t in set(terms(text))})


def term_id(term: str) -> int:
    """A stable 31-bit id for `term` (crc32: same in every process, unlike `hash`)."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def _bigrams(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)]


def _sorted(weights: dict[int, float]) -> SparseVector:
    # Two terms may share a crc32 id; the dict already merged them (a rare, harmless collision).
    ids = sorted(weights)
    return SparseVector(indices=ids, values=[float(weights[i]) for i in ids])
