"""Benchmark the student families on CLINC150: float against INT8 per target, or the QAT/PQAT variants.

    .venv/bin/python benchmarks/students.py [--families bag,cnn,transformer,transformer_int] [--json FILE]
    .venv/bin/python benchmarks/students.py --qat [--families ...]    # the QAT / pruning variants below

Default (targets): per family, the distilled float student's float32 file, its `npu`-target INT8
file (full integer) and its `cpu`-target file (`convert.convert`, the fastest measured plan), each
with in-scope test accuracy, p50 invoke microseconds at batch 1 and 8 on 1 thread (all files of a
family timed in interleaved rounds, so the ratios are side by side), speed-up over float, and the
delegation summary (ops in XNNPACK / all ops, partitions). `transformer_int` is the transformer
built for integer kernels (ReLU feed-forward, static-shape projections, LayerNormalization kept).

Every student is distilled from the cached MiniLM teacher logits (runs/cache; computed once if
missing), then converted and measured in one run, in the LiteRT interpreter: in-scope accuracy
on the CLINC150 test split, raw and gzip size, p50 `invoke()` microseconds at batch 1. Every
`.tflite` measured is kept under benchmarks/out/. Not a test: it trains on full CLINC150.

Variants per family:
- float:        the distilled float student, as a float32 .tflite;
- ptq_int8:     post-training full-integer INT8 of that same float model (500 calibration rows);
- qat_int8:     QAT (fine-tuned from the float model) -> full-integer INT8;
- pqat50_int8:  50% magnitude pruning -> prune-preserving QAT -> full-integer INT8
                (its `weight_sparsity` is measured in the .tflite weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress import _tf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tflite_compress.config import (  # noqa: E402
    ConvertConfig, DistillConfig, PruneConfig, QATConfig, StudentConfig, TeacherConfig, TokenizerConfig,
)

OUT = ROOT / "benchmarks" / "out"

FAMILIES = {
    "bag": StudentConfig(family="bag", embedding_dim=128, hidden_units=256, dropout=0.2),
    "cnn": StudentConfig(family="cnn"),
    "transformer": StudentConfig(family="transformer", embedding_dim=64, num_heads=2, ff_units=128,
                                 transformer_layers=2, hidden_units=256, dropout=0.2),
    # Built for integer kernels: ReLU feed-forward, static-shape projections. LayerNormalization
    # stays: DynamicTanh (norm="tanh") did not learn here (val in-scope 11.4% post-norm, 34.5%
    # pre-norm after 4 epochs, against 88.3% with LayerNormalization: benchmarks/transformer_norms.py).
    "transformer_int": StudentConfig(family="transformer", embedding_dim=64, num_heads=2, ff_units=128,
                                     transformer_layers=2, hidden_units=256, dropout=0.2,
                                     ffn_activation="relu", static_shapes=True),
}
# Per-family float training: the transformer needs a gentler learning rate.
DISTILL = {
    "bag": DistillConfig(epochs=12),
    "cnn": DistillConfig(epochs=12),
    "transformer": DistillConfig(epochs=12, learning_rate=1e-3),
    "transformer_int": DistillConfig(epochs=12, learning_rate=1e-3),
}
PRUNE = PruneConfig(target_sparsity=0.5, epochs=4)
QAT = QATConfig(epochs=3)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_data(sequence_length: int = 32):
    """CLINC150 ids for every split, labels, and the teacher's cached logits."""
    from tflite_compress.data import load_clinc150, stratified_sample
    from tflite_compress.teacher import teacher_outputs
    from tflite_compress.tokenizer import WordPieceTokenizer, learn_vocabulary

    ds = load_clinc150()
    tok_cfg = TokenizerConfig(sequence_length=sequence_length)
    vocab = learn_vocabulary(ds.train.texts, tok_cfg)
    tok = WordPieceTokenizer(vocab, tok_cfg)
    names = list(ds.label_names)
    x = {s: tok.encode_batch(getattr(ds, s).texts) for s in ("train", "val", "test")}
    y = {s: getattr(ds, s).label_ids(names, s) for s in ("train", "val", "test")}
    outs = teacher_outputs(TeacherConfig(), {s: getattr(ds, s).texts for s in ("train", "val", "test")},
                           y["train"], len(names), ROOT / "runs" / "cache", student_ids=x, log=_log)
    cal_idx = stratified_sample(ds.train.labels, ConvertConfig().calibration_samples, seed=0)
    return {"x": x, "y": y, "names": names, "oos_id": names.index(ds.oos_label), "vocab_size": len(vocab),
            "teacher": outs, "calibration": x["train"][cal_idx], "tokenizer": tok}


def in_scope_accuracy(pred: np.ndarray, y: np.ndarray, oos_id: int) -> float:
    mask = y != oos_id
    return float(np.mean(pred[mask] == y[mask]))


def measure(content: bytes, data: dict, family: str, variant: str) -> dict:
    """Accuracy, sizes and p50 invoke latency of one .tflite, which is kept under benchmarks/out/."""
    from tflite_compress.runtime import TFLiteModel, file_stats, latency_us, weight_sparsity

    path = OUT / f"{family}_{variant}.tflite"
    path.write_bytes(content)
    model = TFLiteModel(content)
    pred = model.predict(data["x"]["test"], batch_size=256).argmax(1)
    row = {"family": family, "variant": variant,
           "in_scope_accuracy": in_scope_accuracy(pred, data["y"]["test"], data["oos_id"]),
           **file_stats(content),
           "p50_us": latency_us(model, data["x"]["test"], runs=300, warmup=30)["invoke_us_p50"],
           "weight_sparsity": weight_sparsity(model)["overall"],
           "tflite": str(path.relative_to(ROOT))}
    _log(f"  {family:11s} {variant:12s} acc {row['in_scope_accuracy']:.4f}  {row['size_bytes'] / 1024:7.1f} KB  "
         f"gz {row['gzip_bytes'] / 1024:7.1f} KB  p50 {row['p50_us']:7.1f} us  sparsity {row['weight_sparsity']:.3f}")
    return row


def bench_family(family: str, data: dict, verbose: int, feature_weight: float = 0.0, float_only: bool = False) -> list[dict]:
    from tflite_compress import convert, distill, prune, qat
    from tflite_compress.pipeline import _cosine_lr
    from tflite_compress.students import build_student

    x, y = data["x"], data["y"]
    num_labels = len(data["names"])
    dcfg = dataclasses.replace(DISTILL[family], feature_weight=feature_weight)
    targets = {s: distill.pack_targets(y[s], data["teacher"].logits[s], num_labels) for s in ("train", "val")}
    batch = dcfg.batch_size
    rows, timings = [], {}

    # Float student, distilled from the cached teacher logits (and features if asked).
    t0 = time.perf_counter()
    student = build_student(FAMILIES[family], data["vocab_size"], x["train"].shape[1], num_labels)
    if feature_weight > 0:
        train_model, fit_targets = distill.feature_distillation(student, dcfg, targets, data["teacher"].features)
    else:
        distill.compile_for_distillation(student, dcfg)
        train_model, fit_targets = student, targets
    distill.fit(train_model, x["train"], fit_targets["train"], dcfg.epochs, batch, verbose=verbose,
                callbacks=[_cosine_lr(dcfg.learning_rate, dcfg.epochs)])
    timings["float_s"] = time.perf_counter() - t0
    suffix = f"_fd{feature_weight:g}" if feature_weight > 0 else ""
    rows.append(measure(convert.to_float(student), data, family, "float" + suffix))
    if float_only:
        return rows

    # Post-training full-integer INT8 of the same float model.
    rows.append(measure(convert.to_int8(student, data["calibration"]), data, family, "ptq_int8"))

    # QAT from the float model.
    t0 = time.perf_counter()
    q = qat.quantize_student(student, preserve_sparsity=False)
    distill.compile_for_distillation(q, dcfg, learning_rate=QAT.learning_rate)
    distill.fit(q, x["train"], targets["train"], QAT.epochs, batch, verbose=verbose, seed=2)
    timings["qat_s"] = time.perf_counter() - t0
    rows.append(measure(convert.to_int8(q, data["calibration"]), data, family, "qat_int8"))

    # 50% pruning -> prune-preserving QAT.
    t0 = time.perf_counter()
    steps = int(np.ceil(len(x["train"]) / batch)) * PRUNE.epochs
    p = prune.prune(student, PRUNE, steps)
    distill.compile_for_distillation(p, dcfg, learning_rate=PRUNE.learning_rate)
    distill.fit(p, x["train"], targets["train"], PRUNE.epochs, batch, callbacks=prune.callbacks(), verbose=verbose, seed=1)
    stripped = prune.strip(p)
    pq = qat.quantize_student(stripped, preserve_sparsity=True)
    distill.compile_for_distillation(pq, dcfg, learning_rate=QAT.learning_rate)
    distill.fit(pq, x["train"], targets["train"], QAT.epochs, batch, verbose=verbose, seed=2)
    timings["pqat_s"] = time.perf_counter() - t0
    content = convert.to_int8(pq, data["calibration"])
    row = measure(content, data, family, "pqat50_int8")
    row["keras_sparsity"] = prune.overall_sparsity(stripped)
    row["tflite_sparsity_by_layer"] = prune.tflite_sparsity_by_layer(content, [lay.name for lay in stripped.layers])["by_layer"]
    rows.append(row)
    for r in rows:
        r["train_timings_s"] = timings
    return rows


def train_float(family: str, data: dict, verbose: int):
    from tflite_compress import distill
    from tflite_compress.pipeline import _cosine_lr
    from tflite_compress.students import build_student

    x, y = data["x"], data["y"]
    num_labels = len(data["names"])
    dcfg = DISTILL[family]
    targets = distill.pack_targets(y["train"], data["teacher"].logits["train"], num_labels)
    student = build_student(FAMILIES[family], data["vocab_size"], x["train"].shape[1], num_labels)
    distill.compile_for_distillation(student, dcfg)
    distill.fit(student, x["train"], targets, dcfg.epochs, dcfg.batch_size, verbose=verbose,
                callbacks=[_cosine_lr(dcfg.learning_rate, dcfg.epochs)])
    return student


def bench_targets(family: str, data: dict, verbose: int, rounds: int, min_agreement: float) -> list[dict]:
    """Float, npu INT8 and cpu INT8 files of one float student: accuracy, p50 at batch 1 and 8, delegation."""
    from tflite_compress import convert
    from tflite_compress.config import ConvertConfig
    from tflite_compress.runtime import TFLiteModel
    from tflite_compress.runtime.bench import side_by_side_us
    from tflite_compress.runtime.delegation import delegation_report

    t0 = time.perf_counter()
    student = train_float(family, data, verbose)
    _log(f"  trained in {time.perf_counter() - t0:.0f} s")
    files = {"float": convert.to_float(student)}
    files["int8_npu"] = convert.convert(student, data["calibration"], ConvertConfig(target="npu")).content
    cpu = convert.convert(student, data["calibration"], ConvertConfig(target="cpu", cpu_min_agreement=min_agreement))
    files["int8_cpu"] = cpu.content
    _log(f"  cpu plan: {cpu.plan['chosen']} ({cpu.plan['why']})")
    rows = []
    for variant, content in files.items():
        path = OUT / f"{family}_{variant}.tflite"
        path.write_bytes(content)
        pred = TFLiteModel(content).predict(data["x"]["test"], batch_size=256).argmax(1)
        deleg = delegation_report(content)
        rows.append({"family": family, "variant": variant, "size_bytes": len(content),
                     "in_scope_accuracy": in_scope_accuracy(pred, data["y"]["test"], data["oos_id"]),
                     "ops_delegated": deleg["ops_delegated"], "ops_total": deleg["ops_total"],
                     "partitions": deleg["partitions"], "outside_xnnpack": deleg["outside"],
                     "tflite": str(path.relative_to(ROOT)),
                     **({"cpu_plan": cpu.plan} if variant == "int8_cpu" else {})})
    models = {k: TFLiteModel(c) for k, c in files.items()}
    for batch in (1, 8):
        lat = side_by_side_us(models, data["x"]["test"], batch, rounds, runs=200, warmup=20)
        for r in rows:
            r[f"p50_us_b{batch}"] = lat[r["variant"]]
            r[f"speedup_b{batch}"] = lat["float"] / lat[r["variant"]]
    for r in rows:
        _log(f"  {family:15s} {r['variant']:9s} acc {r['in_scope_accuracy']:.4f}  b1 {r['p50_us_b1']:7.1f} us "
             f"(x{r['speedup_b1']:.2f})  b8 {r['p50_us_b8']:7.1f} us (x{r['speedup_b8']:.2f})  "
             f"{r['ops_delegated']}/{r['ops_total']} in XNNPACK, {r['partitions']} partitions")
    return rows


def format_targets(rows: list[dict]) -> str:
    head = ("family", "variant", "in-scope acc", "KB", "p50 us b1", "x float b1", "p50 us b8", "x float b8", "XNNPACK ops", "partitions")
    body = [(r["family"], r["variant"], f"{100 * r['in_scope_accuracy']:.2f}%", f"{r['size_bytes'] / 1024:.1f}",
             f"{r['p50_us_b1']:.1f}", f"{r['speedup_b1']:.2f}", f"{r['p50_us_b8']:.1f}", f"{r['speedup_b8']:.2f}",
             f"{r['ops_delegated']}/{r['ops_total']}", str(r["partitions"])) for r in rows]
    widths = [max(len(str(t[c])) for t in [head, *body]) for c in range(len(head))]
    lines = ["  ".join(str(t[c]).ljust(widths[c]) for c in range(len(head))).rstrip() for t in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("outside_xnnpack") and r["variant"] != "float" or (r["variant"] == "float" and r["partitions"] > 1):
            lines.append(f"  {r['family']} {r['variant']}: outside XNNPACK "
                         + ", ".join(f"{k} x{v}" for k, v in r["outside_xnnpack"].items()))
        if "cpu_plan" in r:
            plan = r["cpu_plan"]
            lines.append(f"  {r['family']} cpu plan: {plan['chosen']}; " + "; ".join(
                f"{c['plan']} {c['latency_us_p50']:.1f} us x{c['speedup_vs_float']:.2f} agree {c['agreement_with_float']:.1%}"
                for c in plan["candidates"]))
    return "\n".join(lines)


def format_table(rows: list[dict]) -> str:
    head = ("family", "variant", "in-scope acc", "raw KB", "gzip KB", "p50 us", "w. sparsity")
    body = [(r["family"], r["variant"], f"{100 * r['in_scope_accuracy']:.2f}%", f"{r['size_bytes'] / 1024:.1f}",
             f"{r['gzip_bytes'] / 1024:.1f}", f"{r['p50_us']:.1f}", f"{100 * r['weight_sparsity']:.1f}%") for r in rows]
    widths = [max(len(str(t[c])) for t in [head, *body]) for c in range(len(head))]
    lines = ["  ".join(str(t[c]).ljust(widths[c]) for c in range(len(head))).rstrip() for t in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated: " + ", ".join(FAMILIES))
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    ap.add_argument("--feature-weight", type=float, default=0.0,
                    help="feature distillation weight in the float stage (default 0: off)")
    ap.add_argument("--float-only", action="store_true", help="train and measure the float students only")
    ap.add_argument("--verbose", type=int, default=0, help="Keras fit verbosity")
    ap.add_argument("--qat", action="store_true", help="the QAT / PQAT variants instead of the per-target files")
    ap.add_argument("--epochs", type=int, default=None, help="float training epochs of every family (default: DISTILL's)")
    ap.add_argument("--cpu-min-agreement", type=float, default=0.9,
                    help="the cpu plan's top-1 agreement floor with the float file on the calibration rows")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds per batch size (targets mode)")
    args = ap.parse_args(argv)
    if args.epochs is not None:
        for name in DISTILL:
            DISTILL[name] = dataclasses.replace(DISTILL[name], epochs=args.epochs)
    families = [f.strip() for f in args.families.split(",") if f.strip()]
    bad = [f for f in families if f not in FAMILIES]
    if bad:
        ap.error(f"--families: unknown {', '.join(bad)}; expected some of {', '.join(FAMILIES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_data()
    rows = []
    if not args.qat and not args.float_only:
        for family in families:
            _log(f"[{family}]")
            rows += bench_targets(family, data, args.verbose, args.rounds, args.cpu_min_agreement)
            if args.json:  # after every family: a long run keeps what it measured
                Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        print(format_targets(rows))
        print(f"total {time.perf_counter() - t0:.0f} s (1 thread, XNNPACK; p50 = median over {args.rounds} interleaved rounds)")
        return 0
    for family in families:
        _log(f"[{family}]")
        rows += bench_family(family, data, args.verbose, args.feature_weight, args.float_only)
    print(format_table(rows))
    by = {(r["family"], r["variant"]): r for r in rows}
    for family in [] if args.float_only else families:
        f, ptq, q, pq = (by[(family, v)] for v in ("float", "ptq_int8", "qat_int8", "pqat50_int8"))
        print(f"{family}: QAT INT8 - float {100 * (q['in_scope_accuracy'] - f['in_scope_accuracy']):+.2f} pt; "
              f"QAT - PTQ {100 * (q['in_scope_accuracy'] - ptq['in_scope_accuracy']):+.2f} pt; "
              f"PQAT-50% sparsity in .tflite {100 * pq['weight_sparsity']:.1f}%, "
              f"gzip {100 * (1 - pq['gzip_bytes'] / q['gzip_bytes']):.1f}% below unpruned QAT INT8")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
