"""Out-of-scope experiments on CLINC150, one change at a time, on cached teacher features.

    python benchmarks/oos_sweep.py features            # MiniLM features of every text set (cached)
    python benchmarks/oos_sweep.py teacher             # teacher heads: each extra-data source, val-chosen rule
    python benchmarks/oos_sweep.py heads               # teacher head kinds (linear, MLP, ensembles), val and test
    python benchmarks/oos_sweep.py student NAME...     # the demo pipeline with one change -> runs/oos-NAME
    python benchmarks/oos_sweep.py student --quick NAME  # float + PTQ INT8 only, no augmentation (cheap)
    python benchmarks/oos_sweep.py rule-on MODEL       # calibrate a rule on val for an existing INT8 file
    python benchmarks/oos_sweep.py table               # float and INT8 figures of every runs/oos-NAME
    python benchmarks/oos_sweep.py runs DIR...          # val and test figures of the INT8 files of runs

Every figure is on CLINC150 test; the threshold of the rule is chosen on val (oos.calibrate_rule).
Features are cached under runs/cache/ (one .npz per text set, keyed by its texts), as the demo caches them.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "runs" / "cache"  # the demo's teacher cache: a later `demo` reuses these features

from tflite_compress.data import OOS_LABEL, chitchat_texts, load_clinc150, mix_texts  # noqa: E402


def text_sets(ds) -> dict[str, tuple[str, ...]]:
    from tflite_compress import distill

    return {
        "train": ds.train.texts, "val": ds.val.texts, "test": ds.test.texts,
        "chitchat": chitchat_texts(5000, seed=0, exclude=ds.train.texts + ds.val.texts + ds.test.texts),
        "mix": mix_texts(ds.train.texts, ds.train.labels, 3000, seed=0, skip_label=OOS_LABEL),
        "augmented": tuple(distill.augment_texts(ds.train.texts, 1, 0.15, 0.5, seed=0)),
        "tang": tuple(distill.tang_augment_texts(ds.train.texts, 1, seed=0)),
    }


def all_features(ds, names=None):
    """MiniLM features of each text set, through the pipeline's own per-set cache (runs/cache)."""
    from tflite_compress.config import TeacherConfig
    from tflite_compress.teacher import FeatureCache, teacher_features

    sets = text_sets(ds)
    wanted = {n: sets[n] for n in (names or sets)}
    feats, _, _ = teacher_features(TeacherConfig(), wanted, FeatureCache(CACHE), log=print)
    return sets, feats


def _fmt(name, m, extra=""):
    a, r = m["argmax"], m["rule"]
    return (f"{name:<34} {100 * a['accuracy_in_scope']:6.2f} {100 * a['recall_out_of_scope']:6.1f}   "
            f"{100 * r['accuracy_in_scope']:6.2f} {100 * r['recall_out_of_scope']:6.1f} {100 * r['precision_out_of_scope']:6.1f}"
            f"  {r['threshold']:.3f}  {m['auroc_max_softmax']:.4f} {extra}")


HEADER = (f"{'change':<34} {'in-sc':>6} {'oosR':>6}   {'in-sc':>6} {'oosR':>6} {'oosP':>6}  thresh  AUROC\n"
          f"{'':<34} {'(arg-max)':>13}   {'(val-chosen max-softmax rule)':>29}")


def teacher_sweep(ds):
    """Linear heads on frozen MiniLM features, one extra-data source at a time."""
    from tflite_compress.config import TeacherConfig
    from tflite_compress.oos import evaluate_oos
    from tflite_compress.teacher import train_linear_head

    sets, f = all_features(ds, ["train", "val", "test", "chitchat", "mix"])
    names = list(ds.label_names)
    y = {s: getattr(ds, s).label_ids(names) for s in ("train", "val", "test")}
    oos = names.index(OOS_LABEL)
    variants = {"baseline (CLINC150 train)": [], "+ chitchat 5000 as oos": ["chitchat"],
                "+ mix 3000 as oos": ["mix"], "+ chitchat 5000 + mix 3000": ["chitchat", "mix"],
                "+ chitchat 2000 as oos": ["chitchat:2000"]}
    print(HEADER)
    for label, extra in variants.items():
        fx, yx = [f["train"]], [y["train"]]
        for e in extra:
            name, _, n = e.partition(":")
            rows = f[name][: int(n)] if n else f[name]
            fx.append(rows)
            yx.append(np.full(len(rows), oos, np.int32))
        head = train_linear_head(np.concatenate(fx), np.concatenate(yx), len(names), TeacherConfig())
        _, rep = evaluate_oos(head(f["val"]), y["val"], head(f["test"]), y["test"], names, OOS_LABEL)
        print(_fmt(label, rep), flush=True)


MLP5 = {"head_hidden": 1024, "head_epochs": 40, "head_learning_rate": 1e-3, "head_ensemble": 5}

def heads_sweep(ds):
    """Teacher heads on the frozen MiniLM features of the demo (train/val/test), each row with its
    val in-scope accuracy (the column the choice is made by) beside the test figures."""
    import dataclasses

    from tflite_compress.config import TeacherConfig
    from tflite_compress.oos import evaluate_oos
    from tflite_compress.teacher import train_head

    _, f = all_features(ds, ["train", "val", "test"])
    names = list(ds.label_names)
    y = {s: getattr(ds, s).label_ids(names) for s in ("train", "val", "test")}
    oos = names.index(OOS_LABEL)
    mlp = TeacherConfig(**MLP5)
    variants = {
        "linear (the default)": TeacherConfig(),
        "linear, 200 epochs lr 1e-3": TeacherConfig(head_epochs=200, head_learning_rate=1e-3),
        "MLP 1024 x1": dataclasses.replace(mlp, head_ensemble=1),
        "MLP 1024 x3": dataclasses.replace(mlp, head_ensemble=3),
        "MLP 1024 x5": mlp,
        "MLP 2048 x3": dataclasses.replace(mlp, head_hidden=2048, head_ensemble=3),
        "MLP 1024 dropout 0.5 x3": dataclasses.replace(mlp, head_dropout=0.5, head_ensemble=3),
    }
    print(f"{'val in-sc':>9}  " + HEADER.replace("\n", "\n" + " " * 11))
    for label, cfg in variants.items():
        t0 = time.perf_counter()
        head = train_head(f["train"], y["train"], len(names), cfg)
        lv, lt = head(f["val"]), head(f["test"])
        keep = y["val"] != oos
        _, rep = evaluate_oos(lv, y["val"], lt, y["test"], names, OOS_LABEL)
        print(f"{100 * float((lv.argmax(1) == y['val'])[keep].mean()):9.2f}  "
              + _fmt(label, rep, f"{time.perf_counter() - t0:.0f} s"), flush=True)


STUDENT_CHANGES = {
    "baseline": {},
    "chitchat": {"oos": {"chitchat_negatives": 5000}},
    "chitchat-mix": {"oos": {"chitchat_negatives": 5000, "mix_negatives": 3000}},
    "tang": {"distill": {"augment_style": "tang"}},
    "chitchat-tang": {"oos": {"chitchat_negatives": 5000}, "distill": {"augment_style": "tang"}},
    # the teacher: 5 MLP heads averaged (chosen on val by `teacher-heads`)
    "mlp5": {"teacher": MLP5},
    "mlp5-aug2": {"teacher": MLP5, "distill": {"augment_copies": 2}},
    "mlp5-aug3": {"teacher": MLP5, "distill": {"augment_copies": 3}},
    "mlp5-chitchat1000": {"teacher": MLP5, "oos": {"chitchat_negatives": 1000}},
    # three copies in the steps of one: 10 epochs, prune and QAT 2 each (as many rows seen as mlp5)
    "mlp5-aug3-short": {"teacher": MLP5, "distill": {"augment_copies": 3, "epochs": 10}, "prune": {"epochs": 2},
                        "qat": {"epochs": 2}},
    "mlp5-aug3-chitchat1000": {"teacher": MLP5, "distill": {"augment_copies": 3}, "oos": {"chitchat_negatives": 1000}},
    "mlp5-tang3-chitchat1000": {"teacher": MLP5, "distill": {"augment_copies": 3, "augment_style": "tang"},
                                "oos": {"chitchat_negatives": 1000}},
    "mlp5-aug6-chitchat1000": {"teacher": MLP5, "distill": {"augment_copies": 6}, "oos": {"chitchat_negatives": 1000}},
    "mlp5-aug3-short-chitchat1000": {"teacher": MLP5, "distill": {"augment_copies": 3, "epochs": 10},
                                     "prune": {"epochs": 2}, "qat": {"epochs": 2}, "oos": {"chitchat_negatives": 1000}},
}


QUICK = {"stages": {"prune": False, "qat": False}, "distill": {"augment_copies": 0}}


def student_run(name: str, quick: bool = False):
    """The demo pipeline (default recipe + one change) into runs/oos-NAME; its teacher features
    come from the cache. `quick`: no pruning, no QAT (INT8 by post-training quantization) and no
    augmented copies, for a cheap side-by-side of a change (runs/oos-quick-NAME)."""
    from tflite_compress.config import Recipe
    from tflite_compress.data import CALIBRATION_DIR, calibration_texts
    from tflite_compress.pipeline import format_table, run_text_pipeline
    from tflite_compress.recipes import load_recipe

    base = load_recipe(None).to_dict()
    for section, changes in list(QUICK.items() if quick else []) + list(STUDENT_CHANGES[name].items()):
        base[section].update(changes)
    recipe = Recipe.from_dict(base)
    cal = calibration_texts(CALIBRATION_DIR, recipe.convert.calibration_samples, recipe.seed)
    t0 = time.perf_counter()
    result = run_text_pipeline(load_clinc150(), recipe, ROOT / "runs" / f"oos-{'quick-' if quick else ''}{name}", CACHE, calibration_texts=cal, verbose=0)
    print(format_table(result.report))
    print(f"{name}: {time.perf_counter() - t0:.0f} s")


def rule_on_model(path: str):
    """Calibrate the rule on val for an existing INT8 file (e.g. the committed app model, made
    before this change) and print both schemes on test: the baseline of every change here."""
    from tflite_compress.oos import evaluate_oos
    from tflite_compress.runtime import load_bundle

    ds = load_clinc150()
    bundle = load_bundle(path)
    names = bundle.labels
    logits = {s: bundle.model.predict(bundle.tokenizer.encode_batch(getattr(ds, s).texts)) for s in ("val", "test")}
    y = {s: getattr(ds, s).label_ids(names) for s in ("val", "test")}
    _, rep = evaluate_oos(logits["val"], y["val"], logits["test"], y["test"], names, OOS_LABEL)
    print(HEADER)
    print(_fmt(Path(path).name, rep, f"{len(bundle.model.content) / 1024:.0f} KB"))


def runs_table(paths):
    """Val and test figures of the INT8 files of demo-shaped runs (report.json folders), side by side:
    choices are made by the val columns; the test columns only report."""
    print(f"{'run':<34} {'val in-sc':>9} {'val acc':>7} {'val oosR':>8} | {'test in-sc':>10} {'oosR':>5} "
          f"{'in (rule)':>9} {'oosR':>5} {'oosP':>5} {'thresh':>6} {'min':>5}")
    for d in paths:
        r = json.loads((Path(d) / "report.json").read_text())
        o = r["stages"]["int8"]["oos"]
        c, a, ru = o["calibration"], o["argmax"], o["rule"]
        print(f"{Path(d).name:<34} {100 * c['val_argmax']['accuracy_in_scope']:9.2f} {100 * c['val']['accuracy']:7.2f} "
              f"{100 * c['val']['recall_out_of_scope']:8.1f} | {100 * a['accuracy_in_scope']:10.2f} "
              f"{100 * a['recall_out_of_scope']:5.1f} {100 * ru['accuracy_in_scope']:9.2f} {100 * ru['recall_out_of_scope']:5.1f} "
              f"{100 * ru['precision_out_of_scope']:5.1f} {c['threshold']:6.3f} {r['timings_s']['total'] / 60:5.1f}")


def table():
    print(HEADER.replace("change", "student run (float | INT8)"))
    for name in [f"{q}{n}" for q in ("", "quick-") for n in STUDENT_CHANGES]:
        p = ROOT / "runs" / f"oos-{name}" / "report.json"
        if not p.is_file():
            continue
        r = json.loads(p.read_text())
        for stage in ("float", "int8"):
            o = r["stages"][stage].get("oos")
            if o:
                extra = f"{r['summary']['size_bytes'] / 1024:.0f} KB" if stage == "int8" else ""
                print(_fmt(f"{name} {stage}", o, extra))


COMMANDS = ("features", "teacher", "heads", "student", "rule-on", "table", "runs")


def _usage(message: str) -> None:
    """One line on stderr, exit 2, before anything runs or is written."""
    print(f"oos_sweep.py: {message}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    rest = sys.argv[2:]
    if cmd not in COMMANDS:
        _usage(f"expected a command, one of {', '.join(COMMANDS)}; got {cmd!r}")
    if cmd == "student":
        bad = [n for n in rest if n != "--quick" and n not in STUDENT_CHANGES]
        if bad or not [n for n in rest if n != "--quick"]:
            _usage(f"student: expected change names from {', '.join(STUDENT_CHANGES)}; got {', '.join(bad) or 'none'}")
    if cmd == "runs":
        bad = [d for d in rest if not (Path(d) / "report.json").is_file()]
        if bad or not rest:
            _usage(f"runs: expected run folders holding report.json; got {', '.join(bad) or 'none'}")
    if cmd == "rule-on" and not (rest and Path(rest[0]).is_file()):
        _usage(f"rule-on: expected an INT8 .tflite file; got {rest[0] if rest else 'none'}")
    ds = load_clinc150()
    if cmd == "features":
        all_features(ds)
    elif cmd == "teacher":
        teacher_sweep(ds)
    elif cmd == "heads":
        heads_sweep(ds)
    elif cmd == "student":
        for n in [a for a in sys.argv[2:] if a != "--quick"]:
            student_run(n, quick="--quick" in sys.argv)
    elif cmd == "rule-on":
        rule_on_model(sys.argv[2])
    elif cmd == "table":
        table()
    elif cmd == "runs":
        runs_table(sys.argv[2:])
