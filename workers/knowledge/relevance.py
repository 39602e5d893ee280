"""How relevant a passage is to a query, on a scale that is comparable across queries.

The fused retrieval score is rank-based (reciprocal rank fusion): the best passage of any query
scores alike, relevant or not, so it cannot tell "the knowledge base holds no answer". The
relevance floor needs an absolute measure. Two are at hand without another model:

* the dense cosine between query and passage, meaningful when the embedder reads the whole
  query (all-MiniLM-L6-v2 reads English; for Chinese its cosine is noise between [UNK]s);
* the lexical coverage: the share of the query's distinct terms (CJK bigrams, latin words with a
  plural `s` folded) that the passage contains.

A passage's relevance is the larger of the two (the cosine only counts when the query is fully
readable), in 0-1.
"""

from __future__ import annotations

from qfleet.workers.knowledge.lexical import terms


def _folded(text: str) -> set[str]:
    # "passwords" should cover "password": fold a plural `s` on latin words of 4+ letters.
    return {t[:-1] if len(t) > 3 and t.isascii() and t.endswith("s") else t for t in terms(text)}


def lexical_coverage(query: str, passage: str) -> float:
    """Share of the query's distinct terms that appear in `passage` (0 for a query of none)."""
    wanted = _folded(query)
    if not wanted:
        return 0.0
    return len(wanted & _folded(passage)) / len(wanted)


def relevance(cosine: float | None, coverage: float) -> float:
    """The passage's relevance: the cosine (when it is meaningful, else None) or the coverage."""
    return max(0.0, min(1.0, max(cosine if cosine is not None else 0.0, coverage)))
