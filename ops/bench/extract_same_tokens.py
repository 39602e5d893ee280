"""The extraction benchmark's baseline: plain generation of exactly the guided tokens.

Given the guided decoder's own best settings: rows of similar prompt length together, at most
`CHUNK_ROWS` a call, padded to one length, as many calls at once as the model has replicas, on
the same model layout.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from qfleet.workers.engine.guided_batch import CHUNK_ROWS, blank_token, chunks, pad_inputs
from qfleet.workers.engine.model import EngineOptions, LoadedModel


@dataclass(frozen=True)
class Layout:
    """How the model is placed: replicas decoding side by side, threads each."""

    replicas: int
    threads: int

    @classmethod
    def parse(cls, text: str) -> Layout:
        replicas, threads = text.lower().split("x")
        return cls(int(replicas), int(threads))

    def options(self) -> EngineOptions:
        return EngineOptions(cpu_threads=self.threads, replicas=self.replicas)


@dataclass
class _Row:
    prompt: list[int]
    target: int  # tokens to generate

    @property
    def prompt_length(self) -> int:
        return len(self.prompt)


def generate_exactly(
    model: LoadedModel, prompts: list[list[int]], static: int, targets: list[int]
) -> float:
    """Seconds to generate `targets[n]` tokens after `prompts[n]` (the first `static` shared)."""
    rows = [_Row(p, t) for p, t in zip(prompts, targets, strict=True)]
    parallel = max(1, model.generator.num_generators)
    groups = chunks(rows, CHUNK_ROWS, parallel)
    shared = prompts[0][:static] if prompts else []
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda group: _generate(model, group, shared), groups))
    return time.perf_counter() - started


def _generate(model: LoadedModel, rows: list[_Row], static: list[int]) -> None:
    tokenizer = model.tokenizer
    counts = [0] * len(rows)

    def stop(step: Any) -> bool:
        row = int(step.batch_id)
        counts[row] += 1
        return counts[row] >= rows[row].target

    inputs = pad_inputs([r.prompt for r in rows], len(static), blank_token(tokenizer))
    model.generator.generate_batch(
        [tokenizer.tokens(p[len(static) :]) for p in inputs],
        static_prompt=tokenizer.tokens(static) if static else None,
        max_length=max(r.target for r in rows),
        include_prompt_in_result=False,
        end_token=[],
        sampling_topk=1,
        callback=stop,
    )
