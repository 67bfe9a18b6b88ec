"""Quantization-aware training wrappers for NLP students (tfmot, 8-bit default scheme).

tfmot's default registry has no QuantizeConfig for Embedding or Conv1D, and its input
quantizer would feed int32 token ids into FakeQuant. This module annotates layers itself:
- Embedding: the table is fake-quantized per tensor, symmetric (TFLite's int8 Gather keeps
  the table's scale, so no activation quantizer is needed);
- Conv1D: per-tensor symmetric weights, quantized output after the activation (per-channel
  fake quant of the 3-D kernel converts to a Transpose with "mismatched quantized axes" in
  the TFLite converter of TF 2.21, so per-tensor it is);
- GlobalAverage/MaxPooling1D, LayerNormalization, Add/Multiply, Softmax/GELU activations and
  the students' `DotProductAttention`: quantized output (the converter calibrates what the
  layer lowers into, e.g. LayerNorm's Mean/SquaredDifference/Rsqrt, from the representative
  dataset);
- `PositionEmbedding` and `QuantizableMultiHeadAttention`: per-tensor weights + output;
- TFOpLambda add/multiply (`x + y` in a functional model) become `ElementwiseOp` layers
  first (tfmot cannot wrap op layers);
- every other layer: tfmot's own registry;
- integer model inputs are left unquantized (token ids stay int32).
With `preserve_sparsity` the weight quantizers multiply by the zero mask first (tfmot's
prune-preserving scheme, PQAT), so pruned zeros stay zero through QAT.
"""

from __future__ import annotations


from . import students as _students
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

    table = "embeddings"  # the layer attribute holding the table

    def __init__(self, preserve_sparsity: bool = False):
        self.preserve_sparsity = preserve_sparsity
        self._quantizer = _tensor_quantizer(preserve_sparsity)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self.table), self._quantizer)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        setattr(layer, self.table, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity}


class Conv1DQuantizeConfig(_q.QuantizeConfig):
    """Per-tensor int8 kernel; the output is quantized after the layer's activation."""

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


def _output_quantizer():
    return _q.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)


class OutputQuantizeConfig(_q.QuantizeConfig):
    """No weights to quantize; the layer's output is fake-quantized (asymmetric int8).

    Used for layers whose TFLite lowering is integer-capable once the tensors around it have
    ranges: GlobalAverage/MaxPooling1D, LayerNormalization (its Mean/SquaredDifference/Rsqrt
    internals are calibrated by the converter), Add/Multiply and `ElementwiseOp`, Softmax and
    GELU activations, `DotProductAttention`.
    """

    def __init__(self, preserve_sparsity: bool = False, quantize_output: bool = True):
        self.preserve_sparsity = preserve_sparsity
        self.quantize_output = quantize_output  # tfmot's ConcatTransform turns it off before a Concatenate

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_output_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity, "quantize_output": self.quantize_output}


class PoolingQuantizeConfig(OutputQuantizeConfig):
    """GlobalAveragePooling1D / GlobalMaxPooling1D: quantized output."""


class LayerNormQuantizeConfig(OutputQuantizeConfig):
    """LayerNormalization: gamma/beta stay float in Keras (the converter quantizes them);
    the normalized output is fake-quantized so the lowered ops all get int8 ranges."""


class ElementwiseQuantizeConfig(OutputQuantizeConfig):
    """Add / Multiply of tensors (and `ElementwiseOp`, our stand-in for TFOpLambda add/mul)."""


# TFLite's int8 kernels fix the output quantization of these: scale 1/256, zero point -128
# (softmax, sigmoid) and scale 1/128, zero point 0 (tanh). Fake-quantizing to exactly that range
# spares the converter a requantize (and, at a model output, a DEQUANTIZE/QUANTIZE pair).
_FIXED_OUTPUT_RANGES = {"softmax": (0.0, 255.0 / 256.0), "sigmoid": (0.0, 255.0 / 256.0), "tanh": (-1.0, 127.0 / 128.0)}


class ActivationQuantizeConfig(OutputQuantizeConfig):
    """Activation layers (gelu, softmax, sigmoid, tanh, swish) and Softmax: quantized output.

    tfmot's own Activation config leaves softmax unquantized, which leaves a float tensor
    behind it when no calibration covers it. Softmax/sigmoid/tanh get the fixed range TFLite's
    int8 kernel produces; the others a moving-average range.
    """

    def get_output_quantizers(self, layer):
        if not self.quantize_output:
            return []
        name = "softmax" if isinstance(layer, keras.layers.Softmax) else getattr(layer.activation, "__name__", "")
        if name in _FIXED_OUTPUT_RANGES:
            lo, hi = _FIXED_OUTPUT_RANGES[name]
            return [_q.quantizers.FixedQuantizer(num_bits=8, init_min=lo, init_max=hi, narrow_range=False)]
        return [_output_quantizer()]


class AttentionQuantizeConfig(OutputQuantizeConfig):
    """`students.DotProductAttention` (no weights): quantized context output; the scores and
    softmax inside are calibrated by the converter from the representative dataset."""


class PositionEmbeddingQuantizeConfig(EmbeddingQuantizeConfig):
    """`students.PositionEmbedding`: per-tensor symmetric table, quantized output (x + table)."""

    table = "positions"

    def __init__(self, preserve_sparsity: bool = False, quantize_output: bool = True):
        super().__init__(preserve_sparsity)
        self.quantize_output = quantize_output

    def get_output_quantizers(self, layer):
        return [_output_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity, "quantize_output": self.quantize_output}


class _PrefixedQuantizer(_q.quantizers.Quantizer):
    """A quantizer whose variables get a prefix: MHA's four kernels are all named "kernel",
    and the wrapper names quantizer variables after the weight (h5 files need unique names)."""

    def __init__(self, inner, prefix: str):
        self.inner = inner
        self.prefix = prefix

    def build(self, tensor_shape, name, layer):
        return self.inner.build(tensor_shape, f"{self.prefix}_{name}", layer)

    def __call__(self, inputs, training, weights, **kwargs):
        return self.inner(inputs, training, weights, **kwargs)

    def get_config(self):
        return {"prefix": self.prefix}

    def __eq__(self, other):
        return isinstance(other, _PrefixedQuantizer) and self.prefix == other.prefix and self.inner == other.inner

    def __ne__(self, other):
        return not self == other


class MultiHeadAttentionQuantizeConfig(_q.QuantizeConfig):
    """`students.QuantizableMultiHeadAttention`: the query/key/value/output EinsumDense kernels
    per-tensor (3-D kernels: per-channel would not convert), quantized output; the einsum and
    softmax tensors inside are calibrated by the converter."""

    def __init__(self, preserve_sparsity: bool = False, quantize_output: bool = True):
        self.preserve_sparsity = preserve_sparsity
        self.quantize_output = quantize_output
        self._quantizers = [_PrefixedQuantizer(_tensor_quantizer(preserve_sparsity), p)
                            for p in ("query", "key", "value", "output")]

    def get_weights_and_quantizers(self, layer):
        return [(d.kernel, q) for d, q in zip(layer.projection_layers(), self._quantizers)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        for d, w in zip(layer.projection_layers(), quantize_weights):
            object.__setattr__(d, "kernel", w)  # no Keras re-tracking: keeps the weight order stable for h5

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [_output_quantizer()] if self.quantize_output else []

    def get_config(self):
        return {"preserve_sparsity": self.preserve_sparsity, "quantize_output": self.quantize_output}


CUSTOM_CONFIGS = {
    keras.layers.Embedding: EmbeddingQuantizeConfig,
    keras.layers.Conv1D: Conv1DQuantizeConfig,
    keras.layers.GlobalAveragePooling1D: PoolingQuantizeConfig,
    keras.layers.GlobalMaxPooling1D: PoolingQuantizeConfig,
    keras.layers.LayerNormalization: LayerNormQuantizeConfig,
    keras.layers.Add: ElementwiseQuantizeConfig,
    keras.layers.Multiply: ElementwiseQuantizeConfig,
    keras.layers.Softmax: ActivationQuantizeConfig,
    _students.ElementwiseOp: ElementwiseQuantizeConfig,
    _students.DotProductAttention: AttentionQuantizeConfig,
    _students.PositionEmbedding: PositionEmbeddingQuantizeConfig,
    _students.QuantizableMultiHeadAttention: MultiHeadAttentionQuantizeConfig,
}

# Activation layers: ours for these (tfmot leaves softmax unquantized), tfmot's for the rest.
_ACTIVATIONS = ("gelu", "softmax", "swish", "sigmoid", "tanh")

_CONFIG_CLASSES = (
    EmbeddingQuantizeConfig, Conv1DQuantizeConfig, OutputQuantizeConfig, PoolingQuantizeConfig,
    LayerNormQuantizeConfig, ElementwiseQuantizeConfig, ActivationQuantizeConfig, AttentionQuantizeConfig,
    PositionEmbeddingQuantizeConfig, MultiHeadAttentionQuantizeConfig,
)


def custom_objects() -> dict:
    """Everything `quantize_scope` needs to load a QAT model of ours again."""
    return {
        **{cls.__name__: cls for cls in _CONFIG_CLASSES},
        **_students.CUSTOM_LAYERS,
        "PrunePreserveDefault8BitWeightsQuantizer": _pp_registry.PrunePreserveDefault8BitWeightsQuantizer,
    }


def config_for(layer, preserve_sparsity: bool = False):
    """Our QuantizeConfig for `layer`, or None to leave it to tfmot's registry."""
    if isinstance(layer, keras.layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        return ActivationQuantizeConfig(preserve_sparsity) if name in _ACTIVATIONS else None
    config_cls = CUSTOM_CONFIGS.get(type(layer))
    return config_cls(preserve_sparsity) if config_cls else None


def _replace_op_layer(layer):
    """A TFOpLambda add/multiply (`x + y` in a functional model) as an `ElementwiseOp`."""
    symbol = getattr(layer, "symbol", "")
    op = {"__operators__.add": "add", "math.add": "add", "math.multiply": "multiply"}.get(symbol)
    if op is None:
        raise InputError(f"layer {layer.name!r} (op {symbol}) cannot be quantized: only add and multiply "
                         "op layers are supported; use a Keras layer instead")
    return _students.ElementwiseOp(op, name=layer.name)


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
    """`with quantize_scope(): keras.models.load_model(path)` loads a QAT model of ours."""
    return _q.quantize_scope(custom_objects())


def quantize_student(model: "keras.Model", preserve_sparsity: bool = True) -> "keras.Model":
    """Return a QAT copy of `model` (weights copied; recompile before training)."""

    def annotate(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer.__class__.from_config(layer.get_config())
        if type(layer).__name__ == "TFOpLambda":
            fresh = _replace_op_layer(layer)
        else:
            fresh = layer.__class__.from_config(layer.get_config())
        return _q.quantize_annotate_layer(fresh, config_for(fresh, preserve_sparsity))

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


__all__ = ["QATConfig", "quantize_student", "quantize_scope", "custom_objects", "config_for", "tf"]
