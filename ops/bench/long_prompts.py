"""Decoding cost of long prompts by layout and rows per call (docs/performance.md).

    python -m ops.bench.long_prompts                       # 1x2 and 2x1, 600-token context
    python -m ops.bench.long_prompts --layouts 2x1 --rows 4,8,16 --context 400,700

For each layout (replicas x threads) and rows per call, every replica runs one call at once:
a 340-token static prompt, the rest of the context as prompt, then a one-token call (prefill)
and a 41-token call; the difference gives milliseconds per generated token. Demo model when
cached, else the tiny one. Exits non-zero when a stage could not run.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

from ops.bench.extract import default_model_dir
from ops.bench.extract_same_tokens import Layout
from qfleet.workers.engine.model import LoadedModel, load_model

STATIC = 340
STEPS = 40


def _calls(model: LoadedModel, replicas: int, rows: int, context: int, steps: int) -> float:
    tokenizer = model.tokenizer
    ids = tokenizer.encode("hello world " * (context // 2 + 1))
    static = tokenizer.tokens(ids[:STATIC])
    prompt = tokenizer.tokens(ids[STATIC:context])

    def one() -> None:
        model.generator.generate_batch(
            [prompt] * rows, static_prompt=static, max_length=steps, min_length=steps,
            include_prompt_in_result=False, end_token=[], sampling_topk=1,
        )  # fmt: skip

    threads = [threading.Thread(target=one) for _ in range(replicas)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layouts", default="1x2,2x1")
    parser.add_argument("--rows", default="4,8,16")
    parser.add_argument("--context", default="600")
    args = parser.parse_args()
    print("layout context rows prefill_tok_s ms_per_token")
    try:
        for layout in map(Layout.parse, args.layouts.split(",")):
            model = load_model(default_model_dir(), layout.options())
            _calls(model, 1, 1, STATIC + 8, 2)  # warm-up
            for context in map(int, args.context.split(",")):
                for rows in map(int, args.rows.split(",")):
                    prefill = _calls(model, layout.replicas, rows, context, 1)
                    both = _calls(model, layout.replicas, rows, context, STEPS + 1)
                    fed = layout.replicas * rows * (context - STATIC)
                    per_token = (both - prefill) / STEPS / rows / layout.replicas * 1000
                    label = f"{layout.replicas}x{layout.threads}"
                    print(f"{label} {context} {rows} {fed / prefill:.0f} {per_token:.1f}")
            model.close()
    except Exception as exc:  # a stage that could not run fails the benchmark
        print(f"benchmark stage failed: {exc!r}", file=sys.stderr)
        raise SystemExit(1) from exc


if __name__ == "__main__":
    main()
