"""Frozen dataclass configs of every stage, and the `Recipe` that holds them all.

No TensorFlow here. A recipe round-trips through JSON unchanged (`Recipe.from_dict(r.to_dict()) == r`);
the resolved recipe is written beside every output as `recipe.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

from .errors import InputError
from .tokenizer import TokenizerConfig


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """How the teacher is built and trained.

    `kind`: "minilm" (the bundled pretrained encoder + a trained head) or "keras" (a model
    file given as `model_path`, whose outputs are logits over the task's labels).
    """

    kind: str = "minilm"
    model_path: str | None = None
    sequence_length: int = 48
    batch_size: int = 256
    fine_tune: bool = False
    fine_tune_epochs: int = 2
    fine_tune_learning_rate: float = 3e-5
    head_epochs: int = 60
    head_learning_rate: float = 3e-3
    head_batch_size: int = 256
    seed: int = 0


FFN_ACTIVATIONS = ("gelu", "relu", "relu2")
NORMS = ("layer", "tanh")
TARGETS = ("npu", "cpu")


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """A small text classifier over the student vocabulary.

    `family`: "cnn" (embedding -> parallel Conv1D of several widths -> global max pool -> MLP),
    "bag" (embedding -> global average pool -> MLP) or "transformer" (embedding + learned
    positions -> encoder blocks -> mean pool -> MLP).
    """

    family: str = "cnn"
    embedding_dim: int = 64
    filters: int = 128
    kernel_sizes: tuple[int, ...] = (1, 2, 3)
    hidden_units: int = 192
    dropout: float = 0.2
    hidden_layers: int = 1  # MLP depth after pooling (every family); the last one is "hidden"
    conv_layers: int = 1  # cnn: stacked Conv1D per kernel width
    transformer_layers: int = 2  # transformer: encoder blocks
    num_heads: int = 2  # transformer: attention heads (embedding_dim must divide by it)
    ff_units: int = 128  # transformer: feed-forward width
    norm_first: bool = False  # transformer: pre-norm blocks (True) or post-norm, BERT-style (False)
    # transformer, built for integer kernels (see students.py): "gelu" | "relu" | "relu2" (ReLU squared)
    ffn_activation: str = "gelu"
    norm: str = "layer"  # transformer: "layer" (LayerNormalization) | "tanh" (DynamicTanh: g * tanh(a * x) + b)
    static_shapes: bool = False  # transformer: per-token projections as EinsumDense (no shape arithmetic in the file)

    def __post_init__(self):
        if self.ffn_activation not in FFN_ACTIVATIONS:
            raise InputError(f"student.ffn_activation: expected one of {', '.join(FFN_ACTIVATIONS)}, got {self.ffn_activation!r}")
        if self.norm not in NORMS:
            raise InputError(f"student.norm: expected one of {', '.join(NORMS)}, got {self.norm!r}")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """L = alpha * CE(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)
    [+ feature_weight * D(proj(student "hidden"), teacher features)].

    Feature distillation is on when `feature_weight > 0` and the teacher has features; `feature_loss`
    is "mse" (on standardized teacher features) or "cosine". It runs in the float stage only; the
    projection is dropped afterwards, so the exported model holds only the logits path.
    """

    alpha: float = 0.3
    temperature: float = 4.0
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 2e-3
    feature_weight: float = 0.0
    feature_loss: str = "mse"
    feature_layer: str = "hidden"
    # Augmented copies of the train texts, labelled by the teacher (word dropout + one adjacent
    # swap); 0 turns it off. Measured on CLINC150: +0.6 points for the float student.
    augment_copies: int = 1
    augment_word_dropout: float = 0.15
    augment_swap_probability: float = 0.5


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """Magnitude pruning (tfmot).

    `schedule`: "polynomial" (0 -> target by `end_fraction` of the steps, cubic) or "constant"
    (the target from the first step). `layer_targets`: per-layer targets as "name=sparsity"
    (e.g. "embedding=0.7"); `exclude_layers`: layer names left dense. `m_by_n`: (2, 4) for
    structured 2:4 sparsity on 2-D kernels (Dense, Embedding); other kernels (Conv1D) get
    unstructured pruning at their target.
    """

    target_sparsity: float = 0.5
    epochs: int = 4
    learning_rate: float = 5e-4
    end_fraction: float = 0.75  # the target is reached after this share of the pruning steps
    schedule: str = "polynomial"
    layer_targets: tuple[str, ...] = ()
    exclude_layers: tuple[str, ...] = ()
    m_by_n: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class QATConfig:
    epochs: int = 3
    learning_rate: float = 2e-4
    preserve_sparsity: bool = True


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
    """How the INT8 file is made (see convert.py).

    `target`: "npu" (full integer: int8 activations and weights everywhere, for integer-only
    accelerators; `require_integer_only` checks it) or "cpu" (XNNPACK on a phone's CPU: candidate
    plans are built and measured in the interpreter, and the fastest whose top-1 agreement with
    the float file on the calibration rows is at least `cpu_min_agreement` is kept).
    """

    calibration_samples: int = 500
    require_integer_only: bool = True
    target: str = "npu"
    cpu_min_agreement: float = 0.98

    def __post_init__(self):
        if self.target not in TARGETS:
            raise InputError(f"convert.target: expected one of {', '.join(TARGETS)}, got {self.target!r}")
        if not 0.0 <= self.cpu_min_agreement <= 1.0:
            raise InputError(f"convert.cpu_min_agreement: expected a number from 0 to 1, got {self.cpu_min_agreement!r}")
        if self.calibration_samples < 1:
            raise InputError(f"convert.calibration_samples: expected at least 1, got {self.calibration_samples!r}")


@dataclasses.dataclass(frozen=True)
class Stages:
    """Which stages run. Without `qat` the INT8 file comes from post-training quantization."""

    distill: bool = True
    prune: bool = True
    qat: bool = True


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str = "int8-pruned-50"
    seed: int = 0
    tokenizer: TokenizerConfig = TokenizerConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()
    prune: PruneConfig = PruneConfig()
    qat: QATConfig = QATConfig()
    convert: ConvertConfig = ConvertConfig()
    stages: Stages = Stages()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "recipe") -> "Recipe":
        return _build(cls, data, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Recipe":
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: recipe file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: recipe is not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))

    def replace(self, **changes) -> "Recipe":
        return dataclasses.replace(self, **changes)


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected an object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        sub = f"{where}.{key}"
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, sub)
        else:
            kwargs[key] = _coerce(value, hint, sub)
    return cls(**kwargs)


def _coerce(value, hint, where: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], where) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        if not isinstance(value, bool):
            raise InputError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return value
    return value
