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


def _unwrapped(layer):
    """The layer under a tfmot wrapper (pruning or QAT), else the layer itself. Not `.layer` alone:
    Keras's own wrappers have one too (Bidirectional's is an unbuilt template of its directions)."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapper
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    return layer.layer if isinstance(layer, (PruneLowMagnitude, QuantizeWrapper)) else layer


def _directions(layer) -> list | None:
    """A Bidirectional layer's two recurrent layers (forward, backward); None for other layers."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return None


def _main_weight(layer):
    inner = _unwrapped(layer)
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
        if not_prunable_reason(layer) is not None:
            return layer
        if _directions(layer):
            # tfmot's registry has no Bidirectional, but its wrapper prunes any layer that says which
            # weights to prune (as `PruneRegistry.make_prunable` does for an LSTM): both directions' cells.
            layer.get_prunable_weights = lambda: prunable_weights(layer)
        weight = _main_weight(layer)
        m_by_n = tuple(config.m_by_n) if config.m_by_n and weight is not None and len(weight.shape) in (2, 4) else None
        if getattr(layer, "supports_masking", False):  # e.g. Embedding(mask_zero=True) ahead of an LSTM
            return _MaskingPruneLowMagnitude(layer, pruning_schedule=schedule(config, total_steps, target),
                                             sparsity_m_by_n=m_by_n)
        return _s.prune_low_magnitude(layer, pruning_schedule=schedule(config, total_steps, target),
                                      sparsity_m_by_n=m_by_n)

    return keras.models.clone_model(clone, clone_function=wrap)


def _masking_wrapper_class():
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import PruneLowMagnitude

    class MaskingPruneLowMagnitude(PruneLowMagnitude):
        """tfmot's pruning wrapper, passing on the mask of the layer it wraps (tfmot's drops it: an
        Embedding(mask_zero=True) under it would leave the LSTM after it unmasked while pruning)."""

        def __init__(self, layer, **kwargs):
            kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")  # tfmot's own naming
            super().__init__(layer, **kwargs)
            self.supports_masking = True

        def compute_mask(self, inputs, mask=None):
            return self.layer.compute_mask(inputs, mask)

    return MaskingPruneLowMagnitude


_MaskingPruneLowMagnitude = _masking_wrapper_class()


def _registry():
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import PruneRegistry

    return PruneRegistry


DEPTHWISE_REASON = ("depthwise kernel, dense by design (tfmot's registry prunes no depthwise weight; a 3x3 "
                    "filter per channel has few weights and each one matters)")


def not_prunable_reason(layer) -> str | None:
    """Why `prune` leaves this weighted layer dense, or None when it is wrapped."""
    inner = _unwrapped(layer)
    if isinstance(inner, _s.PrunableLayer):
        return None
    if _directions(inner):
        whys = [not_prunable_reason(d) for d in _directions(inner)]
        return next((f"Bidirectional over {w}" for w in whys if w), None)
    if isinstance(inner, keras.layers.DepthwiseConv2D):
        return DEPTHWISE_REASON
    if not _registry().supports(inner):
        return f"tfmot cannot prune {type(inner).__name__} layers"
    reg = _registry()
    names = ([n for cell in reg._get_rnn_cells(inner) for n in reg._RNN_CELLS_WEIGHTS_MAP.get(cell.__class__, [])]
             if reg._is_rnn_layer(inner) else reg._weight_names(inner))
    if not names:  # by name: a layer being cloned is not built yet
        return f"tfmot prunes no weight of {type(inner).__name__} layers"
    return None


def prunable_weights(layer) -> list:
    """The weights tfmot prunes in `layer` (wrapped or stripped): kernels, embedding tables, an
    RNN cell's kernel and recurrent kernel (both directions' of a Bidirectional); [] for a layer it
    cannot prune."""
    inner = _unwrapped(layer)
    if isinstance(inner, _s.PrunableLayer):
        return list(inner.get_prunable_weights())
    if _directions(inner):
        return [w for d in _directions(inner) for w in prunable_weights(d)]
    reg = _registry()
    if isinstance(inner, keras.layers.DepthwiseConv2D) or not reg.supports(inner):
        return []
    if reg._is_rnn_layer(inner):
        return [getattr(cell, name) for cell in reg._get_rnn_cells(inner)
                for name in reg._RNN_CELLS_WEIGHTS_MAP.get(cell.__class__, [])]
    out = []
    for name in reg._weight_names(inner):
        obj = inner
        for part in name.split("."):
            obj = getattr(obj, part)
        out.append(obj)
    return out


def sparsity_report(model: "keras.Model", config: PruneConfig) -> dict:
    """Sparsity of a pruned (stripped) model over the weights `prune` wrapped, and apart from it
    each weighted layer left dense, with its own sparsity and the reason.

    Returns {"sparsity": share of zeros over the wrapped weights, "by_layer": {layer: sparsity},
    "not_pruned": {layer: {"sparsity", "weights", "why"}}}.
    """
    targets = layer_targets(config)
    zeros = total = 0
    by_layer, not_pruned = {}, {}
    for layer in model.layers:
        inner = _unwrapped(layer)
        weights = [w.numpy() for w in prunable_weights(inner)]
        why = not_prunable_reason(inner)
        if why is None and targets.get(inner.name, config.target_sparsity) <= 0:
            why = "excluded by the recipe (prune.exclude_layers / layer_targets)"
        if why is not None:
            main = [w.numpy() for w in inner.trainable_weights if len(w.shape) >= 2]
            if main:
                size = sum(w.size for w in main)
                not_pruned[inner.name] = {"sparsity": float(sum(np.sum(w == 0) for w in main) / size),
                                          "weights": int(size), "why": why}
            continue
        if not weights:
            continue
        z, n = sum(int(np.sum(w == 0)) for w in weights), sum(w.size for w in weights)
        by_layer[inner.name] = z / n
        zeros, total = zeros + z, total + n
    return {"sparsity": zeros / total if total else 0.0, "by_layer": by_layer, "not_pruned": not_pruned}


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
            out[_unwrapped(layer).name] = float(np.mean(w.numpy() == 0))
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
