"""Model inputs: labelled arrays from `.npz`, and random valid inputs derived from the input spec."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import InputError
from .interpreter import TFLiteModel


def load_npz(path: str | os.PathLike, need_labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """`x` (model inputs) and `y` (integer class ids) from an `.npz`; pickled objects are refused."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: data file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            if "x" not in keys or (need_labels and "y" not in keys):
                raise InputError(f"{path}: an .npz needs arrays 'x' (inputs) and 'y' (class ids); found {sorted(keys)}")
            x = f["x"]
            y = f["y"] if "y" in keys else None
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if x.ndim < 1 or x.dtype.kind not in "biuf":
        raise InputError(f"{path}: 'x' must be a numeric array with one row per sample; got {x.dtype} {x.shape}")
    if y is not None:
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise InputError(f"{path}: 'y' must be a 1-D array of integer class ids; got {y.dtype} {y.shape}")
        if len(y) != len(x):
            raise InputError(f"{path}: 'x' has {len(x)} rows but 'y' has {len(y)} labels")
    if len(x) == 0:
        raise InputError(f"{path}: no rows")
    return x, y


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
