"""Scorers of the quality loop: answers, extracted records, retrieval. Plain functions on JSON.

One module so that `qfleet eval`, the dataset export and the benchmarks (ops/bench) score the
same way: an answer by exact and normalised match, an extracted object by field accuracy and
exact-record rate, a retrieval-augmented answer also by hit@k and stale citations.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# ASCII and Unicode punctuation, including the full-width marks Chinese text uses.
_PUNCT = set(string.punctuation) | set("，。！？；：、“”‘’（）《》【】…—·")


def normalize(text: str) -> str:
    """Lower case, NFKC, no punctuation, no English articles, single spaces (SQuAD style)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(
        " " if ch in _PUNCT or unicodedata.category(ch).startswith("P") else ch for ch in text
    )
    return " ".join(_ARTICLES.sub(" ", text).split())


def language(text: str) -> str:
    """`zh` when a good share of the letters are CJK ideographs, else `en` (a slice label)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    return "zh" if len(_CJK.findall(text)) / len(letters) >= 0.3 else "en"


def answer_scores(expected: str, got: str) -> dict[str, float]:
    """exact, normalised, and contains (the normalised expected answer inside the output)."""
    want, have = normalize(expected), normalize(got)
    return {
        "exact": float(expected.strip() == got.strip()),
        "normalized": float(want == have),
        # Chinese has no spaces between words: a plain substring there, whole words elsewhere.
        "contains": float(
            bool(want)
            and (want in have if _CJK.search(want + have) else f" {want} " in f" {have} ")
        ),
    }


def _same(expected: Any, got: Any) -> bool:
    if isinstance(expected, str) and isinstance(got, str):
        return normalize(expected) == normalize(got)
    if isinstance(expected, bool) or isinstance(got, bool):
        return expected is got
    if isinstance(expected, int | float) and isinstance(got, int | float):
        return float(expected) == float(got)
    if isinstance(expected, list) and isinstance(got, list):
        pairs = zip(expected, got, strict=False)
        return len(expected) == len(got) and all(_same(e, g) for e, g in pairs)
    if isinstance(expected, dict) and isinstance(got, dict):
        return set(expected) == set(got) and all(_same(v, got[k]) for k, v in expected.items())
    return bool(expected == got)


def field_scores(expected: dict[str, Any], got: dict[str, Any] | None) -> dict[str, float]:
    """Field accuracy (share of expected fields with the same value) and exact record (all)."""
    if not expected:
        return {"field_accuracy": float(got == {}), "exact_record": float(got == {})}
    have = got or {}
    right = sum(name in have and _same(value, have[name]) for name, value in expected.items())
    extra = set(have) - set(expected)
    return {
        "field_accuracy": right / len(expected),
        "exact_record": float(right == len(expected) and not extra),
    }


def retrieval_scores(
    expected_sources: list[dict[str, Any]], cited: list[dict[str, Any]], k: int
) -> dict[str, float]:
    """hit@k (an expected source among the first k cited) and stale citations.

    A stale citation is a cited passage of an expected source at a version other than the
    expected one: the answer was given from an outdated (or not yet released) document.
    """
    want = {s["source_url"]: str(s.get("version", "")) for s in expected_sources}
    top = cited[:k]
    hit = any(s.get("source_url") in want for s in top)
    stale = sum(
        1
        for s in cited
        if s.get("source_url") in want
        and want[s["source_url"]]
        and str(s.get("version")) != want[s["source_url"]]
    )
    return {"hit_at_k": float(hit), "stale_citations": float(stale)}


def passages_contain(answer: str, passages: list[str]) -> bool:
    """Whether the normalised answer occurs in any normalised passage (knowledge-gap check)."""
    want = normalize(answer)
    return bool(want) and any(want in normalize(p) for p in passages)


# How answers say they do not know (English and Chinese), matched on the normalised text.
_ABSTENTIONS = (
    "i don t know",
    "i do not know",
    "cannot answer",
    "can t answer",
    "not mentioned",
    "no information",
    "not provided",
    "does not contain",
    "doesn t contain",
    "not in the reference",
    "不知道",
    "无法回答",
    "没有提到",
    "未提及",
    "没有相关信息",
    "没有提供",
)


def abstained(text: str) -> bool:
    """Whether an answer declines to answer (a heuristic on common phrasings)."""
    have = normalize(text).replace("’", " ")
    return any(phrase in have for phrase in _ABSTENTIONS)


def best_answer_scores(expected: list[str], got: str) -> dict[str, float]:
    """`answer_scores` against the best of several accepted answers."""
    rows = [answer_scores(want, got) for want in expected] or [answer_scores("", got)]
    return {key: max(row[key] for row in rows) for key in rows[0]}


_MARKER = re.compile(r"\[(\d{1,3})\]")


def citation_scores(text: str, passages: int) -> dict[str, float]:
    """Citation markers of a retrieval-augmented answer.

    `invalid_markers` counts `[n]` markers outside the `passages` the answer was given;
    `marker_only` is 1 when the answer is nothing but markers (`[1]`), a failure seen often
    with small models.
    """
    markers = [int(m) for m in _MARKER.findall(text)]
    rest = normalize(_MARKER.sub(" ", text))
    return {
        "invalid_markers": float(sum(not 1 <= m <= passages for m in markers)),
        "marker_only": float(bool(markers) and not rest),
    }
