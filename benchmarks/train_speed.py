"""Training speed of the demo's student: Keras as it runs by default vs an XLA-compiled step.

    .venv/bin/python benchmarks/train_speed.py [--rounds=2]

The pipeline trains the students it builds with `jit_compile` and `distill.XLA_STEPS` steps per
call (`distill.compile_for_distillation(..., xla=True)`, whole batches). This prints, side by side
in one process (the machine is noisy: rounds alternate between the variants), the seconds of the
first epoch (tracing, and the XLA compile) and of each later epoch, for:

- the float student's distillation (`student`): keras / jit / steps / xla (jit + steps), and
  xla+cut: short rows cut, in batches of their own (`distill.fit(length_margin=...)`, the pipeline's);
- pruning (`prune`): keras / keras+cut, as the pipeline prunes (tfmot's step callback every step);
- QAT of the pruned student (`qat`): keras / keras+cut / xla, whose compile is the reason QAT
  stays on keras.

Data: random token ids in the demo's shapes (30,200 rows: train + one augmented copy; 32
positions, 3-15 of them non-padding; 1,384 pieces; 151 labels), the default recipe's student,
batch 64, the distillation loss. Time does not depend on the values.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tflite_compress import _tf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

ROWS, LENGTH, VOCAB, LABELS, BATCH = 30_200, 32, 1384, 151, 64
VARIANTS = {  # name: (jit_compile, steps_per_execution)
    "keras": (False, 1),
    "jit": (True, 1),
    "steps": (False, 32),
    "xla": (True, 32),
}


def main() -> None:
    from tflite_compress import distill, prune, qat
    from tflite_compress._tf import keras, tf
    from tflite_compress.config import PruneConfig, Recipe
    from tflite_compress.students import build_student, length_margin

    rounds = 2
    for a in sys.argv[1:]:
        if not a.startswith("--rounds=") or not a.removeprefix("--rounds=").isdigit() or int(a[9:]) < 1:
            print(f"train_speed.py: {a}: expected --rounds=N (N >= 1)", file=sys.stderr)
            sys.exit(2)
        rounds = int(a.removeprefix("--rounds="))
    rng = np.random.default_rng(0)
    x = rng.integers(1, VOCAB, (ROWS, LENGTH)).astype(np.int32)
    x[np.arange(LENGTH)[None, :] >= rng.integers(3, 16, ROWS)[:, None]] = 0
    targets = distill.pack_targets(rng.integers(0, LABELS, ROWS), rng.normal(size=(ROWS, LABELS)), LABELS)
    recipe = Recipe()

    def compile_(model, jit: bool, steps: int, lr: float) -> None:
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=distill.distillation_loss(0.3, 4.0),
                      metrics=[distill.label_accuracy], jit_compile=jit, steps_per_execution=steps)

    margin = length_margin(recipe.student)
    cut, short = distill.length_buckets(x, BATCH, margin, whole_batches=True)
    print(f"cut batches: {short.sum():,} of {ROWS:,} rows at {cut} of {LENGTH} positions", flush=True)

    def epoch(model, jit: bool, cut: bool, callbacks=()) -> float:
        t0 = time.perf_counter()
        if cut:
            distill.fit(model, x, targets, 1, BATCH, callbacks=callbacks, verbose=0, length_margin=margin)
        else:
            ds = tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(ROWS, seed=0).batch(BATCH,
                                                                                          drop_remainder=jit)
            model.fit(ds, epochs=1, verbose=0, callbacks=list(callbacks))
        return time.perf_counter() - t0

    runs = {}
    for name in ("keras", "jit", "steps", "xla", "xla+cut"):
        jit, steps = VARIANTS[name.removesuffix("+cut")]
        model = build_student(recipe.student, VOCAB, LENGTH, LABELS, seed=0)
        compile_(model, jit, steps, 2e-3)
        runs[f"student {name}"] = (model, jit, name.endswith("+cut"), ())
    for name in ("keras", "keras+cut"):
        steps = 10 * (ROWS // BATCH + 2)  # pruning runs on through every round
        model = prune.prune(build_student(recipe.student, VOCAB, LENGTH, LABELS, seed=0), PruneConfig(), steps)
        compile_(model, False, 1, 5e-4)
        runs[f"prune {name}"] = (model, False, name.endswith("+cut"), prune.callbacks())
    pruned = prune.strip(prune.prune(build_student(recipe.student, VOCAB, LENGTH, LABELS, seed=0), PruneConfig(), 100))
    for name in ("keras", "keras+cut", "xla"):
        jit, steps = VARIANTS[name.removesuffix("+cut")]
        model = qat.quantize_student(pruned, preserve_sparsity=True)
        compile_(model, jit, steps, 2e-4)
        runs[f"qat {name}"] = (model, jit, name.endswith("+cut"), ())
    runs = {label: (model, jit, cut_, callbacks, [epoch(model, jit, cut_, callbacks)])
            for label, (model, jit, cut_, callbacks) in runs.items()}
    for _ in range(rounds):
        for model, jit, cut_, callbacks, times in runs.values():
            times.append(epoch(model, jit, cut_, callbacks))
    print(f"{'variant':<16} {'first':>6} {'later epochs (s)':>{7 * rounds}}  median  vs keras")
    base = {}
    for label, (*_, times) in runs.items():
        stage = label.split()[0]
        med = float(np.median(times[1:]))
        base.setdefault(stage, med)
        later = " ".join(f"{t:6.2f}" for t in times[1:])
        print(f"{label:<16} {times[0]:6.2f} {later}  {med:6.2f}  {med / base[stage]:6.2f}x", flush=True)


if __name__ == "__main__":
    main()
