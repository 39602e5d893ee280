"""The RAG evaluation set in `ops/bench/data/rag/` and its scorer.

A question has gold `facts` (each a string, or a list of accepted spellings; all must appear in
the answer after normalisation) and gold `sources`; a question with no sources is unanswerable
from the knowledge base, and the right outcome is an abstention.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "rag"

# Answers that say the reference does not hold the answer, in either language.
_ABSTAIN = re.compile(
    r"(do(?:es)? not know|don't know|not (?:mentioned|stated|specified|provided|included|"
    r"given|available|found)|no information|cannot (?:find|answer|be determined)|"
    r"can't (?:find|answer)|unable to (?:find|answer|determine)|does not (?:mention|say|"
    r"contain|provide|specify)|doesn't (?:mention|say|contain|provide|specify)|"
    r"不知道|无法(?:回答|确定|找到|得知)|没有(?:提到|提及|相关|找到|说明)|未(?:提及|提到|说明)|"
    r"不清楚|资料中没有)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Question:
    """One question of the set."""

    id: str
    lang: str
    question: str
    facts: list[list[str]]
    sources: list[str]

    @property
    def answerable(self) -> bool:
        """Whether the knowledge base holds the answer."""
        return bool(self.sources)

    @property
    def split(self) -> str:
        """`tune` (odd-numbered) or `test` (even-numbered): thresholds are chosen on `tune`."""
        return "tune" if int(self.id[-2:]) % 2 else "test"


@dataclass
class Outcome:
    """What one question got: retrieved sources (best first), the answer, its flags."""

    question: Question
    retrieved: list[str]
    answer: str
    abstained_flag: bool | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def hit_at_3(self) -> bool:
        """A gold source is among the top three retrieved."""
        return any(s in self.retrieved[:3] for s in self.question.sources)

    @property
    def abstained(self) -> bool:
        """The job's flag when it has one, else what the answer text says."""
        if self.abstained_flag:
            return True
        return bool(_ABSTAIN.search(self.answer))

    @property
    def correct(self) -> bool:
        """Every gold fact is in the answer, and it did not abstain."""
        if not self.question.answerable or self.abstained:
            return False
        text = normalise(self.answer)
        return all(any(normalise(s) in text for s in fact) for fact in self.question.facts)


def normalise(text: str) -> str:
    """NFKC, lower case, accents, spaces and thousands separators removed ("20,000" = "20000")."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"(?<=\d)[,，](?=\d{3}(?!\d))", "", text)
    return re.sub(r"\s+", "", text)


def load_documents(folder: Path = DATA) -> list[dict[str, Any]]:
    """The knowledge base's documents, in ingest order (older versions first)."""
    lines = (folder / "documents.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_questions(folder: Path = DATA) -> list[Question]:
    """The questions, facts as lists of accepted spellings."""
    questions = []
    for line in (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        raw = json.loads(line)
        facts = [[f] if isinstance(f, str) else list(f) for f in raw["facts"]]
        questions.append(Question(raw["id"], raw["lang"], raw["question"], facts, raw["sources"]))
    return questions


def _share(flags: Iterable[bool]) -> tuple[int, int]:
    values = list(flags)
    return sum(values), len(values)


def summarise(outcomes: Sequence[Outcome]) -> dict[str, dict[str, tuple[int, int]]]:
    """Per slice (`all`, `en`, `zh`): (count, out of) for each figure."""
    slices: dict[str, list[Outcome]] = {"all": list(outcomes)}
    for outcome in outcomes:
        slices.setdefault(outcome.question.lang, []).append(outcome)
    table = {}
    for name, rows in slices.items():
        answerable = [o for o in rows if o.question.answerable]
        unanswerable = [o for o in rows if not o.question.answerable]
        table[name] = {
            "accuracy": _share(o.correct for o in answerable),
            "hit@3": _share(o.hit_at_3 for o in answerable),
            "abstention": _share(o.abstained for o in unanswerable),
            "false_abstention": _share(o.abstained for o in answerable),
        }
    return table


def format_table(table: dict[str, dict[str, tuple[int, int]]]) -> str:
    """The summary as aligned text lines."""
    names = ("accuracy", "hit@3", "abstention", "false_abstention")
    lines = [f"{'slice':6s} " + " ".join(f"{n:>18s}" for n in names)]
    for slice_name, figures in table.items():
        cells = []
        for name in names:
            hit, total = figures[name]
            cells.append(f"{hit / total:.2f} ({hit:2d}/{total:2d})".rjust(18) if total else "n/a")
        lines.append(f"{slice_name:6s} " + " ".join(f"{c:>18s}" for c in cells))
    return "\n".join(lines)
