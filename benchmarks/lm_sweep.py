"""Choosing the LM recipe's training budget on the VALIDATION split: one line per configuration
(model size, train tokens, epochs, batch, learning rate, KD alpha/T, seed) with its val
perplexity (Keras, teacher-forced over val windows) and its training time, side by side.

    .venv/bin/python benchmarks/lm_sweep.py student --tokens 800000 --lr 1e-2
    .venv/bin/python benchmarks/lm_sweep.py teacher --tokens 1000000 --lr 3e-3 --save /tmp/t.h5
    .venv/bin/python benchmarks/lm_sweep.py student --distill 0.5,2 0.2,2,32 --seeds 0 1  # cached teacher
    .venv/bin/python benchmarks/lm_sweep.py --gain --seeds 0 1 2   # the default recipe: data alone vs distilled
    .venv/bin/python benchmarks/lm_sweep.py --table                # the runs so far (runs/lm-sweep.jsonl)

The corpus, vocabulary and train/val streams are the default recipe's (the vocabulary comes from
`runs/cache`, learned once). Sizes and budgets not given are the default recipe's. `--gain`
trains the default recipe's student on the data alone and distilled from the default recipe's
cached teacher (`make demo-lm` writes it; trained here otherwise) with each seed, same data and
steps, and prints the distillation gain per seed. Every run is appended to `--out` as a JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT = ROOT / "runs" / "lm-sweep.jsonl"


def _state(recipe, cache_dir: Path, work: Path):
    from tflite_compress.lm.corpus import load_chitchat
    from tflite_compress.lm.pipeline import STAGES, LMState
    from tflite_compress.stages import run_stages

    state = LMState(recipe=recipe, corpus=load_chitchat(), work_dir=work, cache_dir=cache_dir)
    return run_stages(STAGES[:2], state, lambda msg: None)


_TOPK: dict = {}


def train_one(state, role: str, cfg, train_cfg, seed: int, teacher=None, alpha: float = 1.0, temperature: float = 1.0,
              top_k: int = 0):
    """Train one decoder as the pipeline does (same windows, schedule); val perplexity and seconds."""
    from tflite_compress.lm import distill
    from tflite_compress.lm.models import build_decoder, count_params
    from tflite_compress.lm.pipeline import _head_bias
    from tflite_compress.lm.tokenizer import windows

    model = build_decoder(cfg, len(state.tokenizer.vocab), role, seed, _head_bias(state))
    w = state.train_windows[: max(1, train_cfg.max_train_tokens // cfg.context)]
    topk = None
    if teacher is not None and top_k:  # as the pipeline does: the teacher's top-k logits, computed once
        key = (id(teacher), len(w), top_k, temperature)
        if key not in _TOPK:
            _TOPK.clear()
            cached = state.records.get("teacher", {}).get("cache_file")
            if cached:  # the pipeline's cache file (written when missing)
                from tflite_compress.lm.config import LMDistillConfig
                from tflite_compress.lm.pipeline import _teacher_topk

                kd = LMDistillConfig(alpha=alpha, temperature=temperature, top_k=top_k)
                _TOPK[key] = _teacher_topk(dataclasses.replace(state, recipe=dataclasses.replace(
                    state.recipe, distill=kd)), teacher, len(w), None)
            else:
                _TOPK[key] = distill.teacher_topk(teacher, w, top_k, temperature)
        topk = _TOPK[key]
    t0 = time.perf_counter()
    distill.train(model, w, train_cfg.epochs, train_cfg.batch_size, train_cfg.learning_rate, seed, teacher,
                  alpha, temperature, topk=topk)
    seconds = time.perf_counter() - t0
    val = distill.keras_perplexity(model, windows(state.ids["val"], cfg.context))
    steps = (len(w) // train_cfg.batch_size) * train_cfg.epochs
    return model, {"role": role, "layers": cfg.layers, "dim": cfg.dim, "ff_dim": cfg.ff_dim,
                   "parameters": count_params(model), "tokens": int(len(w) * cfg.context), "epochs": train_cfg.epochs,
                   "batch": train_cfg.batch_size, "lr": train_cfg.learning_rate, "steps": steps,
                   "kd": None if teacher is None else f"a {alpha} T {temperature} k {top_k}", "seed": seed,
                   "val_ppl": round(val, 2), "train_s": round(seconds, 1), "load": round(os.getloadavg()[0], 1),
                   "note": "head bias = unigram log-probs"}


def _print_row(row: dict) -> None:
    print(f"{row['role']:<16} {row['layers']}x{row['dim']:<4} {row['parameters']:>9,} {row['tokens']:>9,} "
          f"{row['epochs']:>2} {row['batch']:>3} {row['lr']:>7g} {row['steps']:>5} {row['kd'] or '-':>17} "
          f"{row['seed']:>4} {row['val_ppl']:>8.2f} {row['train_s']:>7.0f} {row.get('load') or float('nan'):>5.1f}  "
          f"{row.get('note', '')}", flush=True)


HEAD = (f"{'run':<16} {'LxD':<6} {'params':>9} {'tokens':>9} {'ep':>2} {'bs':>3} {'lr':>7} {'steps':>5} "
        f"{'KD':>17} {'seed':>4} {'val ppl':>8} {'train s':>7} {'load':>5}  note")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("role", nargs="?", choices=("teacher", "student"))
    ap.add_argument("--layers", type=int)
    ap.add_argument("--dim", type=int)
    ap.add_argument("--ff-dim", type=int)
    ap.add_argument("--tokens", type=int)
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--distill", nargs="+", help="ALPHA,T[,K]: distil from --teacher (a weights .h5 of the default teacher "
                                      "shape) on its top-K logits (K 0: full logits on the fly; default: the recipe's); several: one run each")
    ap.add_argument("--teacher", type=Path, help="teacher weights (.h5); default: the default recipe's cached teacher")
    ap.add_argument("--save", type=Path, help="save the trained weights here (.h5)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--gain", action="store_true", help="the default recipe: data alone vs distilled, per seed")
    ap.add_argument("--table", action="store_true", help="print the runs recorded in --out")
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "cache")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.table:
        print(HEAD)
        for line in args.out.read_text().splitlines():
            _print_row(json.loads(line))
        return 0
    if not args.role and not args.gain:
        ap.error("give teacher or student, or --gain, or --table")

    import tempfile

    from tflite_compress.lm.config import LMRecipe

    recipe = LMRecipe()
    work = Path(tempfile.mkdtemp(prefix="lm_sweep_"))
    state = _state(recipe, args.cache_dir, work)

    def load_teacher():
        nonlocal state
        from tflite_compress.lm.pipeline import _cached_or_trained

        path = args.teacher
        if path is None:
            teacher, rec = _cached_or_trained(state, _Quiet(), "teacher", recipe.teacher, recipe.teacher_train,
                                              "teacher")
            state = state.record("teacher", rec)
        else:
            from tflite_compress.lm.models import build_decoder

            teacher = build_decoder(recipe.teacher, len(state.tokenizer.vocab), "teacher", 0)
            teacher.load_weights(str(path))
        teacher.trainable = False
        return teacher

    rows = []
    print(HEAD, flush=True)

    def record(row):
        rows.append(row)
        _print_row(row)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as fh:
            fh.write(json.dumps(row) + "\n")

    if args.gain:
        teacher = load_teacher()
        gains = []
        for seed in args.seeds:
            _, data = train_one(state, "student-data", recipe.student, recipe.student_train, seed)
            record(data)
            _, kd = train_one(state, "student-kd", recipe.student, recipe.student_train, seed, teacher,
                              recipe.distill.alpha, recipe.distill.temperature, recipe.distill.top_k)
            record(kd)
            gains.append(data["val_ppl"] - kd["val_ppl"])
        print("\ndistillation gain on val (data alone - distilled, ppl): " +
              ", ".join(f"seed {s}: {g:+.2f}" for s, g in zip(args.seeds, gains)) +
              (f"; mean {statistics.mean(gains):+.2f}" + (f" +- {statistics.stdev(gains):.2f} (sd)" if len(gains) > 1 else "")))
        return 0

    base = recipe.teacher if args.role == "teacher" else recipe.student
    cfg = dataclasses.replace(base, **{k: v for k, v in (("layers", args.layers), ("dim", args.dim),
                                                           ("ff_dim", args.ff_dim)) if v is not None})
    base_train = recipe.teacher_train if args.role == "teacher" else recipe.student_train
    train_cfg = dataclasses.replace(base_train, **{k: v for k, v in (
        ("max_train_tokens", args.tokens), ("epochs", args.epochs), ("batch_size", args.batch),
        ("learning_rate", args.lr)) if v is not None})
    if train_cfg.max_train_tokens > len(state.ids["train"]):
        # the streams hold the default recipe's budget: encode more of the train split for this run
        from tflite_compress.lm.tokenizer import stream, windows

        ids = stream(state.corpus.train, state.tokenizer, train_cfg.max_train_tokens + 1)
        state = dataclasses.replace(state, train_windows=windows(ids, cfg.context))
    settings = [(None, 1.0, 1.0, 0)]
    if args.distill:
        teacher = load_teacher()
        settings = []
        for spec in args.distill:
            parts = spec.split(",")
            settings.append((teacher, float(parts[0]), float(parts[1]),
                             int(parts[2]) if len(parts) > 2 else recipe.distill.top_k))
    for teacher, alpha, temp, top_k in settings:
        for seed in args.seeds:
            model, row = train_one(state, args.role + ("-kd" if teacher is not None else ""), cfg, train_cfg, seed,
                                   teacher, alpha, temp, top_k)
            record(row)
            if args.save:
                model.save_weights(str(args.save))
    return 0


class _Quiet:
    def step(self, msg):
        print(msg, file=sys.stderr)

    def detail(self, msg):
        print("  " + msg, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
