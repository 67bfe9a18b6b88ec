"""Fine-tuning all-MiniLM-L6-v2 on CLINC150 train, epoch by epoch, val beside test.

    python benchmarks/teacher_finetune.py --epochs 3                 # prints a row per epoch
    python benchmarks/teacher_finetune.py --epochs 3 --save runs/ft  # also keeps the encoder after each epoch
    python benchmarks/teacher_finetune.py --heads runs/ft            # heads on each kept encoder's features

The protocol is the pipeline's own (`MiniLMTeacher.fine_tune`, `"teacher": {"fine_tune": true}`):
a fresh linear head on the pooled features, at its own learning rate; warm-up, then cosine decay
over all the epochs asked for. After each epoch (its `on_epoch` hook): in-scope accuracy and
out-of-scope recall by arg-max of the fine-tuned model's own logits on val and test, and the
seconds the epoch took. Val chooses; test reports.

`--heads DIR`: for each kept encoder, the features of train/val/test through it, then three
teachers on them: the fine-tuned head itself, the default linear head trained on those features
(what the pipeline's `teacher.fine_tune` does after tuning), and `int8-oos`'s 5 MLP heads; each
with a `max_logit` rule chosen on val (val acc: all 151 classes, out-of-scope its own class).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress.data import OOS_LABEL, load_clinc150  # noqa: E402


def scores(y, pred, oos):
    ins = y != oos
    return 100 * float(np.mean(pred[ins] == y[ins])), 100 * float(np.mean(pred[~ins] == oos))


def heads(folder: Path) -> int:
    import keras

    from tflite_compress.config import TeacherConfig
    from tflite_compress.oos import evaluate_oos
    from tflite_compress.teacher import FINE_TUNE_FEATURE_SCALE, MiniLMTeacher, train_head

    ds = load_clinc150()
    names = list(ds.label_names)
    y = {s: np.asarray(getattr(ds, s).label_ids(names)) for s in ("train", "val", "test")}
    teacher = MiniLMTeacher(TeacherConfig())
    dense = keras.layers.Dense(len(names))
    dense.build((None, teacher.backbone.hidden_dim))
    mlp5 = TeacherConfig(head_hidden=1024, head_epochs=40, head_learning_rate=0.001, head_ensemble=5)
    print(f"{'encoder':<22} {'head':<18} {'val in-sc':>9} {'val acc':>7} {'val oosR':>8} | {'test in-sc':>10} "
          f"{'in (rule)':>9} {'oosR':>5} {'oosP':>5} {'thresh':>7}", flush=True)
    for weights in sorted(folder.glob("backbone-epoch*.weights.h5")):
        epoch = weights.name.split("epoch")[1].split(".")[0]
        teacher.backbone.load_weights(str(weights))
        dense.set_weights(list(np.load(folder / f"head-epoch{epoch}.npz").values()))
        t0 = time.time()
        feats = {s: teacher.features(getattr(ds, s).texts, verbose=0) for s in ("train", "val", "test")}
        secs = time.time() - t0
        variants = {"fine-tuned head": lambda f: np.asarray(dense(f * FINE_TUNE_FEATURE_SCALE)),
                    "linear (default)": train_head(feats["train"], y["train"], len(names), TeacherConfig()),
                    "5 MLP heads": train_head(feats["train"], y["train"], len(names), mlp5)}
        for label, head in variants.items():
            logits = {s: np.asarray(head(feats[s]), np.float32) for s in ("val", "test")}
            rule, rep = evaluate_oos(logits["val"], y["val"], logits["test"], y["test"], names, OOS_LABEL,
                                     score="max_logit")
            cal, r = rep["calibration"]["val"], rep["rule"]
            vin = 100 * rep["calibration"]["val_argmax"]["accuracy_in_scope"]
            print(f"{'epoch ' + epoch + f' ({secs:.0f} s feats)':<22} {label:<18} {vin:9.2f} {100 * cal['accuracy']:7.2f} "
                  f"{100 * cal['recall_out_of_scope']:8.1f} | {100 * rep['argmax']['accuracy_in_scope']:10.2f} "
                  f"{100 * r['accuracy_in_scope']:9.2f} {100 * r['recall_out_of_scope']:5.1f} "
                  f"{100 * r['precision_out_of_scope']:5.1f} {rule.threshold:7.3f}", flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=5e-5, help="encoder's peak learning rate")
    ap.add_argument("--head-lr", type=float, default=2e-3, help="head's peak learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", type=Path, default=None, help="keep the backbone's weights after each epoch here")
    ap.add_argument("--heads", type=Path, default=None, help="evaluate heads on the encoders kept in this folder")
    args = ap.parse_args(argv)
    if args.heads:
        return heads(args.heads)

    from tflite_compress.config import TeacherConfig
    from tflite_compress.teacher import FINE_TUNE_BATCH, FINE_TUNE_FEATURE_SCALE, MiniLMTeacher

    ds = load_clinc150()
    names = list(ds.label_names)
    oos = names.index(OOS_LABEL)
    y = {s: np.asarray(getattr(ds, s).label_ids(names)) for s in ("train", "val", "test")}
    config = TeacherConfig(fine_tune=True, fine_tune_epochs=args.epochs, fine_tune_learning_rate=args.lr,
                           fine_tune_head_learning_rate=args.head_lr, seed=args.seed)
    teacher = MiniLMTeacher(config)
    steps = -(-len(y["train"]) // FINE_TUNE_BATCH)
    print(json.dumps(vars(args), default=str))
    print(f"{'epoch':>5} {'loss':>7} {'val in-sc':>9} {'val oosR':>8} | {'test in-sc':>10} {'test oosR':>9} {'s/step':>7} {'epoch s':>8}",
          flush=True)
    started = [time.time()]

    def on_epoch(epoch, loss, head):
        secs = time.time() - started[0]
        v, t = (scores(y[s], np.asarray(head(teacher.features(getattr(ds, s).texts, verbose=0)
                                              * FINE_TUNE_FEATURE_SCALE)).argmax(1), oos)
                for s in ("val", "test"))
        print(f"{epoch:>5} {loss:7.4f} {v[0]:9.2f} {v[1]:8.1f} | {t[0]:10.2f} {t[1]:9.1f} {secs / steps:7.2f} {secs:8.0f}",
              flush=True)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            teacher.backbone.save_weights(str(args.save / f"backbone-epoch{epoch}.weights.h5"))
            np.savez(args.save / f"head-epoch{epoch}.npz", *[np.asarray(w) for w in head.get_weights()])
        started[0] = time.time()

    teacher.fine_tune(ds.train.texts, y["train"], len(names), on_epoch=on_epoch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
