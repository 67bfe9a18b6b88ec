"""Keras -> `.tflite`: full-integer INT8 (int8 weights, activations and output; int32 ids in).

The representative dataset comes from `calibration_data/` (float32 or int32 samples, batch 1).
After conversion the file is loaded in the interpreter and every op output is checked: a
float tensor left between ops is an error, not a warning.

Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional; masked or not) convert at a fixed batch of
1 through `conversion_model` (fused LSTM builtins, unrolled GRUs, masked outputs taken at the last
valid step); `check_recurrent` refuses, in one line naming the layer, what has no integer-only form.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .config import ConvertConfig
from ._tf import tf
from .errors import RunError


class ConversionError(RunError):
    """The converter failed, or left float compute in a model that must be integer-only."""


def _converter(model):
    # Recurrent models: a batch-1 concrete function with a static input shape, so the converter
    # fuses LSTMs into UNIDIRECTIONAL_SEQUENCE_LSTM instead of a loop of TensorList ops.
    if recurrent_layers(model):
        model = conversion_model(model)
        inp = model.inputs[0]
        spec = tf.TensorSpec((1,) + tuple(int(d) for d in inp.shape[1:]), inp.dtype)
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        return tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    # tf-keras models convert directly; anything else goes through a SavedModel.
    try:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    except Exception:  # noqa: BLE001
        tmp = tempfile.mkdtemp(prefix="tflite_compress_sm_")
        model.export(tmp) if hasattr(model, "export") else tf.saved_model.save(model, tmp)
        return tf.lite.TFLiteConverter.from_saved_model(tmp)


def to_int8(model, calibration: np.ndarray, config: ConvertConfig = ConvertConfig()) -> bytes:
    """Full-integer INT8 flatbuffer; integer (token-id) inputs stay int32."""
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    samples = np.asarray(calibration)[: config.calibration_samples]
    input_is_float = np.issubdtype(samples.dtype, np.floating)

    def representative():
        for row in samples:
            yield [row[None, ...].astype(np.float32 if input_is_float else samples.dtype)]

    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if input_is_float:
        conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        content = conv.convert()
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise ConversionError(f"INT8 conversion failed: {_converter_message(exc)}") from None
    if config.require_integer_only:
        check_integer_only(content)
    return content


def _converter_message(exc: Exception) -> str:
    """The converter's first `error:` line, without its long MLIR location prefix."""
    lines = str(exc).splitlines()
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()[:300]
    return (lines[-1] if lines else type(exc).__name__)[:300]


# ---------------------------------------------------------------- recurrent layers

RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


def _rnn_kind(layer) -> str | None:
    """"LSTM"/"GRU"/"SimpleRNN", "Bidirectional" (over one of them), or None."""
    name = type(layer).__name__
    if name in RNN_CLASSES:
        return name
    if name == "Bidirectional" and type(layer.forward_layer).__name__ in RNN_CLASSES:
        return "Bidirectional"
    return None


def recurrent_layers(model) -> list[str]:
    """Names of the model's recurrent layers (LSTM, GRU, SimpleRNN, Bidirectional)."""
    return [layer.name for layer in getattr(model, "layers", []) if _rnn_kind(layer)]


def _has_mask(layer) -> bool:
    try:
        return layer.input_mask is not None
    except (AttributeError, RuntimeError, ValueError):
        return False


def _stateful_or_sequences(layer):
    inner = layer.forward_layer if _rnn_kind(layer) == "Bidirectional" else layer
    return inner.return_sequences, inner.stateful, inner.return_state


def check_recurrent(model) -> None:
    """Raise ConversionError (one line, the layer named) for a recurrent layer that has no
    integer-only TFLite form here; run before any training."""
    for layer in getattr(model, "layers", []):
        kind = _rnn_kind(layer)
        if not kind:
            continue
        sequences, stateful, state = _stateful_or_sequences(layer)
        why = None
        if stateful or state:
            why = "stateful or return_state recurrent layers are not converted"
        elif kind == "Bidirectional" and layer.merge_mode != "concat":
            why = f"Bidirectional merge_mode={layer.merge_mode!r} (only 'concat' is converted)"
        elif _has_mask(layer) and sequences:
            why = ("a masked recurrent layer returning sequences becomes a loop of TensorList ops, which has no "
                   "integer-only form; use return_sequences=False on the masked layer or mask_zero=False")
        if why:
            raise ConversionError(f"layer {layer.name!r} ({kind}) cannot become an integer-only file: {why}. "
                                  f"Nearest path that works: {DYNAMIC_RANGE_HINT}")


DYNAMIC_RANGE_HINT = ("dynamic-range quantization (int8 weights, float activations): "
                      "tf.lite.TFLiteConverter with optimizations=[tf.lite.Optimize.DEFAULT] and no representative dataset")


def conversion_model(model):
    """A batch-1 copy of a recurrent tf-keras model, same weights, whose recurrent layers convert to
    integer-only builtins:

    - LSTM without mask and not Bidirectional: as it is (the converter fuses it into
      UNIDIRECTIONAL_SEQUENCE_LSTM);
    - every other recurrent layer becomes a `SequenceForConversion`: each direction runs unmasked
      over the whole (static) sequence, an LSTM as a fused UNIDIRECTIONAL_SEQUENCE_LSTM, a
      GRU/SimpleRNN unrolled step by step from per-gate FULLY_CONNECTED/LOGISTIC/TANH/MUL/ADD
      (TFLite has no fused GRU op); the backward direction reads the valid steps reversed (GATHER);
      a masked layer's output is taken at the last unmasked step. With the padding at the end,
      as the suite's tokenizer writes it, this equals Keras's masked output.
    """
    from ._tf import keras

    check_recurrent(model)
    inp = model.inputs[0]
    fixed = keras.Input(batch_shape=(1,) + tuple(inp.shape[1:]), dtype=inp.dtype, name=inp.name.split(":")[0])

    def clone(layer):
        kind = _rnn_kind(layer)
        if kind and (kind != "LSTM" or _has_mask(layer)):
            return SequenceForConversion(layer.get_config(), kind, name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, input_tensors=fixed, clone_function=clone)
    for old, twin in zip(model.layers, new.layers):
        if isinstance(twin, SequenceForConversion):
            twin.copy_weights(old)
        elif old.weights:
            twin.set_weights(old.get_weights())
    return new


def _conversion_layers():
    from ._tf import keras

    class UnrolledRNN(keras.layers.Layer):
        """A GRU or SimpleRNN (tf-keras weights) unrolled over a static sequence, one constant
        weight per gate, returning the whole sequence (no mask)."""

        def __init__(self, rnn_class: str, rnn_config: dict, **kwargs):
            super().__init__(**kwargs)
            self.rnn_class, self.rnn_config = rnn_class, rnn_config
            self.units = int(rnn_config["units"])
            self.act = keras.activations.get(rnn_config.get("activation", "tanh"))
            self.rec_act = keras.activations.get(rnn_config.get("recurrent_activation", "sigmoid"))
            self.gates = 3 if rnn_class == "GRU" else 1
            self.reset_after = bool(rnn_config.get("reset_after", True)) and rnn_class == "GRU"

        def build(self, input_shape):
            n_in, h = int(input_shape[-1]), self.units
            self.w = [self.add_weight(name=f"w{g}", shape=(n_in, h), initializer="zeros") for g in range(self.gates)]
            self.u = [self.add_weight(name=f"u{g}", shape=(h, h), initializer="zeros") for g in range(self.gates)]
            self.b = [self.add_weight(name=f"b{g}", shape=(h,), initializer="zeros") for g in range(self.gates)]
            self.rb = [self.add_weight(name=f"rb{g}", shape=(h,), initializer="zeros") for g in range(self.gates)]

        def copy_weights(self, source) -> None:
            """From a tf-keras GRU/SimpleRNN layer: kernel, recurrent_kernel[, bias]."""
            cell = source.cell
            kernel, rec = cell.kernel.numpy(), cell.recurrent_kernel.numpy()
            h = self.units
            bias = cell.bias.numpy() if cell.use_bias else np.zeros((2 if self.reset_after else 1, self.gates * h))
            bias = bias.reshape(-1, self.gates * h)
            for g in range(self.gates):
                cols = slice(g * h, (g + 1) * h)
                self.w[g].assign(kernel[:, cols])
                self.u[g].assign(rec[:, cols])
                self.b[g].assign(bias[0, cols])
                self.rb[g].assign(bias[1, cols] if bias.shape[0] > 1 else np.zeros(h))

        def call(self, inputs):
            steps = int(inputs.shape[1])
            state = tf.zeros((tf.shape(inputs)[0], self.units), inputs.dtype)
            outs = []
            for t in range(steps):
                x = inputs[:, t, :]
                if self.gates == 1:
                    state = self.act(tf.matmul(x, self.w[0]) + self.b[0] + tf.matmul(state, self.u[0]))
                else:
                    xz, xr, xh = (tf.matmul(x, self.w[g]) + self.b[g] for g in range(3))
                    z = self.rec_act(xz + tf.matmul(state, self.u[0]) + self.rb[0])
                    r = self.rec_act(xr + tf.matmul(state, self.u[1]) + self.rb[1])
                    if self.reset_after:
                        hh = self.act(xh + r * (tf.matmul(state, self.u[2]) + self.rb[2]))
                    else:
                        hh = self.act(xh + tf.matmul(r * state, self.u[2]))
                    state = z * state + (1.0 - z) * hh
                outs.append(state)
            return tf.stack(outs, axis=1)

        def get_config(self):
            return {**super().get_config(), "rnn_class": self.rnn_class, "rnn_config": self.rnn_config}

    class SequenceForConversion(keras.layers.Layer):
        """A recurrent layer (LSTM/GRU/SimpleRNN, or Bidirectional over one) rewritten for an
        integer-only conversion (see `conversion_model`)."""

        def __init__(self, rnn_config: dict, rnn_kind: str, **kwargs):
            super().__init__(**kwargs)
            self.rnn_config, self.rnn_kind = rnn_config, rnn_kind
            self.supports_masking = True
            if rnn_kind == "Bidirectional":
                inner = rnn_config["layer"]
                back = rnn_config.get("backward_layer") or inner
                self.inner_config = inner["config"]
                self.directions = [self._direction(inner["class_name"], inner["config"]),
                                   self._direction(back["class_name"], back["config"])]
                self.backwards = [False, True]
            else:
                self.inner_config = rnn_config
                self.directions = [self._direction(rnn_kind, rnn_config)]
                self.backwards = [bool(rnn_config.get("go_backwards"))]
            self.return_sequences = bool(self.inner_config.get("return_sequences"))

        @staticmethod
        def _direction(cls_name, cfg):
            if cls_name == "LSTM":
                return keras.layers.LSTM.from_config(dict(cfg, return_sequences=True, go_backwards=False, name=None))
            return UnrolledRNN(cls_name, cfg)

        def copy_weights(self, original):
            sources = ([original.forward_layer, original.backward_layer] if self.rnn_kind == "Bidirectional"
                       else [original])
            for twin, src in zip(self.directions, sources):
                if isinstance(twin, UnrolledRNN):
                    twin.copy_weights(src)
                else:
                    twin.set_weights(src.get_weights())

        def call(self, inputs, mask=None):
            steps = int(inputs.shape[1])
            if mask is None:
                lengths = tf.fill(tf.shape(inputs)[:1], steps)
            else:
                lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
            last = tf.maximum(lengths - 1, 0)
            t = tf.range(steps)[None, :]
            reverse = tf.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)  # valid steps reversed
            outs = []
            for direction, backwards in zip(self.directions, self.backwards):
                x = tf.gather(inputs, reverse, axis=1, batch_dims=1) if backwards else inputs
                seq = direction(x, mask=None) if isinstance(direction, keras.layers.LSTM) else direction(x)
                if not self.return_sequences:
                    outs.append(tf.gather(seq, last, axis=1, batch_dims=1))
                elif backwards and self.rnn_kind == "Bidirectional":
                    outs.append(tf.gather(seq, reverse, axis=1, batch_dims=1))  # back in time order
                else:
                    outs.append(seq)
            return outs[0] if len(outs) == 1 else tf.concat(outs, axis=-1)

        def compute_mask(self, inputs, mask=None):
            return None

        def get_config(self):
            return {**super().get_config(), "rnn_config": self.rnn_config, "rnn_kind": self.rnn_kind}

    return UnrolledRNN, SequenceForConversion


UnrolledRNN, SequenceForConversion = _conversion_layers()


def to_float(model) -> bytes:
    """Plain float32 flatbuffer (a baseline for comparisons)."""
    return _converter(model).convert()


def check_integer_only(content: bytes) -> None:
    from .runtime import TFLiteModel, float_tensors, ops_with_types

    islands = float_tensors(ops_with_types(TFLiteModel(content)))
    if islands:
        names = ", ".join(sorted({op["op"] for op in islands}))
        raise ConversionError(f"INT8 model still computes in float: {len(islands)} op(s) with float outputs ({names})")


def write_tflite(path: str | os.PathLike, content: bytes) -> None:
    from .files import atomic_write_bytes

    atomic_write_bytes(path, content)
