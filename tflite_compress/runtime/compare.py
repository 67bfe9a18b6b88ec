"""Two models (or one model under two kernel sets) on the same inputs: how far apart are their outputs?"""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def to_probabilities(scores: np.ndarray) -> np.ndarray:
    """Rows already a distribution (non-negative, summing to ~1) are renormalised; logits go through softmax."""
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    if np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=0.05):
        return scores / np.maximum(scores.sum(axis=1, keepdims=True), 1e-12)
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def compare_outputs(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> dict:
    """Top-1 agreement, mean/max absolute error of dequantized outputs, mean KL(P_a || P_b)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise InputError(f"the models' outputs differ in shape: {a.shape[1:]} vs {b.shape[1:]}")
    if len(a) == 0:
        raise InputError("no samples to compare")
    err = np.abs(a - b)
    pa = np.clip(to_probabilities(a), eps, 1.0)
    pb = np.clip(to_probabilities(b), eps, 1.0)
    kl = np.sum(pa * (np.log(pa) - np.log(pb)), axis=1)
    return {
        "samples": int(len(a)),
        "top1_agreement": float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))),
        "mean_abs_error": float(err.mean()),
        "max_abs_error": float(err.max()),
        "kl_divergence_mean": float(kl.mean()),
        "kl_divergence_max": float(kl.max()),
    }
