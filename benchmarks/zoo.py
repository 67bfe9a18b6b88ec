"""The two models of issue 17, built as a user would, through `tflite-compress compress` (default recipe).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/zoo.py [--only mobilenet,lstm] [--json FILE]

1. mobilenet: a Keras 3 MobileNet-style image classifier (Conv2D stem; DepthwiseConv2D + BN +
   ReLU6 + 1x1 Conv2D + BN blocks; a residual Add; GlobalAveragePooling2D, Dropout, Dense;
   5,578 parameters, 5,194 trainable) on scikit-learn's 8x8 digits (1,437 train / 360 test images).
2. lstm: a Keras 3 intent classifier (Embedding mask_zero=True, LSTM(96), Dense) on CLINC150
   (15,100 train rows with out-of-scope; test 5,500), token ids from the suite's tokenizer.

Each model is trained here (Keras 3, `model.save`), then compressed by the CLI exactly as a user
runs it (`tflite-compress compress MODEL --train ... --eval ...`, no --recipe: the default), and
the closing table is read from each run's report.json. Everything is written under
benchmarks/out/zoo/. Not a test: it trains for minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tflite_compress import _tf  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)

OUT = ROOT / "benchmarks" / "out" / "zoo"
CLINC = ROOT / "calibration_data" / "clinc150" / "data_full.json"
SEQ, VOCAB = 24, 6000


def build_mobilenet(folder: Path) -> list[str]:
    import keras
    from zoo_models import digits, train_and_save, vision_model

    x, y, xt, yt = digits(1437, 360)
    names = np.array([str(i) for i in range(10)])
    np.savez(folder / "train.npz", x=x, y=y, labels=names)
    np.savez(folder / "test.npz", x=xt, y=yt, labels=names)
    keras.utils.set_random_seed(0)
    model = vision_model(keras, "mobilenet", width=24)
    train_and_save(model, keras, x, y, folder / "mobilenet.keras", epochs=60, batch_size=32, learning_rate=0.005)
    return [str(folder / "mobilenet.keras"), "--train", str(folder / "train.npz"), "--eval", str(folder / "test.npz")]


def build_lstm(folder: Path) -> list[str]:
    import keras
    from zoo_models import text_data, text_model, train_and_save, write_text_files

    full = json.loads(CLINC.read_text(encoding="utf-8"))
    train_rows = [tuple(r) for r in full["train"]] + [(t, "oos") for t, _ in full["oos_train"]]
    test_rows = [tuple(r) for r in full["test"]] + [(t, "oos") for t, _ in full["oos_test"]]
    vocab, names, x, y, _, _ = text_data(train_rows, test_rows, VOCAB, SEQ)
    files = write_text_files(folder, vocab, names, train_rows, test_rows)
    keras.utils.set_random_seed(0)
    model = text_model(keras, "lstm", len(vocab), SEQ, len(names), units=96, embedding_dim=64)
    train_and_save(model, keras, x, y, folder / "lstm.keras", epochs=12, batch_size=64, learning_rate=0.003,
                   logits=True)
    return [str(folder / "lstm.keras"), "--train", str(files["train"]), "--eval", str(files["eval"]),
            "--vocab", str(files["vocab"]), "--labels", str(files["labels"])]


BUILDERS = {"mobilenet": build_mobilenet, "lstm": build_lstm}


def run(kind: str) -> dict:
    folder = OUT / kind
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    args = BUILDERS[kind](folder)
    built = time.perf_counter() - t0
    cmd = [sys.executable, "-m", "tflite_compress.cli", "compress", *args, "-o", str(folder / "run"),
           "--cache-dir", str(folder / "cache")]
    print("$ tflite-compress " + " ".join(cmd[3:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    (folder / "compress.log").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    print(proc.stdout[-3000:], flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], flush=True)
        return {"kind": kind, "exit": proc.returncode}
    report = json.loads((folder / "run" / "report.json").read_text())
    s, st, c = report["summary"], report["stages"], report["compress"]
    key = s["metric"]
    return {
        "kind": kind, "exit": 0, "metric": key, "parameters": st["input"]["parameters"],
        "input": s["input_" + key], "int8": s["int8_" + key], "drop_points": s["drop_points_vs_input"],
        "size_bytes": s["size_bytes"], "gzip_bytes": s["gzip_bytes"], "integer_only": s["integer_only"],
        "sparsity": st.get("pruned", {}).get("sparsity"), "not_pruned": st.get("pruned", {}).get("not_pruned", {}),
        "path": "QAT" if "qat" in st else "post-training", "why": c["skipped"].get("qat", ""),
        "ops": st["int8"]["op_counts"], "build_s": built, "compress_s": report["timings_s"]["total"],
    }


def table(rows: list[dict]) -> str:
    head = ("model", "parameters", "input acc", "INT8 acc", "drop", "size (gzip)", "sparsity (wrapped)", "path")
    lines = [head]
    for r in rows:
        if r["exit"]:
            lines.append((r["kind"], "-", "-", "-", "-", "-", "-", f"exit {r['exit']}"))
            continue
        sp = "-" if r["sparsity"] is None else f"{100 * r['sparsity']:.1f}%"
        lines.append((r["kind"], f"{r['parameters']:,}", f"{100 * r['input']:.2f}%", f"{100 * r['int8']:.2f}%",
                      f"{r['drop_points']:.2f}", f"{r['size_bytes'] / 1024:.1f} KB ({r['gzip_bytes'] / 1024:.1f} KB)",
                      sp, r["path"]))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    for r in rows:
        if not r["exit"]:
            out.append(f"{r['kind']}: metric {r['metric']}; integer-only {r['integer_only']}; ops {r['ops']}")
            for name, info in r["not_pruned"].items():
                out.append(f"  not pruned: {name} ({info['weights']} weights): {info['why']}")
            if r["why"]:
                out.append(f"  QAT skipped: {r['why']}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="mobilenet,lstm")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    rows = [run(kind) for kind in a.only.split(",")]
    print(table(rows))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
