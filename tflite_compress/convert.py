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
    """tf-keras models convert directly; anything else goes through a SavedModel in a temp folder,
    removed when the converter is (it reads the folder again in `convert()`)."""
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
