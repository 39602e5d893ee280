"""Single-stream decode speed on this CPU across engine settings, measured in one run.

    python -m ops.bench.cpu_decode [--model-dir DIR] [--tokens 64] [--repeats 2] [--only "NAME;..."]

Each configuration runs in its own process (CTranslate2 reads CT2_* variables at import) on the
same prompt, greedy, batch 1; configurations are interleaved across repeats so a noisy neighbour
hurts them alike. Prints tok/s per configuration (median, min-max) and its ratio to the default.
A configuration with QFLEET_BENCH_PROCS=2 runs two such processes at once and reports their sum
(two single streams sharing the machine). Without --model-dir it measures the demo model.
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
    "int8, oneDNN AVX2 (no VNNI)": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "int8, packed GEMM": {"CT2_PACKED_GEMM": "1"},
    "int8, OMP active wait": {"OMP_WAIT_POLICY": "ACTIVE"},
    "float32": {"QFLEET_BENCH_COMPUTE": "float32"},
    "float32, ISA AVX512": {"QFLEET_BENCH_COMPUTE": "float32", "CT2_FORCE_CPU_ISA": "AVX512"},
    "int8, packed GEMM, ISA AVX512": {"CT2_PACKED_GEMM": "1", "CT2_FORCE_CPU_ISA": "AVX512"},
    "int8, packed GEMM, 1 thread": {"CT2_PACKED_GEMM": "1", "QFLEET_BENCH_THREADS": "1"},
    # Aggregate of two single streams: two processes with one thread each, run at once.
    "int8, 2 procs x 1 thread": {"QFLEET_BENCH_THREADS": "1", "QFLEET_BENCH_PROCS": "2"},
    "int8, packed, 2 procs x 1 thread": {
        "CT2_PACKED_GEMM": "1",
        "QFLEET_BENCH_THREADS": "1",
        "QFLEET_BENCH_PROCS": "2",
    },
}


def _probe(model_dir: str, tokens: int) -> float:
    import ctranslate2

    from ops.bench.prompts import bench_prompts
    from qfleet.tasks.schemas import ChatMessage
    from qfleet.workers.engine.chat import ChatTokenizer

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


def _measure(model_dir: str, tokens: int, env: dict[str, str]) -> float | None:
    """Tok/s of one configuration: one probe process, or the sum of QFLEET_BENCH_PROCS at once."""
    cmd = [sys.executable, "-m", "ops.bench.cpu_decode", "--probe",
           f"--model-dir={model_dir}", f"--tokens={tokens}"]  # fmt: skip
    procs = int(env.get("QFLEET_BENCH_PROCS", "1"))
    running = [
        subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(procs)
    ]
    total = 0.0
    for process in running:
        out, err = process.communicate()
        if process.returncode != 0:
            print(err[-500:], file=sys.stderr)
            return None
        total += float(out.strip().splitlines()[-1])
    return total


def main() -> int:
    """Run every configuration `--repeats` times, interleaved, and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", help="CTranslate2 model (default: the demo model)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", help="configuration names to run, separated by ;")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.model_dir:
        from qfleet.workers.engine.demo_model import ensure_demo_model

        args.model_dir = str(ensure_demo_model(lambda line: print(line, file=sys.stderr)))
    if args.probe:
        print(json.dumps(_probe(args.model_dir, args.tokens)))
        return 0
    chosen = args.only.split(";") if args.only else list(CONFIGS)
    if unknown := [n for n in chosen if n not in CONFIGS]:
        parser.error(f"unknown configurations {unknown}; known: {list(CONFIGS)}")
    chosen = ["default (int8)", *[n for n in chosen if n != "default (int8)"]]
    speeds: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(args.repeats):
        for name in chosen:
            value = _measure(args.model_dir, args.tokens, CONFIGS[name])
            if value is None:
                print(f"{name}: failed", file=sys.stderr)
            else:
                speeds[name].append(value)
    base = statistics.median(speeds["default (int8)"])
    print(f"{'configuration':<30} {'tok/s median':>13} {'min-max':>13} {'vs default':>11}")
    for name, values in speeds.items():
        if values:
            value = statistics.median(values)
            spread = f"{min(values):.1f}-{max(values):.1f}"
            print(f"{name:<30} {value:>13.2f} {spread:>13} {value / base:>10.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
