"""Magnitude pruning with tfmot: wrap, train with `UpdatePruningStep`, strip, measure.

Paired verbs as in tfmot: `prune` wraps, `strip` unwraps. The schedule reaches the target
within the run (its `frequency` is fitted to the step count: tfmot's default of 100 steps
silently prunes nothing in a short run), and the sparsity reached is measured afterwards,
in the Keras model (`sparsity_by_layer`) and in the converted file (`tflite_sparsity_by_layer`).

Options (`PruneConfig`): polynomial or constant schedule, per-layer targets and exclusions,
structured m:n sparsity (2:4) on 2-D kernels.
"""

from __future__ import annotations

import re

import numpy as np

from .config import PruneConfig
from ._tf import keras, tfmot
from .errors import InputError

_s = tfmot.sparsity.keras
_WEIGHT_ATTRS = ("kernel", "embeddings", "depthwise_kernel")


def layer_targets(config: PruneConfig) -> dict[str, float]:
    """`config.layer_targets` ("name=sparsity") as a dict; excluded layers map to 0."""
    out: dict[str, float] = {}
    for item in config.layer_targets:  # checked when the PruneConfig was built
        name, _, value = str(item).partition("=")
        out[name.strip()] = float(value)
    for name in config.exclude_layers:
        out[name] = 0.0
    return out


def schedule(config: PruneConfig, total_steps: int, target: float | None = None):
    """The tfmot schedule that reaches `target` (default `config.target_sparsity`) in `total_steps`."""
    target = config.target_sparsity if target is None else target
    end_step = max(1, int(total_steps * config.end_fraction))
    frequency = max(1, end_step // 20)
    if config.schedule == "polynomial":
        return _s.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target, begin_step=0,
                                  end_step=end_step, frequency=frequency)
    return _s.ConstantSparsity(target, begin_step=0, frequency=frequency)  # "constant" (PruneConfig checks)


def _main_weight(layer):
    inner = getattr(layer, "layer", layer)
    for attr in _WEIGHT_ATTRS:
        w = getattr(inner, attr, None)
        if w is not None and hasattr(w, "numpy"):
            return w
    return None


def prune(model: "keras.Model", config: PruneConfig, total_steps: int) -> "keras.Model":
    """A copy of `model` with its prunable layers wrapped, each with its own schedule.

    The input model is not changed. Compile the result, train it with `callbacks()`, then `strip`.
    """
    targets = layer_targets(config)
    unknown = sorted(set(targets) - {layer.name for layer in model.layers})
    if unknown:
        raise InputError(f"prune: no layer named {', '.join(unknown)} in {model.name!r}; layers: "
                         f"{', '.join(lay.name for lay in model.layers if _main_weight(lay) is not None)}")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())

    def wrap(layer):
        target = targets.get(layer.name, config.target_sparsity)
        if isinstance(layer, keras.layers.InputLayer) or target <= 0:
            return layer
        supported = isinstance(layer, _s.PrunableLayer) or _prunable_by_registry(layer)
        if not supported:
            return layer
        weight = _main_weight(layer)
        m_by_n = tuple(config.m_by_n) if config.m_by_n and weight is not None and len(weight.shape) in (2, 4) else None
        return _s.prune_low_magnitude(layer, pruning_schedule=schedule(config, total_steps, target),
                                      sparsity_m_by_n=m_by_n)

    return keras.models.clone_model(clone, clone_function=wrap)


def _prunable_by_registry(layer) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return PruneRegistry.supports(layer)


def callbacks() -> list:
    return [_s.UpdatePruningStep()]


def strip(model: "keras.Model") -> "keras.Model":
    """Remove the pruning wrappers (and their mask variables); the zeros stay."""
    return _s.strip_pruning(model)


def sparsity_by_layer(model: "keras.Model") -> dict[str, float]:
    """Share of exact zeros in each layer's main weight (kernel or embedding table)."""
    out = {}
    for layer in model.layers:
        w = _main_weight(layer)
        if w is not None:
            out[getattr(layer, "layer", layer).name] = float(np.mean(w.numpy() == 0))
    return out


def overall_sparsity(model: "keras.Model") -> float:
    zeros = total = 0
    for layer in model.layers:
        w = _main_weight(layer)
        if w is not None:
            arr = w.numpy()
            zeros += int(np.sum(arr == 0))
            total += arr.size
    return zeros / total if total else 0.0


def is_m_by_n(weights: np.ndarray, m: int = 2, n: int = 4) -> bool:
    """True if every group of `n` consecutive input weights of each output holds >= `m` zeros.

    `weights` is a Keras kernel (in, out) or embedding table; groups run along the first axis
    for kernels (TFLite stores (out, in)), as tfmot's m_by_n pruning lays them out.
    """
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[0] % n:
        return False
    groups = w.T.reshape(w.shape[1], -1, n)
    return bool(np.all(np.sum(groups == 0, axis=-1) >= m))


def _keras_layer_of(tensor_name: str, layer_names: set[str]) -> str | None:
    """The Keras layer a TFLite tensor name comes from ("student/quant_hidden/MatMul" -> "hidden")."""
    for part in re.split(r"[;/]", tensor_name):
        for candidate in (part, part[len("quant_"):] if part.startswith("quant_") else None):
            if candidate and candidate in layer_names:
                return candidate
    return None


def tflite_sparsity_by_layer(content: bytes, layer_names) -> dict:
    """Sparsity of each weight tensor in the `.tflite` file, mapped back to Keras layer names.

    Zeros are counted after quantization (value == zero point), by
    `tflite_compress.runtime.weight_sparsity`. Returns {"by_layer": {layer: sparsity},
    "overall": float, "unmapped": {tensor: sparsity}}; the overall share covers every
    weight tensor of the file, mapped or not.
    """
    from .runtime import TFLiteModel, weight_sparsity

    names = set(layer_names)
    sp = weight_sparsity(TFLiteModel(content))
    zeros: dict[str, float] = {}
    sizes: dict[str, int] = {}
    unmapped = {}
    for tensor, info in sp["tensors"].items():
        layer = _keras_layer_of(tensor, names)
        size = int(np.prod(info["shape"]))
        if layer is None:
            unmapped[tensor] = info["sparsity"]
            continue
        zeros[layer] = zeros.get(layer, 0.0) + info["sparsity"] * size
        sizes[layer] = sizes.get(layer, 0) + size
    return {"by_layer": {k: zeros[k] / sizes[k] for k in sizes}, "overall": sp["overall"], "unmapped": unmapped}
