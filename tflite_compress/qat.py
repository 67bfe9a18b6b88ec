"""Quantization-aware training wrappers for NLP students (tfmot, 8-bit default scheme).

tfmot's default registry has no QuantizeConfig for Embedding or Conv1D, and its input
quantizer would feed int32 token ids into FakeQuant. This module annotates layers itself:
- Embedding: the table is fake-quantized per tensor, symmetric (TFLite's int8 Gather keeps
  the table's scale, so no activation quantizer is needed);
- Conv1D: per-tensor symmetric weights, quantized output after the activation (per-channel
  fake quant of the 3-D kernel converts to a Transpose with "mismatched quantized axes" in
  the TFLite converter of TF 2.21, so per-tensor it is);
- every other layer: tfmot's own registry;
- integer model inputs are left unquantized (token ids stay int32).
With `preserve_sparsity` the weight quantizers multiply by the zero mask first (tfmot's
prune-preserving scheme, PQAT), so pruned zeros stay zero through QAT.
"""

from __future__ import annotations


from .config import QATConfig
from ._tf import keras, tf, tfmot
from .errors import InputError

_q = tfmot.quantization.keras
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E402
    default_8bit_prune_preserve_quantize_scheme as _pp_scheme,
    prune_preserve_quantize_registry as _pp_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_layout_transform as _layout,
    default_8bit_quantize_scheme as _d8_scheme,
)


def _tensor_quantizer(preserve_sparsity: bool):
    """Per-tensor symmetric int8 weights, optionally keeping pruned zeros (tfmot PQAT)."""
    if preserve_sparsity:
        return _pp_registry.PrunePreserveDefault8BitWeightsQuantizer()
    return _q.quantizers.LastValueQuantizer(num_bits=8, per_axis=False, symmetric=True, narrow_range=True)


class EmbeddingQuantizeConfig(_q.QuantizeConfig):
    """Fake-quantizes the embedding table; output shares the table's quantization."""

    def __init__(self, preserve_sparsity: bool = False):
        self.preserve_sparsity = preserve_sparsity
        self._quantizer = _tensor_quantizer(preserve_sparsity)

    def get_weights_and_quantizers(self, layer):
        return [(layer.embeddings, self._quantizer)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        layer.embeddings = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity}


class Conv1DQuantizeConfig(_q.QuantizeConfig):
    """Per-channel int8 kernel; the output is quantized after the layer's activation."""

    def __init__(self, preserve_sparsity: bool = False):
        self.preserve_sparsity = preserve_sparsity
        self._weights = _tensor_quantizer(preserve_sparsity)
        self._activation = _q.quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False
        )

    def get_weights_and_quantizers(self, layer):
        return [(layer.kernel, self._weights)]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, self._activation)]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity}


CUSTOM_CONFIGS = {
    keras.layers.Embedding: EmbeddingQuantizeConfig,
    keras.layers.Conv1D: Conv1DQuantizeConfig,
}


def custom_objects() -> dict:
    """Everything `quantize_scope` needs to load a QAT model of ours again."""
    return {
        "EmbeddingQuantizeConfig": EmbeddingQuantizeConfig,
        "Conv1DQuantizeConfig": Conv1DQuantizeConfig,
        "PrunePreserveDefault8BitWeightsQuantizer": _pp_registry.PrunePreserveDefault8BitWeightsQuantizer,
    }


class _IntInputLayoutTransform(_layout.Default8BitQuantizeLayoutTransform):
    """tfmot's layout transform, minus the input quantizer on integer inputs (token ids)."""

    def apply(self, model, layer_quantize_map):
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer) and not layer.dtype.startswith("float"):
                layer_quantize_map.pop(layer.name, None)
        return super().apply(model, layer_quantize_map)


class StudentQuantizeScheme(_d8_scheme.Default8BitQuantizeScheme):
    def __init__(self, preserve_sparsity: bool):
        super().__init__()
        self.preserve_sparsity = preserve_sparsity

    def get_layout_transformer(self):
        return _IntInputLayoutTransform()

    def get_quantize_registry(self):
        if self.preserve_sparsity:
            return _pp_scheme.Default8BitPrunePreserveQuantizeScheme().get_quantize_registry()
        return super().get_quantize_registry()


def quantize_scope():
    return _q.quantize_scope(custom_objects())


def quantize_student(model: "keras.Model", preserve_sparsity: bool = True) -> "keras.Model":
    """Return a QAT copy of `model` (weights copied; recompile before training)."""

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        config_cls = CUSTOM_CONFIGS.get(type(layer))
        config = config_cls(preserve_sparsity) if config_cls else None
        return _q.quantize_annotate_layer(layer.__class__.from_config(layer.get_config()), config)

    try:
        annotated = keras.models.clone_model(model, clone_function=annotate)
    except ValueError as exc:
        raise InputError(f"model {model.name!r} cannot be annotated for QAT: {exc}") from None
    annotated.set_weights(model.get_weights())
    with quantize_scope():
        try:
            return _q.quantize_apply(annotated, scheme=StudentQuantizeScheme(preserve_sparsity))
        except RuntimeError as exc:
            raise InputError(f"QAT: {str(exc).splitlines()[0]}") from None


def is_quantized(model: "keras.Model") -> bool:
    return any(isinstance(lay, _q.QuantizeWrapperV2) for lay in model.layers) or any(
        type(lay).__name__ == "QuantizeLayer" for lay in model.layers
    )


__all__ = ["QATConfig", "quantize_student", "quantize_scope", "custom_objects", "tf"]
