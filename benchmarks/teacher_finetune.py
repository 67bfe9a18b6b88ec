"""Fine-tuning all-MiniLM-L6-v2 on CLINC150 train, epoch by epoch, val beside test.

    python benchmarks/teacher_finetune.py --epochs 3                 # prints a row per epoch
    python benchmarks/teacher_finetune.py --epochs 3 --save runs/ft  # also keeps the encoder after each epoch
    python benchmarks/teacher_finetune.py --heads runs/ft            # heads on each kept encoder's features

The protocol: mean-pooled, L2-normalised features (as the frozen teacher) x 10 into a fresh linear
head; AdamW with its own learning rate for the head (a fresh head at the encoder's 5e-5 barely
moves in one epoch); linear warm-up over the first 6% of the steps, then cosine decay to 0 over
all the epochs asked for; batches of 32 cut to their longest row (rounded up to 8 positions).
After each epoch: in-scope accuracy and out-of-scope recall by arg-max of the fine-tuned model's
own logits on val and test, and the seconds the epoch took. Val chooses; test reports.

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


def _batches(ids, mask, order, size):
    for start in range(0, len(order), size):
        rows = order[start:start + size]
        width = int(min(ids.shape[1], -(-int(mask[rows].sum(axis=1).max()) // 8) * 8))
        yield rows, ids[rows, :width], mask[rows, :width]


def scores(y, pred, oos):
    ins = y != oos
    return 100 * float(np.mean(pred[ins] == y[ins])), 100 * float(np.mean(pred[~ins] == oos))


def heads(folder: Path) -> int:
    import keras

    from tflite_compress.config import TeacherConfig
    from tflite_compress.oos import evaluate_oos
    from tflite_compress.teacher import MiniLMTeacher, train_head

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
        variants = {"fine-tuned head": lambda f: np.asarray(dense(f * 10.0)),
                    "linear (default)": train_head(feats["train"], y["train"], len(names), TeacherConfig()),
                    "5 MLP heads": train_head(feats["train"], y["train"], len(names), mlp5)}
        for label, head in variants.items():
            logits = {s: np.asarray(head(feats[s]), np.float32) for s in ("val", "test")}
            rule, rep = evaluate_oos(logits["val"], y["val"], logits["test"], y["test"], names, OOS_LABEL,
                                     score="max_logit")
            cal, r = rep["calibration"]["val"], rep["rule"]
            vin = 100 * float(np.mean(logits["val"].argmax(1)[y["val"] != names.index(OOS_LABEL)]
                                      == y["val"][y["val"] != names.index(OOS_LABEL)]))
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
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=0.06)
    ap.add_argument("--label-smoothing", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-steps", type=int, default=0, help="stop each epoch after this many steps (timing)")
    ap.add_argument("--save", type=Path, default=None, help="keep the backbone's weights after each epoch here")
    ap.add_argument("--heads", type=Path, default=None, help="evaluate heads on the encoders kept in this folder")
    args = ap.parse_args(argv)
    if args.heads:
        return heads(args.heads)

    import keras
    import tensorflow as tf

    from tflite_compress.config import TeacherConfig
    from tflite_compress.teacher import MiniLMTeacher

    ds = load_clinc150()
    names = list(ds.label_names)
    oos = names.index(OOS_LABEL)
    y = {s: np.asarray(getattr(ds, s).label_ids(names)) for s in ("train", "val", "test")}
    keras.utils.set_random_seed(args.seed)
    teacher = MiniLMTeacher(TeacherConfig())
    enc = {s: teacher.encode_inputs(getattr(ds, s).texts) for s in ("train", "val", "test")}
    head = keras.layers.Dense(len(names), name="head")
    model = keras.Model(teacher.encoder.inputs, head(teacher.encoder.outputs[0] * 10.0))

    steps_per_epoch = -(-len(y["train"]) // args.batch_size)
    total = steps_per_epoch * args.epochs
    warm = max(1, int(args.warmup * total))

    def schedule(peak):
        return keras.optimizers.schedules.CosineDecay(0.0, total - warm, warmup_target=peak, warmup_steps=warm)

    opt_enc = keras.optimizers.AdamW(schedule(args.lr), weight_decay=0.01)
    opt_head = keras.optimizers.AdamW(schedule(args.head_lr), weight_decay=0.0)
    head_vars = head.trainable_variables
    head_ids = {id(v) for v in head_vars}
    enc_vars = [v for v in model.trainable_variables if id(v) not in head_ids]
    loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing)

    @tf.function(reduce_retracing=True)
    def step(ids, mask, labels):
        with tf.GradientTape() as tape:
            logits = model([ids, mask], training=True)
            loss = loss_fn(tf.one_hot(labels, len(names)), logits)
        grads = tape.gradient(loss, enc_vars + head_vars)
        opt_enc.apply_gradients(zip(grads[:len(enc_vars)], enc_vars))
        opt_head.apply_gradients(zip(grads[len(enc_vars):], head_vars))
        return loss

    @tf.function(reduce_retracing=True)
    def infer(ids, mask):
        return model([ids, mask], training=False)

    def predict(split):
        ids, mask = enc[split]
        order = np.argsort(mask.sum(axis=1), kind="stable")
        out = np.zeros((len(ids), len(names)), np.float32)
        for rows, i, m in _batches(ids, mask, order, 256):
            out[rows] = infer(i, m).numpy()
        return out

    print(json.dumps(vars(args), default=str))
    print(f"{'epoch':>5} {'loss':>7} {'val in-sc':>9} {'val oosR':>8} | {'test in-sc':>10} {'test oosR':>9} {'s/step':>7} {'epoch s':>8}",
          flush=True)
    rng = np.random.default_rng(args.seed)
    ids, mask = enc["train"]
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        order = rng.permutation(len(ids))
        losses, n = [], 0
        for rows, i, m in _batches(ids, mask, order, args.batch_size):
            losses.append(float(step(i, m, y["train"][rows])))
            n += 1
            if args.limit_steps and n >= args.limit_steps:
                break
            if n % 50 == 0:
                print(f"  step {n}/{steps_per_epoch} loss {np.mean(losses[-50:]):.4f} {(time.time() - t0) / n:.2f} s/step",
                      file=sys.stderr, flush=True)
        secs = time.time() - t0
        v = scores(y["val"], predict("val").argmax(1), oos)
        t = scores(y["test"], predict("test").argmax(1), oos)
        print(f"{epoch:>5} {np.mean(losses):7.4f} {v[0]:9.2f} {v[1]:8.1f} | {t[0]:10.2f} {t[1]:9.1f} {secs / n:7.2f} {secs:8.0f}",
              flush=True)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            teacher.backbone.save_weights(str(args.save / f"backbone-epoch{epoch}.weights.h5"))
            np.savez(args.save / f"head-epoch{epoch}.npz", *[np.asarray(w) for w in head.get_weights()])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
