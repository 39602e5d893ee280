"""The evidence an answer shows: its `[n]` markers checked against the passages it was given,
and whether it says the knowledge base does not hold the answer.
"""

from __future__ import annotations

import re

from qfleet.tasks.knowledge import Passage
from qfleet.tasks.retrieval import Citation

# [1], [1, 2], [1][3], and the full-width 【1】 a model writes in Chinese text.
_MARKER = re.compile(r"[\[【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]】]")
# What the prompt asks the model to reply when no passage answers the question.
_ABSTAINS = re.compile(r"^\W*(?:i\s+(?:do\s+not|don[’']?t)\s+know|我?不知道)", re.IGNORECASE)
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")

ABSTAIN_EN = "I don't know: no passage in the knowledge base is relevant to this question."
ABSTAIN_ZH = "我不知道：知识库中没有与这个问题相关的资料。"


def cited_numbers(text: str) -> list[int]:
    """The passage numbers `text` cites, in order of first appearance."""
    numbers: list[int] = []
    for match in _MARKER.finditer(text):
        for part in re.split(r"[,，、]", match.group(1)):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def check_citations(text: str, passages: list[Passage]) -> list[Citation]:
    """Each cited number, valid when it names one of `passages` (numbered from 1)."""
    citations = []
    for number in cited_numbers(text):
        if 1 <= number <= len(passages):
            passage = passages[number - 1]
            citations.append(
                Citation(
                    number=number,
                    valid=True,
                    source_url=passage.source_url,
                    version=passage.version,
                    chunk_id=passage.chunk_id,
                )
            )
        else:
            citations.append(Citation(number=number, valid=False))
    return citations


def says_it_does_not_know(text: str) -> bool:
    """Whether the answer opens with the reply the prompt asks for when nothing answers."""
    return bool(_ABSTAINS.match(text.strip()))


def abstention_text(question: str) -> str:
    """'I don't know', in the question's language (Chinese or English)."""
    return ABSTAIN_ZH if _CJK.search(question) else ABSTAIN_EN
