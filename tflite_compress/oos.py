"""Calibrating the out-of-scope rule that ships with a model (numpy only).

The threshold on a score of the logits (`max_softmax` or `max_logit`, `runtime.oos_rule.SCORES`)
is chosen on the validation split: by default the one that maximises accuracy over all classes
with out-of-scope as its own class (Larson et al. 2019, "oos-threshold"); with `target_recall`,
the lowest threshold whose validation out-of-scope recall reaches it (the smallest in-scope cost
for that recall).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError
from .runtime.oos_rule import SCORES, OOSRule, oos_metrics, reject_below, rule_score


def candidate_thresholds(scores: np.ndarray, floor: float | None = 0.0) -> np.ndarray:
    """A threshold rejecting nothing (`floor`, else the lowest score) and the midpoints between
    consecutive distinct scores."""
    s = np.unique(np.asarray(scores, np.float64))
    first = floor if floor is not None else (float(s[0]) if len(s) else 0.0)
    return np.concatenate([[first], (s[:-1] + s[1:]) / 2 if len(s) > 1 else []])


def calibrate_rule(logits: np.ndarray, y_true: np.ndarray, label_names: Sequence[str], oos_label: str,
                   target_recall: float | None = None, score: str = "max_softmax") -> tuple[OOSRule, dict]:
    """(rule, details) chosen on these (validation) logits; details holds the validation figures."""
    names = list(label_names)
    if oos_label not in names:
        raise InputError(f"oos label {oos_label!r} is not one of the labels")
    oos_index = names.index(oos_label)
    y_true = np.asarray(y_true)
    if not np.any(y_true == oos_index):
        raise InputError(f"the validation split has no {oos_label!r} rows: cannot choose an out-of-scope threshold")
    if target_recall is not None and not 0.0 < target_recall <= 1.0:
        raise InputError(f"--target-oos-recall: expected a number in (0, 1], got {target_recall!r}")
    if score not in SCORES:
        raise InputError(f"oos score {score!r}: expected one of {', '.join(SCORES)}")
    scores = rule_score(logits, score)
    cands = candidate_thresholds(scores, 0.0 if score == "max_softmax" else None)
    # the rule at every candidate, with the scores and arg-max computed once (per candidate, as
    # `OOSRule.predict` does, cost ~18 s per call on CLINC150 val's 3,100 rows)
    argmax = np.asarray(logits).argmax(axis=1)
    figures = [oos_metrics(y_true, reject_below(scores, argmax, t, oos_index), oos_index) for t in cands]
    if target_recall is None:
        # first (lowest) threshold reaching the best accuracy: fewest in-scope rows rejected
        best = int(np.argmax([f["accuracy"] for f in figures]))
        scheme = "max_accuracy"
    else:
        ok = [i for i, f in enumerate(figures) if f["recall_out_of_scope"] >= target_recall - 1e-12]
        best = ok[0] if ok else len(cands) - 1
        scheme = f"target_recall {target_recall}"
    rule = OOSRule(threshold=float(cands[best]), label=oos_label, score=score)
    return rule, {"scheme": scheme, "threshold": rule.threshold, "val": figures[best],
                  "val_argmax": figures[0]}


def log_rule(rule: OOSRule, report: dict, log) -> None:
    v, t = report["calibration"]["val"], report["rule"]
    log(f"      oos rule: {rule.score.replace('_', ' ')} < {rule.threshold:.4f} -> {rule.label!r} "
        f"({report['calibration']['scheme']} on val: oos recall {v['recall_out_of_scope']:.2%}); test: "
        f"in-scope {t['accuracy_in_scope']:.2%}, oos recall {t['recall_out_of_scope']:.2%}, "
        f"precision {t['precision_out_of_scope']:.2%}")


def evaluate_oos(val_logits: np.ndarray, y_val: np.ndarray, test_logits: np.ndarray, y_test: np.ndarray,
                 label_names: Sequence[str], oos_label: str | None,
                 target_recall: float | None = None, score: str = "max_softmax") -> tuple[OOSRule | None, dict | None]:
    """(rule chosen on val, report on test with both schemes); (None, None) without oos rows in val."""
    from .runtime.oos_rule import rule_report

    names = list(label_names)
    if oos_label is None or oos_label not in names or not np.any(np.asarray(y_val) == names.index(oos_label)):
        return None, None
    rule, details = calibrate_rule(val_logits, y_val, names, oos_label, target_recall, score)
    return rule, {**rule_report(test_logits, y_test, names, oos_label, rule), "calibration": details}


def calibrate_model_file(model_path, data_path, text_column: str | None = None, label_column: str | None = None,
                         target_recall: float | None = None, oos_label: str | None = None,
                         clinc_split: str = "val", write: bool = True, score: str = "max_softmax") -> dict:
    """`calibrate-oos`: choose the rule of an existing INT8 model (its folder: model_info.json,
    vocab.txt, labels.txt) on labelled validation texts and store it in its model_info.json.
    numpy + LiteRT only. Returns the rule and the validation figures of both schemes."""
    from pathlib import Path

    from .data import TextSplit, load_text_file
    from .files import atomic_write_json
    from .runtime import load_bundle

    model_path = Path(model_path)
    bundle = load_bundle(model_path)
    if bundle.tokenizer is None or not bundle.labels:
        raise InputError(f"{model_path}: needs model_info.json (tokenizer) and labels.txt beside it")
    label = oos_label or bundle.oos_label
    if label is None or label not in bundle.labels:
        raise InputError(f"{model_path}: no out-of-scope label ({label!r} is not one of its labels); name it with --oos-label")
    split = load_text_file(data_path, text_column, label_column, clinc_split=clinc_split)
    y = TextSplit(split.texts, split.labels).label_ids(bundle.labels, str(data_path))
    logits = bundle.model.predict(bundle.tokenizer.encode_batch(split.texts))
    rule, details = calibrate_rule(logits, y, bundle.labels, label, target_recall, score)
    if write:
        info = dict(bundle.info, oos_rule=rule.to_info())
        if bundle.oos_label is None:
            info["oos_label"] = label
        atomic_write_json(model_path.parent / "model_info.json", info)
    return {"model": str(model_path), "data": str(data_path), "samples": len(y), "oos_rule": rule.to_info(),
            **details}
