"""Latency and memory of a `.tflite` in the interpreter, over a matrix of threads and batch sizes.

Per configuration: init (interpreter + allocate), first invoke, warm-up, then p50/p90/p99/mean
microseconds of `invoke()` alone and, for text models, of tokenize + invoke + argmax, and
throughput. Peak resident memory of the process. No TensorFlow.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np

from ..tokenizer import WordPieceTokenizer
from .interpreter import RuntimeOptions, TFLiteModel, time_end_to_end_us, time_invokes_us
from .samples import random_inputs


def _stats_us(times_us: np.ndarray, batch: int, prefix: str) -> dict:
    mean = float(np.mean(times_us))
    return {
        f"{prefix}_us_p50": float(np.percentile(times_us, 50)),
        f"{prefix}_us_p90": float(np.percentile(times_us, 90)),
        f"{prefix}_us_p99": float(np.percentile(times_us, 99)),
        f"{prefix}_us_mean": mean,
        f"{prefix}_samples_per_s": batch * 1e6 / mean if mean > 0 else 0.0,
    }


def memory_bytes() -> dict:
    """Resident memory of this process now and at its peak (Linux /proc, else getrusage)."""
    out: dict = {"rss_bytes": None, "peak_rss_bytes": None}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_bytes"] = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    out["peak_rss_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    if out["peak_rss_bytes"] is None:
        try:
            import resource
            import sys

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            out["peak_rss_bytes"] = peak if sys.platform == "darwin" else peak * 1024
        except ImportError:
            pass
    return out


def bench_config(content: bytes, options: RuntimeOptions, batch: int, runs: int = 200, warmup: int = 20,
                 texts: Sequence[str] | None = None, tokenizer: WordPieceTokenizer | None = None,
                 vocab_size: int | None = None, seed: int = 0) -> dict:
    """One configuration: init, first invoke, warm-up, then `runs` timed invokes at `batch` rows."""
    t0 = time.perf_counter_ns()
    model = TFLiteModel(content, options)
    init_us = (time.perf_counter_ns() - t0) / 1e3
    row = {"threads": options.threads, "batch": batch, "xnnpack_applied": model.xnnpack_applied, "init_us": init_us}
    if batch != model.input_shape[0] and not model.resizable_batch:
        return {**row, "skipped": f"the model's batch is fixed at {model.input_shape[0]}"}
    rng_batches = [model.quantize_input(random_inputs(model, batch, seed=seed + k, vocab_size=vocab_size))
                   for k in range(8)]
    t0 = time.perf_counter_ns()
    model.invoke_raw(rng_batches[0])  # resizes to `batch` and allocates
    row["first_invoke_us"] = (time.perf_counter_ns() - t0) / 1e3
    times = time_invokes_us(model, rng_batches, runs, warmup)
    row.update(_stats_us(times, batch, "invoke"))
    if texts and tokenizer is not None:
        chunks = [[texts[(k * batch + j) % len(texts)] for j in range(batch)] for k in range(16)]
        e2e = time_end_to_end_us(model, tokenizer, chunks, runs)
        row.update(_stats_us(e2e, batch, "end_to_end"))
    row["rss_bytes"] = memory_bytes()["rss_bytes"]
    return row


def bench_model(content: bytes, threads: Sequence[int] = (1,), batches: Sequence[int] = (1,), runs: int = 200,
                warmup: int = 20, xnnpack: bool = True, reference_kernels: bool = False, backend: str = "auto",
                texts: Sequence[str] | None = None, tokenizer: WordPieceTokenizer | None = None,
                vocab_size: int | None = None) -> dict:
    """Every (threads, batch) configuration in turn, with peak memory at the end."""
    rows = []
    for n_threads in threads:
        for batch in batches:
            options = RuntimeOptions(threads=n_threads, xnnpack=xnnpack, reference_kernels=reference_kernels,
                                     backend=backend)
            rows.append(bench_config(content, options, batch, runs, warmup, texts, tokenizer, vocab_size))
    return {"runs": runs, "warmup": warmup, "xnnpack_requested": xnnpack and not reference_kernels,
            "reference_kernels": reference_kernels, "results": rows, "cpu_count": os.cpu_count(), **memory_bytes()}


def side_by_side_us(models: dict, x: np.ndarray, batch: int = 1, rounds: int = 5, runs: int = 100,
                    warmup: int = 10) -> dict:
    """p50 invoke microseconds of each loaded model at `batch`, measured side by side.

    The models take turns in `rounds` interleaved rounds (each round: `runs` timed invokes per
    model, cycling through up to 8 batches cut from `x`); the figure is the median of the round
    medians, so a load change on a shared machine hits every model alike.
    """
    n = max(1, min(8, len(x) // batch))
    inputs = {k: [m.quantize_input(x[i * batch:(i + 1) * batch]) for i in range(n)] for k, m in models.items()}
    per_round: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for k, m in models.items():
            m.invoke_raw(inputs[k][0])  # resizes to `batch`
            per_round[k].append(float(np.median(time_invokes_us(m, inputs[k], runs, warmup))))
    return {k: float(np.median(v)) for k, v in per_round.items()}


def format_bench(r: dict) -> str:
    """A readable table of a `bench_model` report (microseconds)."""
    e2e = any("end_to_end_us_p50" in row for row in r["results"])
    head = (f"  {'threads':>7} {'batch':>5} {'xnnpack':>7} {'init_us':>9} {'first_us':>9} {'p50_us':>9} {'p90_us':>9} "
            f"{'p99_us':>9} {'mean_us':>9} {'samples/s':>10}")
    if e2e:
        head += f" {'e2e_p50_us':>10} {'e2e_p90_us':>10}"
    lines = [f"{r['model']}  ({r['backend']}, {r['runs']} timed runs after {r['warmup']} warm-up; "
             f"{'reference kernels' if r['reference_kernels'] else 'XNNPACK requested' if r['xnnpack_requested'] else 'XNNPACK off'})",
             head]
    for row in r["results"]:
        if "skipped" in row:
            lines.append(f"  {row['threads']:>7} {row['batch']:>5}  skipped: {row['skipped']}")
            continue
        line = (f"  {row['threads']:>7} {row['batch']:>5} {'yes' if row['xnnpack_applied'] else 'no':>7} "
                f"{row['init_us']:>9.0f} {row['first_invoke_us']:>9.0f} {row['invoke_us_p50']:>9.1f} "
                f"{row['invoke_us_p90']:>9.1f} {row['invoke_us_p99']:>9.1f} {row['invoke_us_mean']:>9.1f} "
                f"{row['invoke_samples_per_s']:>10.0f}")
        if "end_to_end_us_p50" in row:
            line += f" {row['end_to_end_us_p50']:>10.1f} {row['end_to_end_us_p90']:>10.1f}"
        lines.append(line)
    peak = r.get("peak_rss_bytes")
    lines.append(f"  peak resident memory: {peak / 2**20:.1f} MiB" if peak else "  peak resident memory: unknown")
    return "\n".join(lines)

