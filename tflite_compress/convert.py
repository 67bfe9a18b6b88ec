"""Keras -> `.tflite`: full-integer INT8 (int8 weights, activations and output; int32 ids in).

The representative dataset comes from `calibration_data/` (float32 or int32 samples, batch 1).
After conversion the file is loaded in the interpreter and every op output is checked: a
float tensor left between ops is an error, not a warning.
"""

from __future__ import annotations

import tempfile

import numpy as np

from .config import ConvertConfig
from ._tf import tf
from .errors import RunError


class ConversionError(RunError):
    """The converter failed, or left float compute in a model that must be integer-only."""


def _converter(model, scratch: str):
    """tf-keras models convert directly; anything else goes through a SavedModel written in `scratch`."""
    try:
        return tf.lite.TFLiteConverter.from_keras_model(model)
    except Exception:  # noqa: BLE001
        model.export(scratch) if hasattr(model, "export") else tf.saved_model.save(model, scratch)
        return tf.lite.TFLiteConverter.from_saved_model(scratch)


def to_int8(model, calibration: np.ndarray, config: ConvertConfig = ConvertConfig()) -> bytes:
    """Full-integer INT8 flatbuffer; integer (token-id) inputs stay int32."""
    with tempfile.TemporaryDirectory(prefix="tflite_compress_sm_") as scratch:
        return _to_int8(_converter(model, scratch), calibration, config)


def _to_int8(conv, calibration: np.ndarray, config: ConvertConfig) -> bytes:
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


def to_float(model) -> bytes:
    """Plain float32 flatbuffer (a baseline for comparisons)."""
    with tempfile.TemporaryDirectory(prefix="tflite_compress_sm_") as scratch:
        return _converter(model, scratch).convert()


def check_integer_only(content: bytes) -> None:
    from .runtime import TFLiteModel, float_tensors, ops_with_types

    islands = float_tensors(ops_with_types(TFLiteModel(content)))
    if islands:
        names = ", ".join(sorted({op["op"] for op in islands}))
        kinds = "/".join(sorted({t for op in islands for t in op["outputs"] if t not in ("int8", "int32")}))
        raise ConversionError(f"INT8 model is not integer-only: {len(islands)} op(s) with {kinds} outputs ({names})")
