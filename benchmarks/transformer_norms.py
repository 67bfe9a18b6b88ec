"""Which change of the integer-kernel transformer stops it learning: each variant of the students
benchmark's transformer, distilled for 4 epochs from the cached MiniLM logits, in-scope accuracy
on CLINC150 *val* (the split choices are made on).

    .venv/bin/python benchmarks/transformer_norms.py [static relu tanh tanh_pre ln_pre int_pre]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import students as B  # noqa: E402  (benchmarks/students.py: data loading and the family configs)

from tflite_compress.config import DistillConfig, StudentConfig  # noqa: E402

BASE = dict(family="transformer", embedding_dim=64, num_heads=2, ff_units=128, transformer_layers=2,
            hidden_units=256, dropout=0.2)
VARIANTS = {
    "static": dict(static_shapes=True),
    "relu": dict(ffn_activation="relu"),
    "tanh": dict(norm="tanh"),
    "tanh_pre": dict(norm="tanh", norm_first=True),
    "ln_pre": dict(norm_first=True),
    "int_pre": dict(norm="tanh", norm_first=True, ffn_activation="relu", static_shapes=True),
}


def main(names: list[str]) -> None:
    from tflite_compress import distill
    from tflite_compress.pipeline import _cosine_lr
    from tflite_compress.students import build_student

    data = B.load_data()
    x, y, n = data["x"], data["y"], len(data["names"])
    targets = distill.pack_targets(y["train"], data["teacher"].logits["train"], n)
    for name in names:
        dcfg = DistillConfig(epochs=4, learning_rate=1e-3)
        model = build_student(StudentConfig(**BASE, **VARIANTS[name]), data["vocab_size"], x["train"].shape[1], n)
        distill.compile_for_distillation(model, dcfg)
        t0 = time.time()
        distill.fit(model, x["train"], targets, dcfg.epochs, dcfg.batch_size, verbose=0,
                    callbacks=[_cosine_lr(dcfg.learning_rate, dcfg.epochs)])
        pred = model.predict(x["val"], verbose=0, batch_size=256).argmax(1)
        acc = B.in_scope_accuracy(pred, y["val"], data["oos_id"])
        print(f"{name:<10} val in-scope {acc:.4f}  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or list(VARIANTS))
