"""Model inputs: labelled arrays from `.npz`, and random valid inputs derived from the input spec."""

from __future__ import annotations

import os

import numpy as np

from .interpreter import TFLiteModel


def load_npz(path: str | os.PathLike, need_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """`x` (model inputs) and `y` (integer class ids) from an `.npz`; pickled objects are refused.

    The same reader and checks as training data (`data.load_array_file`, numpy only), with one
    row per sample of any shape.
    """
    from ..data import load_array_file

    arrays = load_array_file(path, need_labels=need_labels, allow_pickle=False, min_x_dims=1)
    return arrays.x, arrays.y


def token_id_limit(model: TFLiteModel) -> int:
    """Rows of the embedding table the int input indexes (GATHER / EMBEDDING_LOOKUP), else 1 (id 0 only)."""
    flat = model.flat
    g = flat.subgraphs[0]
    inp = int(model.input["index"])
    for op in g.operators:
        name = flat.op_name(op)
        if name == "GATHER" and len(op.inputs) >= 2 and op.inputs[1] == inp and op.inputs[0] >= 0:
            shape = g.tensors[op.inputs[0]].shape
            return max(int(shape[0]), 1) if shape else 1
        if name == "EMBEDDING_LOOKUP" and len(op.inputs) >= 2 and op.inputs[0] == inp:
            shape = g.tensors[op.inputs[1]].shape
            return max(int(shape[0]), 1) if shape else 1
    return 1


def float_input_range(model: TFLiteModel) -> tuple[float, float] | None:
    """The real-valued range a quantized integer input can represent, or None for a float input."""
    dtype = np.dtype(model.input["dtype"])
    scale, zero = model.input["quantization"]
    if dtype.kind in "iu" and scale:
        info = np.iinfo(dtype)
        return float((info.min - zero) * scale), float((info.max - zero) * scale)
    return None


def random_inputs(model: TFLiteModel, n: int, seed: int = 0, vocab_size: int | None = None,
                  float_range: tuple[float, float] | None = None) -> np.ndarray:
    """`n` random valid rows for the model's input.

    Integer (token-id) inputs get ids in [0, vocab_size) (default: the embedding's rows). Quantized
    inputs get real values across their representable range, float inputs standard normal values
    (or uniform over `float_range`); `TFLiteModel.quantize_input` turns them into the input dtype.
    """
    rng = np.random.default_rng(seed)
    shape = (n,) + model.input_shape[1:]
    dtype = np.dtype(model.input["dtype"])
    rng_range = float_range or float_input_range(model)
    if dtype.kind in "iu" and float_input_range(model) is None:
        high = vocab_size or token_id_limit(model)
        return rng.integers(0, high, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if rng_range is not None:
        return rng.uniform(rng_range[0], rng_range[1], size=shape).astype(np.float32)
    return rng.standard_normal(size=shape).astype(np.float32)
