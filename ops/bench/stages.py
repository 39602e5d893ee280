"""The baseline stages of the throughput benchmark, each run in a child process of its own.

Every stage gets the same prompts and the same new-token budget per job (`bench_budgets`: all
--tokens, or the seeded mix of short and long jobs), warms up first, submits all its work at t=0
and reports each job's latency as the time from t=0 to that job's answer.
"""

from __future__ import annotations

import argparse
import os
import queue
import resource
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ops.bench.prompts import bench_budgets, bench_prompts


def peak_rss_mb() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def summary(
    name: str, tokens: int, seconds: float, latencies: list[float], **extra: Any
) -> dict[str, Any]:
    """One row of the table: aggregate tok/s, p50/p95 job latency, peak RSS."""
    ordered = sorted(latencies)
    return {
        "stage": name,
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tok_s": round(tokens / seconds, 2),
        "p50_s": round(statistics.median(ordered), 2),
        "p95_s": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "peak_rss_mb": round(peak_rss_mb(), 0),
        **extra,
    }


def stage_transformers(args: argparse.Namespace) -> dict[str, Any]:
    """transformers + torch `generate`, batched with left padding, from the GGUF (fp32)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    gguf = Path(args.gguf)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model.eval()  # type: ignore[no-untyped-call]
    end = tok.eos_token_id if tok.pad_token_id is None else tok.pad_token_id

    def run(prompts: list[str], budgets: list[int]) -> list[int]:
        """One batched `generate` (it runs to the largest budget); each row's own token count."""
        new_tokens = max(budgets)
        chats = [[{"role": "user", "content": p}] for p in prompts]
        texts = tok.apply_chat_template(chats, add_generation_prompt=True, tokenize=False)
        batch = tok(texts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=end)  # fmt: skip
        new = out[:, batch["input_ids"].shape[1] :].tolist()
        ends = [row.index(end) if end in row else len(row) for row in new]
        return [min(n, b) for n, b in zip(ends, budgets, strict=True)]

    run(bench_prompts(2), [4, 4])  # warm-up
    prompts = bench_prompts(args.jobs)
    budgets = bench_budgets(args.jobs, args.tokens, args.lengths)
    tokens, latencies, started = 0, [], time.perf_counter()
    for i in range(0, len(prompts), args.hf_batch):
        counts = run(prompts[i : i + args.hf_batch], budgets[i : i + args.hf_batch])
        tokens += sum(counts)
        latencies += [time.perf_counter() - started] * len(counts)
    return summary(f"a transformers fp32, batch {args.hf_batch}", tokens,
                   time.perf_counter() - started, latencies, batch=args.hf_batch)  # fmt: skip


def stage_llamacpp(args: argparse.Namespace) -> dict[str, Any]:
    """llama.cpp's own server, parallel slots with continuous batching; the best slot count."""
    from ops.bench.llama_server import LlamaServer

    runs = []
    prompts = bench_prompts(args.jobs)
    budgets = bench_budgets(args.jobs, args.tokens, args.lengths)
    slot_counts = [int(s) for s in args.slots.split(",")]
    threads = _best_llama_threads(Path(args.gguf), max(slot_counts), prompts)
    for slots in slot_counts:
        server = LlamaServer(Path(args.gguf), slots=slots, threads=threads)
        try:
            server.chat("warm up", 4)
            started = time.perf_counter()
            tokens, latencies = _slots_run(server, prompts, started, budgets)
            elapsed = time.perf_counter() - started
            row = summary(f"b llama.cpp server Q4, {slots} slots, {threads} threads", tokens,
                          elapsed, latencies, batch=slots, threads=threads)  # fmt: skip
            row["peak_rss_mb"] = server.peak_rss_mb()
            runs.append(row)
            print(row, file=sys.stderr)
        finally:
            server.stop()
    best = max(runs, key=lambda r: r["tok_s"])
    label = f"b llama.cpp server, best ({best['batch']} slots, {threads} thr)"
    return {**best, "stage": label, "runs": runs}


def _best_llama_threads(gguf: Path, slots: int, prompts: list[str]) -> int:
    """The server's fastest thread count here: every core, or one (its threads wait for each
    other by spinning, which collapses when the cores are shared), by a short probe."""
    from ops.bench.llama_server import LlamaServer

    cores = os.cpu_count() or 1
    scores = {}
    for threads in dict.fromkeys([cores, 1]):
        server = LlamaServer(gguf, slots=slots, threads=threads)
        try:
            server.chat("warm up", 4)
            started = time.perf_counter()
            tokens, _ = _slots_run(server, prompts[:8], started, [16] * len(prompts[:8]))
            scores[threads] = tokens / (time.perf_counter() - started)
        finally:
            server.stop()
    print(f"llama.cpp threads probe (tok/s): {scores}", file=sys.stderr)
    return max(scores, key=lambda t: scores[t])


def _slots_run(
    server: Any, prompts: list[str], started: float, budgets: list[int]
) -> tuple[int, list[float]]:
    """Every prompt as its own request, all at once; tokens and each request's latency."""
    latencies: list[float] = []

    def one(prompt: str, budget: int) -> int:
        count: int = server.chat(prompt, budget)
        latencies.append(time.perf_counter() - started)
        return count

    with ThreadPoolExecutor(len(prompts)) as pool:
        tokens = sum(pool.map(one, prompts, budgets))
    return tokens, latencies


def _ct2_run(
    model: Any, prompts: list[Any], replicas: int, batch: int, budgets: list[int]
) -> tuple[int, list[float]]:
    """All prompts in calls of `batch`, `replicas` calls at a time; tokens and latencies.

    The whole workload is known up front, so the jobs are sorted by budget, longest first:
    rows of one call end together (the best a static batching can do) and the short calls
    fill the end of the run.
    """
    from qfleet.workers.engine.generation import GenerationRequest, Sampling, generate

    jobs = sorted(zip(prompts, budgets, strict=True), key=lambda job: -job[1])
    chunks: queue.Queue[list[Any]] = queue.Queue()
    for i in range(0, len(jobs), batch):
        chunks.put(jobs[i : i + batch])
    tokens, latencies, lock = [0], [], threading.Lock()
    started = time.perf_counter()

    def serve() -> None:
        while True:
            try:
                group = chunks.get_nowait()
            except queue.Empty:
                return
            requests = [GenerationRequest(p.ids, n, static_prompt_ids=p.static_ids)
                        for p, n in group]  # fmt: skip
            outputs = generate(model.generator, model.tokenizer, requests, Sampling())
            with lock:
                tokens[0] += sum(len(o.token_ids) for o in outputs)
                latencies.extend([time.perf_counter() - started] * len(group))

    threads = [threading.Thread(target=serve) for _ in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tokens[0], latencies


def stage_ctranslate2(args: argparse.Namespace) -> dict[str, Any]:
    """CTranslate2 called directly: every layout (replicas x threads) and batch size given."""
    from qfleet.tasks.schemas import ChatMessage
    from qfleet.workers.engine.model import EngineOptions, load_model

    runs = []
    for shape in args.layouts.split(","):
        replicas, threads = (int(x) for x in shape.split("x"))
        options = EngineOptions(compute_type=args.compute_type, cpu_threads=threads,
                                replicas=replicas)  # fmt: skip
        model = load_model(Path(args.model_dir), options)
        tok = model.tokenizer
        prompts = [tok.encode_chat([ChatMessage(role="user", content=p)])
                   for p in bench_prompts(args.jobs)]  # fmt: skip
        _ct2_run(model, prompts[:replicas], replicas, 1, [8] * replicas)  # warm-up, each replica
        budgets = bench_budgets(args.jobs, args.tokens, args.lengths)
        for size in (int(b) for b in args.batch_sizes.split(",")):
            started = time.perf_counter()
            tokens, latencies = _ct2_run(model, prompts, replicas, size, budgets)
            runs.append(summary(f"c ctranslate2 direct {shape}, batch {size}", tokens,
                                time.perf_counter() - started, latencies, batch=size,
                                layout=shape))  # fmt: skip
            print(runs[-1], file=sys.stderr)
        model.close()
    best = max(runs, key=lambda r: r["tok_s"])
    label = f"c ctranslate2 direct, best ({best['layout']} b{best['batch']})"
    return {**best, "stage": label, "runs": runs}
