"""Magnitude pruning with tfmot: wrap, train with `UpdatePruningStep`, strip, measure.

Paired verbs as in tfmot: `prune` wraps, `strip` unwraps. The schedule reaches the target
within the run (its `frequency` is fitted to the step count: tfmot's default of 100 steps
silently prunes nothing in a short run), and the sparsity reached is measured afterwards.
"""

from __future__ import annotations


import numpy as np

from .config import PruneConfig
from ._tf import keras, tfmot

_s = tfmot.sparsity.keras


def prune(model: "keras.Model", config: PruneConfig, total_steps: int) -> "keras.Model":
    """A copy of `model` with every prunable layer wrapped (polynomial schedule 0 -> target)."""
    end_step = max(1, int(total_steps * config.end_fraction))
    schedule = _s.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=config.target_sparsity, begin_step=0,
        end_step=end_step, frequency=max(1, end_step // 20),
    )
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return _s.prune_low_magnitude(clone, pruning_schedule=schedule)


def callbacks() -> list:
    return [_s.UpdatePruningStep()]


def strip(model: "keras.Model") -> "keras.Model":
    """Remove the pruning wrappers (and their mask variables); the zeros stay."""
    return _s.strip_pruning(model)


def sparsity_by_layer(model: "keras.Model") -> dict[str, float]:
    """Share of exact zeros in each layer's main weight (kernel or embedding table)."""
    out = {}
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for attr in ("kernel", "embeddings", "depthwise_kernel"):
            w = getattr(inner, attr, None)
            if w is not None and hasattr(w, "numpy"):
                arr = w.numpy()
                out[inner.name] = float(np.mean(arr == 0))
                break
    return out


def overall_sparsity(model: "keras.Model") -> float:
    zeros = total = 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        for attr in ("kernel", "embeddings", "depthwise_kernel"):
            w = getattr(inner, attr, None)
            if w is not None and hasattr(w, "numpy"):
                arr = w.numpy()
                zeros += int(np.sum(arr == 0))
                total += arr.size
                break
    return zeros / total if total else 0.0
