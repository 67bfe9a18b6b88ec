"""Two models (or one model under two kernel sets) on the same inputs: how far apart are their outputs?

Or two predictions files (`eval --predictions`) of the same rows: which examples differ, by what margins.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .interpreter import RuntimeOptions


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


def compare_models(model_a: str | os.PathLike, model_b: str | os.PathLike | None, options_a: RuntimeOptions,
                   options_b: RuntimeOptions, data_path: Path | None = None, samples: int = 256, seed: int = 0,
                   batch_size: int = 64, min_agreement: float | None = None, trust_model: bool = False,
                   probe_timeout_s: float | None = 20.0) -> dict:
    """Run the same inputs through A and B (B defaults to A, e.g. under other kernels); the report.

    Inputs: `data_path` (.npz x, or texts tokenized with A's vocabulary), else `samples` random
    valid inputs. `report["gate"]` holds `min_agreement` when asked (`gates.check_gates`).
    """
    from .evaluate import load_bundle
    from .gates import load_labelled_data, model_inputs
    from .samples import float_input_range, load_npz, random_inputs

    a = load_bundle(model_a, options_a, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    b = load_bundle(model_b or model_a, options_b, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    if a.model.input_shape[1:] != b.model.input_shape[1:]:
        raise InputError(f"{model_b}: input shape {b.model.input_shape[1:]} differs from {model_a}'s {a.model.input_shape[1:]}")
    if data_path is not None:
        if data_path.suffix.lower() == ".npz":
            x, _ = load_npz(data_path, need_labels=False)
        else:
            kind, texts, _ = load_labelled_data(data_path, None, None)
            x = model_inputs(a, kind, texts, data_path)
        source = str(data_path)
    else:
        vocab = len(a.tokenizer.vocab) if a.tokenizer is not None else None
        rng_range = float_input_range(a.model) or float_input_range(b.model)
        x = random_inputs(a.model, samples, seed=seed, vocab_size=vocab, float_range=rng_range)
        source = f"{samples} random inputs (seed {seed})"
    metrics = compare_outputs(a.model.predict(x, batch_size=batch_size), b.model.predict(x, batch_size=batch_size))
    gate = None
    if min_agreement is not None:
        ok = metrics["top1_agreement"] >= min_agreement
        gate = {"min_agreement": {"limit": min_agreement, "value": metrics["top1_agreement"], "passed": ok}, "passed": ok}
    return {"model_a": {"model": str(model_a), "xnnpack_applied": a.model.xnnpack_applied, "reference_kernels": False},
            "model_b": {"model": str(model_b or model_a), "xnnpack_applied": b.model.xnnpack_applied,
                        "reference_kernels": options_b.reference_kernels},
            "inputs": source, **metrics, "gate": gate}


def format_compare(r: dict) -> str:
    a, b = r["model_a"], r["model_b"]
    lines = [f"A  {a['model']} [{'XNNPACK' if a['xnnpack_applied'] else 'no XNNPACK'}]",
             f"B  {b['model']}" + (" [reference kernels]" if b["reference_kernels"] else ""),
             f"   on {r['inputs']}",
             f"  {'top-1 agreement':<22}{r['top1_agreement']:>12.4f}",
             f"  {'mean abs error':<22}{r['mean_abs_error']:>12.6f}",
             f"  {'max abs error':<22}{r['max_abs_error']:>12.6f}",
             f"  {'KL(A||B) mean':<22}{r['kl_divergence_mean']:>12.6f}",
             f"  {'KL(A||B) max':<22}{r['kl_divergence_max']:>12.6f}"]
    if r["gate"]:
        g = r["gate"]["min_agreement"]
        lines.append(f"  gate  top1_agreement >= {g['limit']}: {'PASS' if g['passed'] else 'FAIL'}")
    return "\n".join(lines)


def compare_predictions(path_a: str | os.PathLike, path_b: str | os.PathLike,
                        min_agreement: float | None = None) -> dict:
    """Per-example comparison of two predictions files over the same rows (same ids, texts and gold labels).

    Returns top-1 agreement, each file's accuracy against gold (when the rows have gold labels), and
    every disagreement with both runs' margins, smallest combined margin first; `report["gate"]` holds
    `min_agreement` when asked (`gates.check_gates`).
    """
    from .predictions import read_predictions

    a, b = read_predictions(path_a), read_predictions(path_b)
    by_id = {r["id"]: r for r in b}
    if len(a) != len(b) or any(r["id"] not in by_id for r in a):
        raise InputError(f"{path_b}: its ids differ from {path_a}'s ({len(b)} rows vs {len(a)}): "
                         "compare predictions of the same data")
    for r in a:
        other = by_id[r["id"]]
        if r["text"] != other["text"] or r["gold"] != other["gold"]:
            raise InputError(f"{path_b}: id {r['id']!r} has another text or gold label than in {path_a}")
    disagree = []
    for r in a:
        o = by_id[r["id"]]
        if r["predicted"] != o["predicted"]:
            disagree.append({"id": r["id"], "text": r["text"], "gold": r["gold"],
                             "a": {"predicted": r["predicted"], "margin": r["margin"], "runner_up": r["runner_up"]},
                             "b": {"predicted": o["predicted"], "margin": o["margin"], "runner_up": o["runner_up"]}})
    disagree.sort(key=lambda d: (d["a"]["margin"] + d["b"]["margin"], str(d["id"])))
    margins_a = np.array([r["margin"] for r in a], dtype=np.float64)
    score_delta = np.array([abs(r["score"] - by_id[r["id"]]["score"]) for r in a], dtype=np.float64)
    report: dict = {"predictions_a": str(path_a), "predictions_b": str(path_b), "samples": len(a),
                    "top1_agreement": 1.0 - len(disagree) / len(a), "disagreements": disagree,
                    "top1_score_abs_diff_mean": float(score_delta.mean()),
                    "top1_score_abs_diff_max": float(score_delta.max()),
                    "exact_ties_a": int(np.sum(margins_a <= 0))}
    if all(r["gold"] is not None for r in a):
        report["accuracy_a"] = float(np.mean([r["predicted"] == r["gold"] for r in a]))
        report["accuracy_b"] = float(np.mean([by_id[r["id"]]["predicted"] == r["gold"] for r in a]))
    gate = None
    if min_agreement is not None:
        ok = report["top1_agreement"] >= min_agreement
        gate = {"min_agreement": {"limit": min_agreement, "value": report["top1_agreement"], "passed": ok}, "passed": ok}
    report["gate"] = gate
    return report


def format_compare_predictions(r: dict, shown: int = 20) -> str:
    lines = [f"A  {r['predictions_a']}", f"B  {r['predictions_b']}",
             f"  {'samples':<26}{r['samples']:>10}",
             f"  {'top-1 agreement':<26}{r['top1_agreement']:>10.4f}  ({len(r['disagreements'])} differ)"]
    if "accuracy_a" in r:
        lines.append(f"  {'accuracy A / B':<26}{r['accuracy_a']:>10.4f} / {r['accuracy_b']:.4f}")
    lines.append(f"  {'top-1 score |A-B| mean/max':<26}{r['top1_score_abs_diff_mean']:>10.4f} / "
                 f"{r['top1_score_abs_diff_max']:.4f}")
    if r["exact_ties_a"]:
        lines.append(f"  {'exact ties in A':<26}{r['exact_ties_a']:>10}")
    for d in r["disagreements"][:shown]:
        text = "" if d["text"] is None else f"  {d['text'][:60]!r}"
        lines.append(f"  id {d['id']}: A {d['a']['predicted']} (margin {d['a']['margin']:.4f}) vs "
                     f"B {d['b']['predicted']} (margin {d['b']['margin']:.4f}){text}")
    if len(r["disagreements"]) > shown:
        lines.append(f"  ... {len(r['disagreements']) - shown} more (--json lists all)")
    if r["gate"]:
        g = r["gate"]["min_agreement"]
        lines.append(f"  gate  top1_agreement >= {g['limit']}: {'PASS' if g['passed'] else 'FAIL'}")
    return "\n".join(lines)
