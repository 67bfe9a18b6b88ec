"""`eval`'s library side: labelled data in, task metrics out, gates checked (GateError on a miss).

numpy + LiteRT only, except a Keras `--baseline`, which imports TensorFlow in that branch alone.
"""

from __future__ import annotations

import platform
from pathlib import Path

import numpy as np

from ..data import KERAS_SUFFIXES, TEXT_SUFFIXES
from ..errors import GateError, InputError
from .interpreter import RuntimeOptions, backend_version


def load_labelled_data(data_path: Path, text_column: str | None, label_column: str | None):
    """('arrays', x, y) for .npz, ('text', texts, labels) for text files."""
    from ..data import load_text_file
    from . import load_npz

    if data_path.suffix.lower() == ".npz":
        x, y = load_npz(data_path)
        return "arrays", x, y
    if data_path.suffix.lower() not in TEXT_SUFFIXES:
        raise InputError(f"--data {data_path}: unsupported format {data_path.suffix!r} "
                         "(expected .npz, .csv, .tsv, .jsonl or CLINC-style .json)")
    split = load_text_file(data_path, text_column, label_column)
    return "text", split.texts, split.labels


def model_inputs(bundle, kind: str, x, data_path: Path) -> np.ndarray:
    if kind == "arrays":
        return np.asarray(x)
    if bundle.tokenizer is None:
        raise InputError(f"{bundle.model.name}: no model_info.json with tokenizer settings beside it; "
                         f"text data ({data_path}) needs one")
    return bundle.tokenizer.encode_batch(x)


def keras_baseline_scores(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of a Keras model file; imports TensorFlow (only this branch does)."""
    try:
        from .._tf import keras
    except ImportError as exc:
        raise InputError(f"--baseline {path}: a Keras model needs TensorFlow ({exc}); "
                         "pip install 'tflite-compress[train]' or pass a .tflite baseline") from None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise InputError(f"--baseline {path}: cannot load it as a Keras model ({str(exc).splitlines()[0][:200]})") from None
    try:
        return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32).reshape(len(x), -1)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"--baseline {path}: predict failed on the data ({str(exc).splitlines()[0][:200]})") from None


def run_eval(model: Path, data_path: Path, text_column: str | None = None, label_column: str | None = None,
             min_accuracy: float | None = None, max_drop: float | None = None, baseline: Path | None = None,
             batch_size: int = 64, options: RuntimeOptions = RuntimeOptions(), trust_model: bool = False,
             probe_timeout_s: float = 20.0, max_size_bytes: int | None = None,
             predictions_path: Path | None = None) -> dict:
    """Score MODEL on labelled data (and BASELINE on the same rows).

    With `predictions_path`, also write MODEL's prediction on each row there (JSONL, see
    `predictions.py`): `report["predictions"]` names the file.

    Returns the report; `report["gate"]` holds each gate asked for (min accuracy, max drop vs the
    baseline, max file size) with its value and whether it passed. `check_gates(report)` raises
    `GateError` on a miss.
    """
    from . import classification_metrics, label_names_for, load_bundle
    from .predictions import check_predictions_path, prediction_rows, write_predictions

    if max_drop is not None and baseline is None:
        raise InputError("--max-drop needs --baseline OTHER (a .tflite or a Keras model file)")
    if predictions_path is not None:
        check_predictions_path(predictions_path)
    bundle = load_bundle(model, options, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    kind, x_raw, y_raw = load_labelled_data(data_path, text_column, label_column)
    names = label_names_for(bundle)
    if kind == "text":
        if not bundle.labels:
            raise InputError(f"{model}: no labels.txt beside it; text data needs the label names")
        from ..data import TextSplit

        y = TextSplit(tuple(x_raw), tuple(y_raw)).label_ids(bundle.labels, str(data_path))
    else:
        y = np.asarray(y_raw)
        if y.min() < 0 or y.max() >= len(names):
            raise InputError(f"{data_path}: class ids must lie in [0, {len(names)}); found {int(y.min())}..{int(y.max())}")
    x = model_inputs(bundle, kind, x_raw, data_path)
    oos = bundle.oos_label if bundle.labels else None
    scores = bundle.model.predict(x, batch_size=batch_size)
    m = classification_metrics(y, scores.argmax(axis=1), names, oos)
    key = "accuracy_in_scope" if "accuracy_in_scope" in m else "accuracy"
    report: dict = {"model": str(model), "data": str(data_path), "data_kind": kind, "metric": key, **m,
                    "size_bytes": len(bundle.model.content),
                    "runtime": {"backend": bundle.model.backend, "backend_version": backend_version(bundle.model.backend),
                            "machine": platform.machine(), "xnnpack_applied": bundle.model.xnnpack_applied,
                                "threads": options.threads, "batch_size": batch_size if bundle.model.resizable_batch else 1}}
    if predictions_path is not None:
        write_predictions(predictions_path, prediction_rows(scores, names, y, list(x_raw) if kind == "text" else None))
        report["predictions"] = str(predictions_path)
    if oos is not None and oos in names and np.any(y == names.index(oos)):
        # Both schemes: arg-max (above) and the model's shipped oos rule, when it has one.
        from .oos_rule import rule_report

        report["oos"] = rule_report(scores, y, names, oos, bundle.oos_rule)
    passed = True
    gate: dict = {}
    if baseline is not None:
        if baseline.suffix.lower() in KERAS_SUFFIXES or baseline.is_dir():
            base_scores = keras_baseline_scores(baseline, x)
        else:
            base = load_bundle(baseline, options, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
            if base.labels and bundle.labels and base.labels != bundle.labels:
                raise InputError(f"--baseline {baseline}: its labels.txt differs from {model}'s")
            bx = x
            if kind == "text" and base.tokenizer is not None and base.tokenizer.vocab != bundle.tokenizer.vocab:
                bx = base.tokenizer.encode_batch(x_raw)
            base_scores = base.model.predict(bx, batch_size=batch_size)
        if base_scores.shape[1:] != scores.shape[1:]:
            raise InputError(f"--baseline {baseline}: outputs {base_scores.shape[1:]} scores, {model} {scores.shape[1:]}")
        bm = classification_metrics(y, base_scores.argmax(axis=1), names, oos)
        bm.pop("most_confused", None)
        report["baseline"] = {"model": str(baseline), **bm}
        report["drop"] = bm[key] - m[key]
        report["agreement_with_baseline"] = float(np.mean(base_scores.argmax(axis=1) == scores.argmax(axis=1)))
        if max_drop is not None:
            ok = report["drop"] <= max_drop + 1e-12
            gate["max_drop"] = {"limit": max_drop, "value": report["drop"], "passed": ok}
            passed &= ok
    if min_accuracy is not None:
        ok = m[key] >= min_accuracy
        gate["min_accuracy"] = {"limit": min_accuracy, "value": m[key], "passed": ok}
        passed &= ok
    if max_size_bytes is not None:
        ok = report["size_bytes"] <= max_size_bytes
        gate["max_size_bytes"] = {"limit": max_size_bytes, "value": report["size_bytes"], "passed": ok}
        passed &= ok
    report["gate"] = ({**gate, "passed": passed} if gate else None)
    return report


GATE_OPS = {"min_accuracy": ">=", "min_agreement": ">="}


def check_gates(report: dict) -> None:
    """Raise `GateError` naming every gate of `report["gate"]` that was missed (exit code 1)."""
    gate = report.get("gate") or {}
    missed = [f"{k} {_fmt_gate_value(g['value'])} (limit {_fmt_gate_value(g['limit'])})"
              for k, g in gate.items() if isinstance(g, dict) and not g["passed"]]
    if missed:
        raise GateError("; ".join(missed))


def _fmt_gate_value(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def format_eval(r: dict) -> str:
    rt = r["runtime"]
    lines = [f"{r['model']}  on  {r['data']}  ({r['samples']} samples; {rt['backend']}, "
             f"XNNPACK {'applied' if rt['xnnpack_applied'] else 'not applied'}, batch {rt['batch_size']})",
             f"  {'metric':<22}{'model':>10}" + (f"{'baseline':>10}" if "baseline" in r else "")]
    keys = ["accuracy", "macro_f1"] + [k for k in ("accuracy_in_scope", "recall_out_of_scope") if k in r]
    for k in keys:
        line = f"  {k:<22}{r[k]:>10.4f}"
        if "baseline" in r:
            line += f"{r['baseline'][k]:>10.4f}"
        lines.append(line)
    if "oos" in r:
        o = r["oos"]
        rule = o.get("rule")
        lines.append(f"  {'out-of-scope':<22}{'arg-max':>10}" + (f"{'rule':>10}   (rule: {rule['score']} < "
                                                               f"{rule['threshold']:.4f} -> {rule['label']!r})" if rule else ""))
        for k in ("accuracy_in_scope", "recall_out_of_scope", "precision_out_of_scope"):
            lines.append(f"  {k:<22}{o['argmax'][k]:>10.4f}" + (f"{rule[k]:>10.4f}" if rule else ""))
        for k in sorted(k for k in o if k.startswith("auroc_")):
            lines.append(f"  {'auroc (' + k[len('auroc_'):].replace('_', ' ') + ')':<22}{o[k]:>10.4f}")
    if "baseline" in r:
        lines.append(f"  {'drop (' + r['metric'] + ')':<22}{r['drop']:>10.4f}")
        lines.append(f"  {'top-1 agreement':<22}{r['agreement_with_baseline']:>10.4f}")
    if r.get("predictions"):
        lines.append(f"  predictions -> {r['predictions']}")
    for c in r["most_confused"][:5]:
        lines.append(f"  confused  {c['true']} -> {c['predicted']} ({c['count']})")
    for name, g in (r["gate"] or {}).items():
        if isinstance(g, dict):
            lines.append(f"  gate  {name} {_fmt_gate_value(g['value'])} {GATE_OPS.get(name, '<=')} "
                         f"{_fmt_gate_value(g['limit'])}: {'PASS' if g['passed'] else 'FAIL'}")
    return "\n".join(lines)


