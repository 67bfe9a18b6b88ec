"""The out-of-scope rule that ships with a model, applied the way the app applies it (numpy only).

`model_info.json` may hold `"oos_rule": {"score": S, "threshold": t, "label": "oos"}`: the
answer is `label` when the score S of the (dequantized) logits is below `t`, else the arg-max
label. S is `max_softmax` (the maximum softmax probability; t in [0, 1]) or `max_logit` (the
largest logit; any finite t). The JVM core (android_demo/core `OOSRule`) computes the same.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ..errors import InputError

SCORES = ("max_softmax", "max_logit")


@dataclasses.dataclass(frozen=True)
class OOSRule:
    """Answer `label` when `score(logits) < threshold`."""

    threshold: float
    label: str
    score: str = "max_softmax"

    def __post_init__(self):
        if self.score not in SCORES:
            raise InputError(f"oos_rule.score {self.score!r} is not one of: {', '.join(SCORES)}")
        number = isinstance(self.threshold, (int, float)) and not isinstance(self.threshold, bool)
        if self.score == "max_softmax" and not (number and 0.0 <= float(self.threshold) <= 1.0):
            raise InputError(f"oos_rule.threshold: expected a number in [0, 1], got {self.threshold!r}")
        if not (number and np.isfinite(float(self.threshold))):
            raise InputError(f"oos_rule.threshold: expected a finite number, got {self.threshold!r}")
        if not isinstance(self.label, str) or not self.label:
            raise InputError(f"oos_rule.label: expected a label name, got {self.label!r}")

    def to_info(self) -> dict:
        return {"score": self.score, "threshold": float(self.threshold), "label": self.label}

    @classmethod
    def from_info(cls, info, source: str = "model_info.json") -> "OOSRule":
        if not isinstance(info, dict) or not {"score", "threshold", "label"} <= set(info):
            raise InputError(f"{source}: 'oos_rule' must be an object with score, threshold and label")
        try:
            return cls(threshold=info["threshold"], label=info["label"], score=info["score"])
        except InputError as exc:
            raise InputError(f"{source}: {exc}") from None

    def predict(self, logits: np.ndarray, label_names: Sequence[str]) -> np.ndarray:
        """Class ids under the rule: arg-max, or the rule's label where the score is below the threshold."""
        if self.label not in label_names:
            raise InputError(f"oos_rule.label {self.label!r} is not one of the model's labels")
        return reject_below(rule_score(logits, self.score), np.asarray(logits).argmax(axis=1), float(self.threshold),
                            list(label_names).index(self.label))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def max_softmax(logits: np.ndarray) -> np.ndarray:
    """The maximum softmax probability of each row (1 / sum(exp(z - max z)))."""
    z = np.asarray(logits, np.float64)
    return 1.0 / np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)


def max_logit(logits: np.ndarray) -> np.ndarray:
    """The largest (dequantized) logit of each row."""
    return np.asarray(logits, np.float64).max(axis=1)


def rule_score(logits: np.ndarray, score: str) -> np.ndarray:
    """The rule's score of each row (higher: more in-scope): `max_softmax` or `max_logit`."""
    if score not in SCORES:
        raise InputError(f"oos_rule.score {score!r} is not one of: {', '.join(SCORES)}")
    return max_softmax(logits) if score == "max_softmax" else max_logit(logits)


def reject_below(scores: np.ndarray, argmax: np.ndarray, threshold: float, oos_index: int) -> np.ndarray:
    """The rule on precomputed scores and arg-max: `oos_index` where the score is below `threshold`."""
    return np.where(scores < threshold, oos_index, argmax)


def auroc(score_in_scope: np.ndarray, is_oos: np.ndarray) -> float:
    """Area under the ROC curve of `score_in_scope` separating in-scope (high) from out-of-scope
    (low) rows: the probability that an in-scope row scores above an out-of-scope one (ties 1/2)."""
    s = np.asarray(score_in_scope, np.float64)
    neg = np.asarray(is_oos, bool)
    n_pos, n_neg = int((~neg).sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_s = s[order]
    # average ranks over ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[~neg].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def oos_metrics(y_true: np.ndarray, y_pred: np.ndarray, oos_index: int) -> dict:
    """In-scope accuracy, out-of-scope recall and precision, and accuracy over all classes
    with out-of-scope as its own class."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ins = y_true != oos_index
    said_oos = y_pred == oos_index
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "accuracy_in_scope": float(np.mean(y_pred[ins] == y_true[ins])) if ins.any() else 0.0,
        "recall_out_of_scope": float(np.mean(said_oos[~ins])) if (~ins).any() else 0.0,
        "precision_out_of_scope": float(np.mean(~ins[said_oos])) if said_oos.any() else 0.0,
    }


def rule_report(logits: np.ndarray, y_true: np.ndarray, label_names: Sequence[str], oos_label: str,
                rule: OOSRule | None) -> dict:
    """Both schemes on the same logits: `argmax` (no threshold) and `rule` (when there is one),
    plus the AUROC of each score for telling out-of-scope rows apart."""
    oos_index = list(label_names).index(oos_label)
    is_oos = np.asarray(y_true) == oos_index
    out = {"argmax": oos_metrics(y_true, np.asarray(logits).argmax(axis=1), oos_index),
           **{f"auroc_{s}": auroc(rule_score(logits, s), is_oos) for s in SCORES}}
    if rule is not None:
        out["rule"] = {**oos_metrics(y_true, rule.predict(logits, label_names), oos_index), **rule.to_info()}
    return out
