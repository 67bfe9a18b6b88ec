"""A user's own Keras causal LM as the teacher: `demo-lm --teacher FILE --teacher-vocab VOCAB.txt`.

The contract of FILE: a Keras 3 `.keras` file, or a tf-keras `.keras` / `.h5` model, with one input
of integer token ids `[batch, T]` and one output of logits `[batch, T, V]` (position t predicts
token t + 1); `V` is the length of VOCAB.txt, the vocabulary it was trained with, in `LMTokenizer`
format (`[PAD]`, `[UNK]`, `[EOT]` at ids 0, 1, 2, one token a line). The pipeline runs it on
windows of the recipe's context (`student.context`), so a fixed input length must equal it.

How it is used, and why:
- Only its outputs cross into the student's world: `distill.teacher_topk` calls it on int32 id
  windows and keeps the top-k log-probabilities as numpy arrays; the tf-keras student trains from
  those (Keras 3 layers are never wired into a tf-keras graph, TRAPS.md). So a given teacher
  needs `distill.top_k >= 1`: the on-the-fly KD (`top_k: 0`) calls the teacher inside the
  tf-keras training step.
- Its test-split row is measured in Keras (`KerasScorer` through `runtime.lm.next_token_metrics`,
  the same windows and arithmetic as the `.tflite` rows), not from a `.tflite` file: `lm/export.py`
  builds the KV-cache signatures by reading the built-in decoder's weights by layer name, which a
  user's architecture does not have. So its row has no file size, decode speed or BLEU/ROUGE.
- Fewer than `MIN_PARAM_RATIO` times the student's parameters is a warning in the log and in
  report.json, not an error: the issue's ">= 4x" is the demo's target, not a rule for users.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..files import sha256_file

SUFFIXES = (".keras", ".h5", ".hdf5")
MIN_PARAM_RATIO = 4.0


@dataclasses.dataclass(frozen=True)
class GivenTeacher:
    path: Path
    model: Any  # a Keras 3 or tf-keras model: ids [batch, T] -> logits [batch, T, V]
    sha256: str
    parameters: int
    keras: str  # "keras 3.x" or "tf-keras"


def check_teacher_options(teacher_path, teacher_vocab, top_k: int) -> None:
    """Both or neither, both files present, a top-k cache to distil from (checked before anything is written)."""
    if (teacher_path is None) != (teacher_vocab is None):
        raise InputError("--teacher FILE needs --teacher-vocab VOCAB.txt (the vocabulary it was trained with)"
                         if teacher_vocab is None else "--teacher-vocab needs --teacher FILE (a Keras causal LM)")
    if teacher_path is None:
        return
    if top_k < 1:
        raise InputError("distill.top_k: expected >= 1 with --teacher (a given teacher is distilled from its cached "
                         "top-k logits; 0, its logits on the fly, runs it inside the tf-keras training step); got 0")
    path = Path(teacher_path)
    if not path.is_file():
        raise InputError(f"{path}: --teacher file not found (expected a Keras causal LM: .keras or .h5)")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{path}: --teacher expects a Keras model file ({', '.join(SUFFIXES)}); got {path.suffix or 'no suffix'!r}")
    if not Path(teacher_vocab).is_file():
        raise InputError(f"{teacher_vocab}: --teacher-vocab file not found (expected vocab.txt, one token a line)")


def _dtype_name(dtype) -> str:
    return str(getattr(dtype, "name", dtype))


def load_teacher(path: str | os.PathLike, vocab_size: int, probe: np.ndarray, unsafe: bool = False) -> GivenTeacher:
    """Load FILE and check it against the contract; `probe` is int32 ids `[n, T]` it must map to `[n, T, V]`."""
    from .. import _tf  # noqa: F401 - TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow
    from ..teacher import load_keras_teacher

    path = Path(path)
    model = load_keras_teacher(path, unsafe)
    context = probe.shape[1]
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if inputs:  # a functional / Sequential model declares them; a subclassed one is checked by the probe alone
        if len(inputs) != 1:
            raise InputError(f"{path}: the teacher takes {len(inputs)} inputs; expected one, token ids [batch, T]")
        shape, dtype = tuple(inputs[0].shape), _dtype_name(inputs[0].dtype)
        if len(shape) != 2:
            raise InputError(f"{path}: the teacher's input has shape {list(shape)}; expected token ids of rank 2 [batch, T]")
        if not np.issubdtype(np.dtype(dtype), np.integer):
            raise InputError(f"{path}: the teacher's input is {dtype}; expected integer token ids [batch, T]")
        if shape[1] is not None and shape[1] != context:
            raise InputError(f"{path}: the teacher takes {shape[1]} tokens; the recipe's context (student.context) "
                             f"is {context}")
    if outputs:
        if len(outputs) != 1:
            raise InputError(f"{path}: the teacher has {len(outputs)} outputs; expected one, logits [batch, T, V]")
        shape = tuple(outputs[0].shape)
        if len(shape) != 3:
            raise InputError(f"{path}: the teacher's output has shape {list(shape)}; expected logits of rank 3 "
                             f"[batch, T, V]")
        if shape[-1] is not None and shape[-1] != vocab_size:
            raise InputError(f"{path}: the teacher outputs {shape[-1]} logits a position; --teacher-vocab has "
                             f"{vocab_size} tokens")
    try:
        out = np.asarray(model(probe.astype(np.int32), training=False))
    except Exception as exc:  # noqa: BLE001 - a model that cannot run on ids is bad input
        msg = str(exc).splitlines()[0] if str(exc) else ""
        raise InputError(f"{path}: the teacher fails on int32 token ids {list(probe.shape)} "
                         f"({type(exc).__name__}: {msg[:160]})") from None
    if out.shape != (*probe.shape, vocab_size):
        raise InputError(f"{path}: on token ids {list(probe.shape)} the teacher returns {list(out.shape)}; expected "
                         f"logits {[*probe.shape, vocab_size]} (V = the {vocab_size} tokens of --teacher-vocab)")
    kind = "tf-keras" if type(model).__module__.startswith("tf_keras") else "keras " + _keras3_version()
    return GivenTeacher(path, model, sha256_file(path), int(model.count_params()), kind)


def _keras3_version() -> str:
    import keras

    return keras.__version__


class KerasScorer:
    """A Keras LM seen as `runtime.lm.next_token_metrics` sees a `.tflite` file (`context`, `score`)."""

    def __init__(self, model, context: int):
        self.model, self.context = model, context

    def score(self, ids: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(np.asarray(ids, np.int32)[None], training=False))[0]
