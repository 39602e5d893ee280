"""Token-aware chunking with overlap: each chunk fits the embedder's window, neighbours share text.

Windows are counted in the embedder's own tokens (so no chunk is silently truncated) and cut
back to a word boundary when one is near, so a chunk rarely ends inside a word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Offsets = list[tuple[int, int]]
# How far back (in tokens) a window end may move to land on a word boundary.
_BOUNDARY_SEARCH = 16


@dataclass(frozen=True)
class Chunk:
    """One passage of a document: its text and where it starts in the document."""

    index: int
    text: str
    start_char: int


def chunk_text(
    text: str,
    tokenize_offsets: Callable[[str], Offsets],
    *,
    max_tokens: int,
    overlap_tokens: int,
) -> list[Chunk]:
    """Split `text` into chunks of at most `max_tokens` tokens, `overlap_tokens` shared.

    Args:
        text: The document.
        tokenize_offsets: Character span of each token (the embedder's tokenizer).
        max_tokens: Largest chunk, in tokens (leave room for the model's special tokens).
        overlap_tokens: Tokens repeated at the start of the next chunk.
    """
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be at least 0 and below max_tokens")
    offsets = tokenize_offsets(text)
    if not offsets:
        return [Chunk(0, text.strip(), 0)] if text.strip() else []
    chunks: list[Chunk] = []
    start = 0
    while start < len(offsets):
        end = _cut(text, offsets, start, min(start + max_tokens, len(offsets)))
        first, last = offsets[start][0], offsets[end - 1][1]
        chunks.append(Chunk(len(chunks), text[first:last].strip(), first))
        if end >= len(offsets):
            break
        start = max(end - overlap_tokens, start + 1)
    return chunks


def _cut(text: str, offsets: Offsets, start: int, end: int) -> int:
    """`end`, moved back to a token that begins a word when one is close (never below start+1)."""
    if end >= len(offsets):
        return end
    for candidate in range(end, max(start + 1, end - _BOUNDARY_SEARCH), -1):
        begin = offsets[candidate][0]
        if begin == 0 or not text[begin - 1].isalnum() or not text[begin].isalnum():
            return candidate
    return end
