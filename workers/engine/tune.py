"""Measure engine layouts on the real model and pick the fastest: what `qfleet tune` runs.

Each candidate (replicas x threads, batch size) loads the model once and pushes the same rows
through the `EngineScheduler` (the worker's own path, calls overlapping), after a warm-up call.
The score is aggregate new tokens per second. Candidates run one after another in this process,
so a busy neighbour on the machine skews them all; run it on a quiet machine where you can.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qfleet.tasks.schemas import ChatMessage
from qfleet.workers.engine.generation import GenerationRequest, Sampling
from qfleet.workers.engine.layout import EngineLayout, usable_cores
from qfleet.workers.engine.model import EngineOptions, load_model
from qfleet.workers.engine.scheduler import EngineScheduler, SchedulerPolicy

PROMPT = (
    "Explain {topic} to a backend engineer who knows Python and Redis but has never run a model "
    "server. Use two short paragraphs with one concrete example. Request {n}."
)
TOPICS = ["batching", "quantization", "a job queue", "retries", "priorities", "caching"]
# Rows get budgets of `tokens` times these, in turn: real traffic mixes short and long answers,
# and rows that end at different times are what overlapping calls are for.
BUDGET_SHARES = (1.0, 0.5, 0.25, 0.125)


@dataclass(frozen=True)
class Measurement:
    """One candidate's score."""

    layout: EngineLayout
    tokens: int
    seconds: float

    @property
    def tok_s(self) -> float:
        """Aggregate new tokens per second."""
        return self.tokens / self.seconds

    def as_dict(self) -> dict[str, object]:
        """JSON data for the cache and `--json`."""
        return {**self.layout.as_dict(), "tokens": self.tokens,
                "seconds": round(self.seconds, 2), "tok_s": round(self.tok_s, 2)}  # fmt: skip


def candidates(
    device: str, cores: int | None = None, batches: tuple[int, ...] = (16, 32)
) -> list[EngineLayout]:
    """The layouts worth measuring here: a call with every core, and calls side by side."""
    if device == "cuda":
        shapes = [(1, 1), (2, 1)]
    else:
        cores = cores or usable_cores()
        counts = sorted({1, 2, cores} if cores >= 2 else {1})
        shapes = [(n, max(cores // n, 1)) for n in counts if n <= cores and n <= 4]
    return [
        EngineLayout(replicas=r, threads=t, max_batch_size=b, interactive_replica=False)
        for r, t in shapes
        for b in batches
    ]


def measure(
    model_dir: Path,
    layout: EngineLayout,
    *,
    rows: int,
    tokens: int,
    device: str = "auto",
    compute_type: str = "auto",
) -> Measurement:
    """Aggregate tok/s of `rows` rows of up to `tokens` new tokens, all submitted at once."""
    options = EngineOptions(device=device, compute_type=compute_type,
                            cpu_threads=layout.threads, replicas=layout.replicas)  # fmt: skip
    model = load_model(model_dir, options)
    # Bulk rows, as a worker's backlog is: calls start full (all rows are queued in a moment),
    # not with the first row an engine thread happens to see.
    policy = SchedulerPolicy(
        max_batch_size=layout.max_batch_size, max_wait_ms=500, replicas=layout.replicas
    )
    scheduler = EngineScheduler(model, policy)
    try:
        tok = model.tokenizer
        prompts = [
            tok.encode_chat([ChatMessage(role="user", content=PROMPT.format(topic=t, n=i))])
            for i, t in enumerate(TOPICS[i % len(TOPICS)] for i in range(rows))
        ]
        budgets = [max(int(tokens * BUDGET_SHARES[i % 4]), 1) for i in range(rows)]
        requests = [
            GenerationRequest(p.ids, n, static_prompt_ids=p.static_ids, lane="bulk")
            for p, n in zip(prompts, budgets, strict=True)
        ]
        scheduler.generate(GenerationRequest(prompts[0].ids, 4), Sampling())  # warm-up
        started = time.perf_counter()
        futures = [scheduler.submit(r, Sampling()) for r in requests]
        done = sum(len(f.result().token_ids) for f in futures)
        return Measurement(layout, done, time.perf_counter() - started)
    finally:
        scheduler.close()
        model.close()


def tune(
    model_dir: Path,
    layouts: list[EngineLayout],
    *,
    rows: int,
    tokens: int,
    device: str = "auto",
    compute_type: str = "auto",
    progress: Callable[[Measurement], None] | None = None,
) -> list[Measurement]:
    """Measure every layout; the list is in the order given."""
    results = []
    for layout in layouts:
        result = measure(
            model_dir, layout, rows=rows, tokens=tokens, device=device, compute_type=compute_type
        )
        results.append(result)
        if progress:
            progress(result)
    return results
