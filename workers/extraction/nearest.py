"""The document's own spelling of a copy the model misspelt by a character or two.

A small model copying a name sometimes drops or adds a character (`上海经信委` for `上海市经信委`,
`北京市嘉禾…` for `北京嘉禾…`). When the copy does not occur in the document but exactly one
passage of it is within a small edit distance, that passage is what the model meant to copy.
"""

from __future__ import annotations

import unicodedata

# Edits allowed: one under 12 characters, then one per 12 (a longer copy may slip more).
_CHARS_PER_EDIT = 12
_MIN_CHARS = 4


def allowed_edits(length: int) -> int:
    """How many edits a copy of `length` characters may be from the passage it copied."""
    return max(1, length // _CHARS_PER_EDIT)


def _distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance of `a` and `b`, or `limit + 1` once it is over `limit`."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, char in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char != other))
            )
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _edge(text: str, n: int) -> bool:
    """Whether a passage may start (or end) at `n`: not inside a word of Latin letters/digits."""
    if n <= 0 or n >= len(text):
        return True
    left, right = text[n - 1], text[n]
    return not (left.isascii() and left.isalnum() and right.isascii() and right.isalnum())


def _starts(value: str, doc: str, limit: int) -> set[int]:
    """Where a passage within `limit` edits of `value` may start: one of limit+1 pieces is exact."""
    size = max(len(value) // (limit + 1), 1)
    starts: set[int] = set()
    for offset in range(0, len(value) - size + 1, size):
        piece = value[offset : offset + size]
        at = doc.find(piece)
        while at >= 0:
            starts.update(range(max(at - offset - limit, 0), at - offset + limit + 1))
            at = doc.find(piece, at + 1)
    return starts


def nearest_passage(value: str, document: str) -> str | None:
    """The one passage of `document` within a few edits of `value`, when `value` is not in it.

    None when `value` occurs as it is, is short, or no passage (or more than one) is that close.
    """
    text = unicodedata.normalize("NFKC", document)
    folded = text.casefold()
    want = unicodedata.normalize("NFKC", value).strip().casefold()
    if len(want) < _MIN_CHARS or want in folded:
        return None
    limit = allowed_edits(len(want))
    best: dict[str, int] = {}
    for start in _starts(want, folded, limit):
        if not _edge(folded, start):
            continue
        for length in range(len(want) - limit, len(want) + limit + 1):
            end = start + length
            if end > len(folded) or not _edge(folded, end):
                continue
            passage = text[start:end]
            if passage.strip() != passage:
                continue
            distance = _distance(want, folded[start:end], limit)
            if distance <= limit:
                best[passage] = min(distance, best.get(passage, distance))
    if not best:
        return None
    closest = min(best.values())
    found = {p.casefold() for p, d in best.items() if d == closest}
    if len(found) != 1:
        return None
    return next(p for p, d in best.items() if d == closest)
