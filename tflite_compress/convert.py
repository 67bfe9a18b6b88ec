"""Keras -> `.tflite`, with a quantization plan per target (`ConvertConfig.target`).

- "npu": full-integer INT8 (int8 weights, activations and output; int32 ids in), for integer-only
  accelerators. After conversion the file is loaded in the interpreter and every op output is
  checked: a float tensor left between ops is an error, not a warning.
- "cpu": XNNPACK on a phone's CPU. Candidate plans are converted and measured side by side in the
  interpreter (1 thread, batch 1, interleaved rounds): full INT8; INT8 with float islands for the
  ops XNNPACK does not take in int8 (read from the delegation report of the full-INT8 file, e.g.
  SOFTMAX, and BATCH_MATMUL whose right-hand zero point is not 0); INT8 with symmetric (zero
  point 0) right-hand matmul operands, so XNNPACK takes the attention BATCH_MATMULs (alone, and
  with SOFTMAX in float); dynamic range (int8 weights, float activations). The fastest whose top-1 agreement with the float file on the calibration
  rows is at least `cpu_min_agreement` is kept; the plan (`ConversionResult.plan`) says which
  ops stayed float and why, with every candidate's measured figures.

The representative dataset comes from `calibration_data/` (float32 or int32 samples, batch 1).

Recurrent models (LSTM, GRU, SimpleRNN, Bidirectional; masked or not) convert at a fixed batch of
1 through `conversion_model` (fused LSTM builtins, unrolled GRUs, masked outputs taken at the last
valid step); `check_recurrent` refuses, in one line naming the layer, what has no integer-only form.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref

import numpy as np

from .config import ConvertConfig
from ._tf import tf
from .errors import RunError


class ConversionError(RunError):
    """The converter failed, or left float compute in a model that must be integer-only."""


def _converter(model):
    """Recurrent models: a batch-1 concrete function with a static input shape, so the converter fuses
    LSTMs into UNIDIRECTIONAL_SEQUENCE_LSTM instead of a loop of TensorList ops. tf-keras models
    convert directly; anything else goes through a SavedModel in a temp folder, removed when the
    converter is (it reads the folder again in `convert()`)."""
    if recurrent_layers(model):
        model = conversion_model(model)
        inp = model.inputs[0]
        spec = tf.TensorSpec((1,) + tuple(int(d) for d in inp.shape[1:]), inp.dtype)
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        return tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    try:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    except Exception:  # noqa: BLE001
        tmp = tempfile.mkdtemp(prefix="tflite_compress_sm_")
        model.export(tmp) if hasattr(model, "export") else tf.saved_model.save(model, tmp)
        conv = tf.lite.TFLiteConverter.from_saved_model(tmp)
        weakref.finalize(conv, shutil.rmtree, tmp, True)
        return conv


def _representative(calibration: np.ndarray, config: ConvertConfig):
    samples = np.asarray(calibration)[: config.calibration_samples]
    input_is_float = np.issubdtype(samples.dtype, np.floating)

    def representative():
        for row in samples:
            yield [row[None, ...].astype(np.float32 if input_is_float else samples.dtype)]

    return representative, input_is_float


def to_int8(model, calibration: np.ndarray, config: ConvertConfig = ConvertConfig()) -> bytes:
    """Full-integer INT8 flatbuffer; integer (token-id) inputs stay int32."""
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    representative, input_is_float = _representative(calibration, config)
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
        kinds = "/".join(sorted({t for op in islands for t in op["outputs"] if t not in ("int8", "int32")}))
        raise ConversionError(f"INT8 model is not integer-only: {len(islands)} op(s) with {kinds} outputs ({names})")


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """The chosen file and how it was made: `plan` is JSON-ready (target, chosen plan, float ops, candidates)."""

    content: bytes
    plan: dict


def convert(model, calibration: np.ndarray, config: ConvertConfig = ConvertConfig()) -> ConversionResult:
    """The INT8 file for `config.target` ("npu": full integer; "cpu": the fastest measured plan)."""
    if config.target == "npu":
        content = to_int8(model, calibration, config)
        return ConversionResult(content, {"target": "npu", "chosen": "int8",
                                          "why": "integer-only accelerators need int8 everywhere"})
    return _cpu_plan(model, calibration, config)


def to_dynamic_range(model) -> bytes:
    """int8 weights, float activations (XNNPACK runs FULLY_CONNECTED on dynamically quantized inputs)."""
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        return conv.convert()
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"dynamic-range conversion failed: {_converter_message(exc)}") from None


def to_int8_with_float_ops(model, calibration: np.ndarray, float_ops: tuple[str, ...],
                           config: ConvertConfig = ConvertConfig()) -> bytes:
    """INT8 with the listed op types left in float (QUANTIZE/DEQUANTIZE around them), int8 elsewhere.

    Uses TFLite's selective quantization (`QuantizationDebugOptions(denylisted_ops=...)`); the
    file's input and output keep the model's types (int32 ids in, float logits out).
    """
    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    representative, _ = _representative(calibration, config)
    conv.representative_dataset = representative
    try:
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=conv, debug_dataset=representative,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=list(float_ops)))
        return debugger.get_nondebug_quantized_model()
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"INT8 conversion with float {', '.join(float_ops)} failed: {_converter_message(exc)}") from None


# Ops whose output must keep their input's quantization (a walk back from a matmul operand passes them).
_SAME_QUANT_OPS = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")


def symmetric_matmul_operands(content: bytes) -> tuple[bytes, list[str]]:
    """Requantize the right-hand operands of int8 BATCH_MATMULs to zero point 0 (symmetric).

    XNNPACK refuses an int8 BATCH_MATMUL whose right-hand input has a non-zero zero point. The
    operand is the output of a requantizing op (FULLY_CONNECTED) seen through RESHAPE/TRANSPOSE;
    giving that chain of tensors zero point 0 and the scale that covers the same real range
    (`scale * max(zp + 128, 127 - zp) / 127`) keeps its values and lets XNNPACK take the matmul.
    Returns the new file and the names of the tensors changed. Costs at most one bit of the
    operand's resolution.
    """
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    model = fbu.read_model_from_bytearray(bytearray(content))
    sub = model.subgraphs[0]
    names = {i: fbu.opcode_to_name(model, i) for i in range(len(model.operatorCodes))}
    producer = {int(t): op for op in sub.operators for t in op.outputs}
    changed: list[str] = []
    for op in sub.operators:
        if names[op.opcodeIndex] != "BATCH_MATMUL" or len(op.inputs) < 2:
            continue
        chain, t = [], int(op.inputs[1])
        while True:
            chain.append(t)
            prod = producer.get(t)
            if prod is None or names[prod.opcodeIndex] not in _SAME_QUANT_OPS:
                break
            t = int(prod.inputs[0])
        q = sub.tensors[chain[0]].quantization
        if sub.tensors[chain[0]].type != 9 or q is None or q.zeroPoint is None or len(q.zeroPoint) != 1:
            continue  # int8 per-tensor only
        zp, scale = int(q.zeroPoint[0]), float(q.scale[0])
        if zp == 0:
            continue
        new_scale = scale * max(zp + 128, 127 - zp) / 127.0
        for t in chain:
            tq = sub.tensors[t].quantization
            if tq is None or tq.zeroPoint is None or list(tq.zeroPoint) != [zp]:
                break
            tq.zeroPoint = np.asarray([0], np.int64)
            tq.scale = np.asarray([new_scale], np.float32)
            changed.append(sub.tensors[t].name.decode() if isinstance(sub.tensors[t].name, bytes) else str(sub.tensors[t].name))
    return bytes(fbu.convert_object_to_bytearray(model)), changed


def _float_islands_needed(content: bytes) -> tuple[tuple[str, ...], list[dict]]:
    """Op types of a full-INT8 file that XNNPACK leaves out for their int8 form, and those ops."""
    from .runtime.delegation import XNNPACK_FLOAT_ONLY, delegation_report

    report = delegation_report(content)
    left = [o for o in report["ops"] if not o["delegated"] and
            (o["op"] in XNNPACK_FLOAT_ONLY or o["op"] == "BATCH_MATMUL")]
    return tuple(sorted({o["op"] for o in left})), left


def _cpu_plan(model, calibration: np.ndarray, config: ConvertConfig) -> ConversionResult:
    from .runtime import TFLiteModel
    from .runtime.bench import side_by_side_us
    from .runtime.delegation import delegation_report, delegation_summary

    float_content = to_float(model)
    int8 = to_int8(model, calibration, dataclasses.replace(config, require_integer_only=False))
    candidates = {"int8": int8}
    float_ops, left = _float_islands_needed(int8)
    symmetric, sym_tensors = symmetric_matmul_operands(int8)
    if sym_tensors:
        candidates["int8+symmetric_matmul"] = symmetric
    if float_ops:
        candidates["int8+float:" + ",".join(float_ops)] = to_int8_with_float_ops(model, calibration, float_ops, config)
    if sym_tensors and "SOFTMAX" in float_ops:
        softmax_float = to_int8_with_float_ops(model, calibration, ("SOFTMAX",), config)
        candidates["int8+symmetric_matmul+float:SOFTMAX"] = symmetric_matmul_operands(softmax_float)[0]
    candidates["dynamic_range"] = to_dynamic_range(model)
    rows = np.asarray(calibration)[: config.calibration_samples]
    reference = TFLiteModel(float_content)
    ref_pred = reference.predict(rows).argmax(-1)
    models = {name: TFLiteModel(c) for name, c in candidates.items()}
    latency = side_by_side_us({"float": reference, **models}, rows[:8])
    table = []
    for name, m in models.items():
        agreement = float(np.mean(m.predict(rows).argmax(-1) == ref_pred))
        table.append({"plan": name, "latency_us_p50": latency[name], "speedup_vs_float": latency["float"] / latency[name],
                      "agreement_with_float": agreement, "size_bytes": len(candidates[name]),
                      "delegation": delegation_summary(delegation_report(candidates[name]))})
    eligible = [r for r in table if r["agreement_with_float"] >= config.cpu_min_agreement]
    if not eligible:
        raise ConversionError(f"no cpu plan agrees with the float file on >= {config.cpu_min_agreement:.0%} of "
                              "the calibration rows: " + ", ".join(f"{r['plan']} {r['agreement_with_float']:.1%}" for r in table))
    best = min(eligible, key=lambda r: r["latency_us_p50"])
    layers = sorted({o["op"] + " " + o.get("layer", "") for o in _layer_names(int8, left)}) if best["plan"].startswith("int8+") else []
    why = (f"fastest plan measured ({best['latency_us_p50']:.1f} us vs float {latency['float']:.1f} us at batch 1, "
           f"1 thread) with top-1 agreement >= {config.cpu_min_agreement:.0%}")
    return ConversionResult(candidates[best["plan"]], {
        "target": "cpu", "chosen": best["plan"], "why": why, "float_latency_us_p50": latency["float"],
        "float_ops": [{"op": o["op"], "index": o["index"], "layer": o.get("layer"), "reason": o["reason"]}
                      for o in _layer_names(int8, left)] if best["plan"].startswith("int8+") else [],
        "float_layers": layers,
        "symmetric_tensors": sym_tensors if "symmetric" in best["plan"] else [],
        "candidates": table})


def _layer_names(content: bytes, ops: list[dict]) -> list[dict]:
    """The ops with the name of the Keras layer that made them (from their output tensor's name)."""
    from .runtime.flatbuffer import parse_model

    g = parse_model(content, "<int8>").subgraphs[0]
    out = []
    for o in ops:
        op = g.operators[o["index"]]
        name = g.tensors[op.outputs[0]].name if op.outputs else ""
        parts = name.split("/")
        out.append({**o, "layer": parts[1] if len(parts) > 1 and parts[0].endswith("model") else parts[0]})
    return out
