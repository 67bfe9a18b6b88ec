"""`tflite-compress bench`'s p50 next to a plain Python `invoke()` loop, measured in the same run.

    .venv/bin/python benchmarks/bench_vs_loop.py MODEL.tflite [--runs 2000] [--threads 1] [--batch 1]

Without MODEL it builds the tiny text model of the tests (needs TensorFlow). The ratio shows how
much the harness's own timing adds over the barest loop; both time `invoke()` alone, with
`perf_counter_ns` around each call.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def plain_loop_us(content: bytes, threads: int, batch: int, runs: int, warmup: int, seed: int = 0) -> np.ndarray:
    """The barest benchmark: one interpreter, one input, invoke() timed in a Python loop."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_content=content, num_threads=threads)
    d = interp.get_input_details()[0]
    shape = [batch, *d["shape"][1:]]
    interp.resize_tensor_input(d["index"], shape)
    interp.allocate_tensors()
    rng = np.random.default_rng(seed)
    dtype = np.dtype(d["dtype"])
    x = (rng.integers(0, 2, shape) if dtype.kind in "iu" else rng.standard_normal(shape)).astype(dtype)
    interp.set_tensor(d["index"], x)
    for _ in range(warmup):
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    model = args.model
    if model is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from runtime_fixtures import runtime_models

        model = runtime_models().text_int8
    from tflite_compress.runtime import RuntimeOptions, load_model
    from tflite_compress.runtime.bench import bench_config

    content = load_model(model).content  # verified and probed like the CLI does
    options = RuntimeOptions(threads=args.threads)
    rows = []
    for rnd in range(3):  # interleave the two, so drift in the machine hits both alike
        bench = bench_config(content, options, args.batch, runs=args.runs, warmup=args.warmup)
        loop = plain_loop_us(content, args.threads, args.batch, args.runs, args.warmup, seed=rnd)
        rows.append((bench["invoke_us_p50"], float(np.percentile(loop, 50)), bench["xnnpack_applied"]))
    print(f"model: {model}  ({len(content):,} bytes; threads {args.threads}, batch {args.batch}, "
          f"{args.runs} timed runs each)")
    print(f"  {'round':>5} {'bench_p50_us':>13} {'loop_p50_us':>12} {'ratio':>7}  xnnpack")
    for i, (b, lp, xnn) in enumerate(rows, 1):
        print(f"  {i:>5} {b:>13.2f} {lp:>12.2f} {b / lp:>7.3f}  {'applied' if xnn else 'not applied'}")
    b_med = float(np.median([r[0] for r in rows]))
    l_med = float(np.median([r[1] for r in rows]))
    print(f"  {'median':>5} {b_med:>13.2f} {l_med:>12.2f} {b_med / l_med:>7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
