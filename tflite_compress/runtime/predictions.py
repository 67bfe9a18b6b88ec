"""Per-example predictions: written by `eval --predictions FILE`, compared by `compare A.jsonl B.jsonl` (`compare.compare_predictions`).

One JSON object a line, so two runs (two models, two backends, x86 against ARM64) diff line by line:

    {"id": 0, "text": "dog in spanish", "gold": "translate", "predicted": "translate",
     "score": 9.13, "runner_up": "meaning_of_life", "margin": 4.49}

`id` is the row's position in the data; `text` is null for array data; `score` is the top-1 output
(dequantized) and `margin` how far it lies above the runner-up's, in the same units: a small
margin is a near tie that other kernels may flip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..files import atomic_write_text

PREDICTION_SUFFIXES = (".jsonl", ".ndjson")
KEYS = ("id", "text", "gold", "predicted", "score", "runner_up", "margin")


def prediction_rows(scores: np.ndarray, label_names: Sequence[str], gold: Sequence[int] | None,
                    texts: Sequence[str] | None = None) -> list[dict]:
    """One dict per row of `scores` (dequantized outputs): top-1, runner-up and the margin between them."""
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    order = np.argsort(-scores, axis=1, kind="stable")
    rows = []
    for i in range(len(scores)):
        top = int(order[i, 0])
        second = int(order[i, 1]) if scores.shape[1] > 1 else top
        rows.append({"id": i, "text": None if texts is None else str(texts[i]),
                     "gold": None if gold is None else label_names[int(gold[i])],
                     "predicted": label_names[top], "score": round(float(scores[i, top]), 6),
                     "runner_up": label_names[second], "margin": round(float(scores[i, top] - scores[i, second]), 6)})
    return rows


def check_predictions_path(path: str | os.PathLike) -> None:
    """Before any work: the name ends in .jsonl and its folder exists."""
    path = Path(path)
    if path.suffix.lower() not in PREDICTION_SUFFIXES:
        raise InputError(f"--predictions {path}: expected a .jsonl file name")
    if not path.parent.is_dir():
        raise InputError(f"--predictions {path}: folder {path.parent} does not exist")


def write_predictions(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Write rows as JSONL (to a temp file, then renamed: never half a file)."""
    check_predictions_path(path)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_predictions(path: str | os.PathLike) -> list[dict]:
    """Rows of a predictions file, checked: every line an object with the keys of `KEYS`, ids unique."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: predictions file not found")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): texts may hold U+2028 and the like
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    from ..data import jsonl_rows

    rows, seen = [], set()
    for n, row in jsonl_rows(path, lines):
        missing = [k for k in KEYS if not isinstance(row, dict) or k not in row]
        if missing:
            raise InputError(f"{path}: line {n} is not a prediction (missing {', '.join(missing)}; "
                             "write one with eval --predictions)")
        if not isinstance(row["margin"], (int, float)) or not isinstance(row["score"], (int, float)):
            raise InputError(f"{path}: line {n}: score and margin must be numbers")
        if row["id"] in seen:
            raise InputError(f"{path}: line {n}: id {row['id']!r} appears twice")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise InputError(f"{path}: no predictions in it")
    return rows


def is_predictions_file(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).suffix.lower() in PREDICTION_SUFFIXES
