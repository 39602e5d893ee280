"""Single-stream decode speed on this CPU across engine settings, measured in one run.

    python -m ops.bench.cpu_decode --model-dir DIR [--tokens 64] [--repeats 2]

Each configuration runs in its own process (CTranslate2 reads CT2_* variables at import) on the
same prompt, greedy, batch 1; configurations are interleaved across repeats so a noisy neighbour
hurts them alike. Prints tok/s per configuration and its ratio to the default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS: dict[str, dict[str, str]] = {
    "default (int8)": {},
    "int8, ISA AVX512": {"CT2_FORCE_CPU_ISA": "AVX512"},
    "int8, 1 thread": {"QFLEET_BENCH_THREADS": "1"},
    "float32": {"QFLEET_BENCH_COMPUTE": "float32"},
    "float32, ISA AVX512": {"QFLEET_BENCH_COMPUTE": "float32", "CT2_FORCE_CPU_ISA": "AVX512"},
    "int8, packed GEMM": {"CT2_PACKED_GEMM": "1"},
}


def _probe(model_dir: str, tokens: int) -> float:
    import ctranslate2

    from ops.bench.prompts import bench_prompts
    from tasks.schemas import ChatMessage
    from workers.engine.chat import ChatTokenizer

    generator = ctranslate2.Generator(
        model_dir,
        compute_type=os.environ.get("QFLEET_BENCH_COMPUTE", "int8"),
        intra_threads=int(os.environ.get("QFLEET_BENCH_THREADS", "0")),
    )
    tok = ChatTokenizer(Path(model_dir))
    prompt = tok.tokens(
        tok.encode(tok.render([ChatMessage(role="user", content=bench_prompts(1)[0])]))
    )
    generator.generate_batch([prompt], max_length=8, include_prompt_in_result=False)  # warm up
    started = time.perf_counter()
    [result] = generator.generate_batch(
        [prompt], max_length=tokens, min_length=tokens, include_prompt_in_result=False
    )
    elapsed = time.perf_counter() - started
    del generator
    return len(result.sequences_ids[0]) / elapsed


def main() -> int:
    """Run every configuration `--repeats` times and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(_probe(args.model_dir, args.tokens)))
        return 0
    speeds: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.repeats):
        for name, env in CONFIGS.items():
            cmd = [sys.executable, "-m", "ops.bench.cpu_decode", "--probe",
                   f"--model-dir={args.model_dir}", f"--tokens={args.tokens}"]  # fmt: skip
            out = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{name}: failed\n{out.stderr[-500:]}", file=sys.stderr)
                continue
            speeds[name].append(float(out.stdout.strip().splitlines()[-1]))
    base = statistics.median(speeds["default (int8)"])
    print(f"{'configuration':<26} {'tok/s (median)':>15} {'vs default':>11}")
    for name, values in speeds.items():
        if values:
            value = statistics.median(values)
            print(f"{name:<26} {value:>15.2f} {value / base:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
