"""MiniLM teacher throughput on Apache Beam: 1 worker and 2 workers on the same texts, side by side.

    PYTHONPATH=. .venv/bin/python benchmarks/scale.py [--texts 4000] [--shard-rows 250] [--threads-per-worker N]

Each run is `run_teacher_pipeline` (what `tflite-compress teacher-outputs` runs) on the
DirectRunner in multi_processing mode, into a fresh cache folder. It prints, per run: the wall
time (worker start-up and MiniLM loading included), texts/s end to end, and the teacher's own
compute throughput per worker (rows / seconds inside the DoFn, from the manifest); then the
2-worker/1-worker ratio of each, and the largest difference between the two caches. The 2-core
machine's load average is printed too: other processes share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(texts: tuple[str, ...], workers: int, shard_rows: int, threads: int | None) -> dict:
    import logging

    from tflite_compress.config import TeacherConfig
    from tflite_compress.scale.beam_teacher import run_teacher_pipeline
    from tflite_compress.scale.shards import load_shards, read_manifest

    logging.getLogger("apache_beam").setLevel(logging.ERROR)
    cache = Path(tempfile.mkdtemp(prefix=f"scale-bench-{workers}w-"))
    args = ["--runner", "DirectRunner", "--direct_num_workers", str(workers), "--direct_running_mode",
            "multi_processing", "--default_sdk_harness_log_level", "ERROR"]
    res = run_teacher_pipeline(TeacherConfig(kind="minilm"), {"train": texts}, np.zeros(len(texts), np.int64),
                               cache, args, shard_rows=shard_rows, intra_op_threads=threads, log=lambda m: None)
    manifest = read_manifest(res.folder)
    rows, secs = defaultdict(int), defaultdict(float)
    for s in manifest["shards"]:
        rows[s["worker"]] += s["rows"]["train"]
        secs[s["worker"]] += s["seconds"]
    per_worker = {w: rows[w] / secs[w] for w in rows}
    return {"workers": workers, "wall_s": res.seconds, "texts_per_s_wall": res.rows_per_second,
            "teacher_texts_per_s_per_worker": per_worker,
            "teacher_texts_per_s_total": sum(rows.values()) / max(secs.values()),
            "features": load_shards(res.folder)["train"], "cache_bytes": sum(s["size_bytes"] for s in manifest["shards"])}


PLAN_TEXTS = (10_000_000, 100_000_000)
PLAN_WORKERS = (1, 8, 32, 128)
STORAGE_USD_PER_GB_MONTH = 0.02  # an assumption (object storage, standard class), not a quote


def plan(per_worker: float, bytes_per_text: float, startup_s: float) -> str:
    """The 10M / 100M plan from a per-worker throughput: an extrapolation (linear in workers)."""
    lines = [f"plan (EXTRAPOLATION, linear in workers): {per_worker:.1f} texts/s per worker, "
             f"{startup_s:.0f} s start-up, {bytes_per_text:.0f} cache bytes/text, "
             f"storage at ${STORAGE_USD_PER_GB_MONTH}/GB-month (assumed)",
             f"{'texts':>12} {'workers':>8} {'hours':>9} {'cache GB':>9} {'$/month':>8}"]
    for n_texts in PLAN_TEXTS:
        gb = n_texts * bytes_per_text / 1e9
        for w in PLAN_WORKERS:
            hours = (n_texts / (per_worker * w) + startup_s) / 3600
            lines.append(f"{n_texts:>12,} {w:>8} {hours:>9.2f} {gb:>9.1f} {gb * STORAGE_USD_PER_GB_MONTH:>8.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=4000)
    ap.add_argument("--shard-rows", type=int, default=250)
    ap.add_argument("--threads-per-worker", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plan-only", nargs=3, type=float, metavar=("TEXTS_PER_S_PER_WORKER", "BYTES_PER_TEXT", "STARTUP_S"),
                    help="Print only the 10M/100M plan for these figures (no measurement).")
    a = ap.parse_args()
    if a.plan_only:
        print(plan(*a.plan_only))
        return
    import tflite_compress._tf  # noqa: F401 - TF_USE_LEGACY_KERAS first
    from tflite_compress.data import CLINC150_FILE, load_clinc150

    texts = load_clinc150(CLINC150_FILE).train.texts[: a.texts]
    load0 = os.getloadavg()[0]
    one = run(texts, 1, a.shard_rows, a.threads_per_worker)
    two = run(texts, 2, a.shard_rows, a.threads_per_worker)
    diff = float(np.max(np.abs(one["features"] - two["features"])))
    out = {"texts": len(texts), "shard_rows": a.shard_rows, "threads_per_worker": a.threads_per_worker,
           "cpu_count": os.cpu_count(), "load_average_before": load0, "load_average_after": os.getloadavg()[0],
           "runs": [{k: v for k, v in r.items() if k != "features"} for r in (one, two)],
           "ratio_2w_over_1w_wall": two["texts_per_s_wall"] / one["texts_per_s_wall"],
           "ratio_2w_over_1w_teacher": two["teacher_texts_per_s_total"] / one["teacher_texts_per_s_total"],
           "max_abs_diff_1w_vs_2w": diff, "cache_bytes_per_text": one["cache_bytes"] / len(texts)}
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"MiniLM teacher on Beam DirectRunner (multi_processing), {len(texts)} CLINC150 train texts, "
          f"shards of {a.shard_rows}; {os.cpu_count()} CPUs, load average {load0:.1f} -> {out['load_average_after']:.1f}")
    print(f"{'workers':>8} {'wall s':>8} {'texts/s wall':>13} {'teacher texts/s':>16}  per worker (teacher compute)")
    for r in (one, two):
        pw = ", ".join(f"{v:.0f}" for v in r["teacher_texts_per_s_per_worker"].values())
        print(f"{r['workers']:>8} {r['wall_s']:>8.1f} {r['texts_per_s_wall']:>13.0f} {r['teacher_texts_per_s_total']:>16.0f}  {pw}")
    print(f"ratio 2 workers / 1 worker: wall {out['ratio_2w_over_1w_wall']:.2f}x, "
          f"teacher compute {out['ratio_2w_over_1w_teacher']:.2f}x")
    print(f"caches equal: max abs diff {diff:.2e}; cache size {out['cache_bytes_per_text']:.0f} bytes/text")
    per_worker = float(np.mean(list(one["teacher_texts_per_s_per_worker"].values())))
    startup = max(0.0, one["wall_s"] - len(texts) / one["teacher_texts_per_s_total"])
    print(plan(per_worker, out["cache_bytes_per_text"], startup))


if __name__ == "__main__":
    main()
