"""The fixed prompt set every benchmark uses: ~100-token prompts, the same on every run."""

from __future__ import annotations

TOPICS = [
    "how a Redis list works as a job queue", "why batching raises LLM throughput",
    "what a visibility timeout protects against", "how int8 quantization shrinks a model",
    "the trade-offs of acks_late in Celery", "why a worker loads its model after fork",
    "how retrieval keeps a small model's answers fresh", "what a dead-letter queue is for",
    "how to read a Prometheus histogram", "why JSON beats pickle on a shared broker",
    "how byte-level BPE tokenizes Chinese text", "what static prompt caching saves",
]  # fmt: skip

TEMPLATE = (
    "You are reviewing the design notes of a distributed job system for language-model work. "
    "Explain {topic} to a backend engineer who knows Python and Redis but has never run a "
    "model server. Use two short paragraphs: the first gives the idea with one concrete "
    "example from a document-processing pipeline; the second names one failure mode an "
    "operator should watch for, the metric that reveals it, and what to do about it. "
    "Request {n}."
)


def bench_prompts(count: int) -> list[str]:
    """`count` distinct prompts of about 100 tokens each."""
    return [TEMPLATE.format(topic=TOPICS[i % len(TOPICS)], n=i) for i in range(count)]


# Answer budgets of real traffic differ: a seeded mix of short and long jobs, as fractions of
# the benchmark's --tokens. Every stage gets the same list, so the comparison stays fair.
BUDGET_MIX = (1 / 8, 1 / 4, 1 / 2, 1)
BUDGET_SEED = 17


def bench_budgets(count: int, tokens: int, lengths: str = "mixed") -> list[int]:
    """New-token budget of each of `count` jobs: all `tokens` (`fixed`) or the seeded mix."""
    if lengths == "fixed":
        return [tokens] * count
    if lengths != "mixed":
        raise ValueError(f"lengths must be 'mixed' or 'fixed', not {lengths!r}")
    import random

    draw = random.Random(BUDGET_SEED)
    return [max(int(tokens * draw.choice(BUDGET_MIX)), 1) for _ in range(count)]
