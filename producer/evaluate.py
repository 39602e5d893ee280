"""`qfleet eval`: run an evaluation set through the fleet, score it, compare two runs.

Items are submitted like any job (to the live queues, or to the canary queues a candidate model
serves), all at once so a worker batches them, and scored with `qfleet.producer.scoring`. Each
item gets one primary score in [0, 1] (normalised match for answers, field accuracy for
extraction); a report's score is their mean, which is what the gate compares.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from qfleet.producer.client import FleetClient
from qfleet.producer.datasets import EvalItem
from qfleet.producer.scoring import (
    abstained,
    best_answer_scores,
    citation_scores,
    field_scores,
    retrieval_scores,
)
from qfleet.tasks.constants import CANARY_SUFFIX
from qfleet.tasks.errors import JobFailedError, JobTimeoutError
from qfleet.tasks.schemas import ExtractResult, JobResult

SLICES = ("language", "schema", "source")
# Summary metrics and the item scores they average (over the items that have them).
METRICS = {
    "answer_exact": "exact",
    "answer_normalized": "normalized",
    "answer_contains": "contains",
    "field_accuracy": "field_accuracy",
    "exact_record_rate": "exact_record",
    "hit_at_k": "hit_at_k",
    "stale_citations": "stale_citations",
    "abstention": "abstained",
    "invalid_markers": "invalid_markers",
    "marker_only_rate": "marker_only",
}


class ItemScore(BaseModel):
    """How one item went."""

    model_config = ConfigDict(extra="forbid")

    id: str
    kind: str
    slice: dict[str, str]
    primary: float | None = Field(description="The item's score in [0, 1]; None when skipped.")
    scores: dict[str, float] = Field(default_factory=dict)
    output: str | dict[str, Any] | None = None
    model_id: str | None = None
    error: str | None = None


class EvalReport(BaseModel):
    """One scored run of an evaluation set."""

    model_config = ConfigDict(extra="forbid")

    name: str
    target: str = Field(description="live or canary: which queues answered.")
    created_at: datetime
    models: list[str] = Field(description="Model manifest ids that answered.")
    score: float = Field(description="Mean primary score of the items that ran.")
    metrics: dict[str, float]
    items: list[ItemScore]

    def save(self, path: Path) -> None:
        """Write the report as JSON."""
        path.write_text(self.model_dump_json(indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> EvalReport:
        """Read a report written by `save`."""
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


def _queue(item: EvalItem, target: str) -> str | None:
    if target == "live":
        return None
    base = "qfleet.extract" if item.kind == "extract" else "qfleet.generate"
    return base + CANARY_SUFFIX


def score_item(item: EvalItem, outcome: JobResult | ExtractResult) -> ItemScore:
    """Score one outcome against its item (also used by ops/bench/rag_answers.py)."""
    base = ItemScore(id=item.id, kind=item.kind, slice=item.slice, primary=0.0,
                     model_id=outcome.model.id)  # fmt: skip
    if isinstance(outcome, ExtractResult):
        got = outcome.items[0].object if outcome.items else None
        scores = field_scores(item.expected.object or {}, got)
        return base.model_copy(
            update={"scores": scores, "primary": scores["field_accuracy"], "output": got}
        )
    if item.expected.abstain:
        said = float(abstained(outcome.text))
        return base.model_copy(
            update={"scores": {"abstained": said}, "primary": said, "output": outcome.text}
        )
    wants = [w for w in [item.expected.text, *item.expected.aliases] if w]
    scores = best_answer_scores(wants, outcome.text)
    if item.scorer == "rag" and item.expected.sources:
        k = int((item.input.get("retrieval") or {}).get("top_k", 3))
        cited = [s.model_dump(mode="json") for s in outcome.sources]
        scores |= retrieval_scores(item.expected.sources, cited, k)
    if item.scorer == "rag":
        scores |= citation_scores(outcome.text, len(outcome.sources))
    # A retrieval-augmented answer is a sentence: it is right when it contains the answer.
    primary = scores["contains" if item.scorer == "rag" else "normalized"]
    return base.model_copy(update={"scores": scores, "primary": primary, "output": outcome.text})


def run_eval(
    fleet: FleetClient, items: list[EvalItem], *, name: str, target: str = "live",
    timeout: float = 600,
) -> EvalReport:  # fmt: skip
    """Submit every item (to `target`: live or canary), wait, and score."""
    batch = uuid.uuid4().hex[:8]
    submitted: dict[str, str] = {}
    results: list[ItemScore] = []
    for n, item in enumerate(items):
        job = {**item.input, "kind": "extract" if item.kind == "extract" else "generate"}
        job["job_id"] = f"eval-{batch}-{n}"
        submitted[item.id] = fleet.submit(job, queue=_queue(item, target))
    for item in items:
        try:
            outcome = fleet.wait(submitted[item.id], timeout=timeout)
        except (JobFailedError, JobTimeoutError) as exc:
            results.append(_failed(item, str(exc)))
            continue
        results.append(score_item(item, outcome))
    return build_report(name, target, results)


def _failed(item: EvalItem, why: str) -> ItemScore:
    return ItemScore(id=item.id, kind=item.kind, slice=item.slice, primary=0.0, error=why)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def build_report(name: str, target: str, items: list[ItemScore]) -> EvalReport:
    """The report of scored `items`: the mean primary score and the mean of each metric."""
    ran = [i for i in items if i.primary is not None]
    metrics = {
        metric: _mean([i.scores[key] for i in ran if key in i.scores])
        for metric, key in METRICS.items()
        if any(key in i.scores for i in ran)
    }
    metrics["failures"] = float(sum(i.error is not None for i in ran))
    return EvalReport(
        name=name,
        target=target,
        created_at=datetime.now(UTC),
        models=sorted({i.model_id for i in ran if i.model_id}),
        score=_mean([i.primary for i in ran if i.primary is not None]),
        metrics=metrics,
        items=items,
    )


def slice_table(report: EvalReport) -> list[tuple[str, str, int, float]]:
    """(slice, value, items, mean score) for every slice value, in a stable order."""
    groups: dict[tuple[str, str], list[float]] = defaultdict(list)
    for item in report.items:
        if item.primary is None:
            continue
        for name in SLICES:
            groups[(name, item.slice.get(name, "-"))].append(item.primary)
    return [(s, v, len(p), _mean(p)) for (s, v), p in sorted(groups.items())]


class Comparison(BaseModel):
    """Two runs of one set, item by item: B against A."""

    a: str
    b: str
    score_a: float
    score_b: float
    better: list[str] = Field(description="Items B scored higher than A.")
    worse: list[str] = Field(description="Items B scored lower than A.")
    same: int
    only_in_one: list[str] = Field(default_factory=list)


def compare(a: EvalReport, b: EvalReport) -> Comparison:
    """Which items got better and which worse from run `a` to run `b`."""
    scores_a = {i.id: i.primary for i in a.items if i.primary is not None}
    scores_b = {i.id: i.primary for i in b.items if i.primary is not None}
    shared = [k for k in scores_a if k in scores_b]
    return Comparison(
        a=a.name,
        b=b.name,
        score_a=a.score,
        score_b=b.score,
        better=[k for k in shared if scores_b[k] > scores_a[k]],
        worse=[k for k in shared if scores_b[k] < scores_a[k]],
        same=sum(scores_b[k] == scores_a[k] for k in shared),
        only_in_one=sorted(set(scores_a) ^ set(scores_b)),
    )
