"""Frozen dataclass configs of every stage, and the `Recipe` that holds them all.

No TensorFlow here. Every config checks its values when it is built (`__post_init__`), so a bad
recipe fails when it loads, before any work starts, with one line naming the key and the value
received (`recipe.prune.schedule: expected one of polynomial, constant; got 'nope'`). A recipe
round-trips through JSON unchanged (`Recipe.from_dict(r.to_dict()) == r`); the resolved recipe is
written beside every output as `recipe.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path

from .errors import InputError
from .tokenizer import TokenizerConfig

TEACHER_KINDS = ("minilm", "preset", "keras", "tflite", "logits")
STUDENT_FAMILIES = ("bag", "cnn", "transformer")
PRUNE_SCHEDULES = ("polynomial", "constant")
FEATURE_LOSSES = ("mse", "cosine")
AUGMENT_STYLES = ("dropout", "tang")
LOGIT_LOSSES = ("kl", "mse")
OOS_SCORES = ("max_softmax", "max_logit")  # = runtime.oos_rule.SCORES (the runtime imports nothing from here)


def _require(ok: bool, key: str, expected: str, value) -> None:
    """Raise the one-line InputError of a bad config value: `key: expected ...; got value`."""
    if not ok:
        raise InputError(f"{key}: expected {expected}; got {value!r}")


def _one_of(key: str, value, choices) -> None:
    _require(value in choices, key, "one of " + ", ".join(choices), value)


def _at_least(config, minimum, *keys: str) -> None:
    for key in keys:
        value = getattr(config, key)
        _require(value >= minimum, key, f"a value >= {minimum}", value)


def _positive(config, *keys: str) -> None:
    for key in keys:
        value = getattr(config, key)
        _require(value > 0, key, "a value > 0", value)


def _fraction(config, key: str, closed: bool = False) -> None:
    value = getattr(config, key)
    ok = 0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0
    _require(ok, key, f"a number in [0, 1{']' if closed else ')'}", value)


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
    # Fine-tuning (`teacher.MiniLMTeacher.fine_tune`): epochs and the encoder's and the fresh head's
    # peak learning rates. One setting, measured on CLINC150 val and not swept: the epochs were read
    # off it (benchmarks/teacher_finetune.py, docs/out-of-scope.md "A fine-tuned teacher").
    fine_tune_epochs: int = 3
    fine_tune_learning_rate: float = 5e-5
    fine_tune_head_learning_rate: float = 2e-3
    # The head on the encoder's features ("minilm"/"preset"): `head_hidden` 0 is softmax regression;
    # > 0 an MLP (dropout, GELU layer of that width, dropout). `head_ensemble` heads with seeds
    # seed, seed+1, ... are trained and their logits averaged (seconds each, on cached features).
    head_epochs: int = 60
    head_learning_rate: float = 3e-3
    head_batch_size: int = 256
    head_hidden: int = 0
    head_dropout: float = 0.3
    head_ensemble: int = 1
    seed: int = 0

    def __post_init__(self):
        _one_of("kind", self.kind, TEACHER_KINDS)
        _at_least(self, 1, "sequence_length", "batch_size", "fine_tune_epochs", "head_epochs", "head_batch_size",
                  "head_ensemble")
        _at_least(self, 0, "head_hidden")
        _positive(self, "fine_tune_learning_rate", "fine_tune_head_learning_rate", "head_learning_rate")
        _fraction(self, "head_dropout")


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
        _one_of("family", self.family, STUDENT_FAMILIES)
        _one_of("ffn_activation", self.ffn_activation, FFN_ACTIVATIONS)
        _one_of("norm", self.norm, NORMS)
        _at_least(self, 1, "embedding_dim", "filters", "hidden_units", "hidden_layers", "conv_layers",
                  "transformer_layers", "num_heads", "ff_units")
        _fraction(self, "dropout")
        _require(len(self.kernel_sizes) > 0 and all(k >= 1 for k in self.kernel_sizes), "kernel_sizes",
                 "a non-empty list of integers >= 1", list(self.kernel_sizes))
        _require(self.embedding_dim % self.num_heads == 0, "embedding_dim",
                 f"a multiple of num_heads={self.num_heads}", self.embedding_dim)


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
    # The soft-target term: "kl" (Hinton et al.: T^2 * KL at temperature T) or "mse" (Tang et al.
    # 2019: mean squared error between student and teacher logits; T unused).
    logit_loss: str = "kl"
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
    # "dropout": word dropout + one adjacent swap; "tang": Tang et al. 2019 (drop p=0.1, same-kind
    # word replacement p=0.1, n-gram sampling p=0.25; distill.tang_augment_texts).
    augment_style: str = "dropout"
    # Short rows in batches of their own, cut after their last token (the "cnn" students built here,
    # whose logits do not see padding past `students.length_margin`; ignored otherwise): the same
    # function on fewer positions, in distillation, pruning and QAT. Off by default: over five
    # student seeds on CLINC150 the float student was 0.20 points lower on val (docs/out-of-scope.md,
    # "Cut batches"); its distillation and pruning epochs took 0.8x as long side by side.
    cut_batches: bool = False

    def __post_init__(self):
        _fraction(self, "alpha", closed=True)
        _positive(self, "temperature", "learning_rate")
        # 0 epochs keeps a given float model as it is (compress's self-teacher path).
        _at_least(self, 0, "epochs", "augment_copies", "feature_weight")
        _at_least(self, 1, "batch_size")
        _one_of("feature_loss", self.feature_loss, FEATURE_LOSSES)
        _one_of("logit_loss", self.logit_loss, LOGIT_LOSSES)
        _one_of("augment_style", self.augment_style, AUGMENT_STYLES)
        _fraction(self, "augment_word_dropout")
        _fraction(self, "augment_swap_probability", closed=True)


@dataclasses.dataclass(frozen=True)
class OOSConfig:
    """Out-of-scope handling, when the data names an out-of-scope label.

    The rule shipped in model_info.json (`oos_rule`): a threshold on `score` chosen on the
    validation split, maximising accuracy with out-of-scope as its own class, or the lowest one
    reaching `target_recall` on val. Extra out-of-scope training examples, labelled with the oos
    label for teacher head and student: `chitchat_negatives` open-domain utterances (PyPI
    `chitchat-dataset`) and `mix_negatives` synthetic outliers (halves of two train texts of
    different labels joined). `score`: what the threshold applies to (`OOS_SCORES`).
    """

    calibrate: bool = True
    target_recall: float | None = None
    chitchat_negatives: int = 0
    mix_negatives: int = 0
    # The rule's score: "max_logit" (the largest dequantized logit) was above "max_softmax" on the
    # val objective in each of six CLINC150 INT8 files (+0.17 points on average; docs/out-of-scope.md).
    score: str = "max_logit"

    def __post_init__(self):
        _one_of("score", self.score, OOS_SCORES)
        if self.target_recall is not None:
            _require(0.0 < self.target_recall <= 1.0, "target_recall", "a number in (0, 1]", self.target_recall)
        _at_least(self, 0, "chitchat_negatives", "mix_negatives")


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

    def __post_init__(self):
        _fraction(self, "target_sparsity")
        _at_least(self, 1, "epochs")
        _positive(self, "learning_rate")
        _require(0.0 < self.end_fraction <= 1.0, "end_fraction", "a number in (0, 1]", self.end_fraction)
        _one_of("schedule", self.schedule, PRUNE_SCHEDULES)
        _require(self.m_by_n == () or (len(self.m_by_n) == 2 and 0 < self.m_by_n[0] < self.m_by_n[1]), "m_by_n",
                 "[] or two integers [m, n] with 0 < m < n, e.g. [2, 4]", list(self.m_by_n))
        for item in self.layer_targets:
            name, sep, value = str(item).partition("=")
            try:
                target = float(value)
            except ValueError:
                target = -1.0
            _require(bool(sep and name.strip()) and 0.0 <= target < 1.0, "layer_targets",
                     '"layer=sparsity" items with 0 <= sparsity < 1', item)


@dataclasses.dataclass(frozen=True)
class QATConfig:
    epochs: int = 3
    learning_rate: float = 2e-4
    preserve_sparsity: bool = True

    def __post_init__(self):
        _at_least(self, 1, "epochs")
        _positive(self, "learning_rate")


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
        _one_of("target", self.target, TARGETS)
        _fraction(self, "cpu_min_agreement", closed=True)
        _at_least(self, 1, "calibration_samples")


@dataclasses.dataclass(frozen=True)
class Stages:
    """Which stages run. Without `qat` the INT8 file comes from post-training quantization."""

    distill: bool = True
    prune: bool = True
    qat: bool = True


class RecipeIO:
    """JSON round-trip of a frozen recipe dataclass (the classifier's `Recipe`, the LM's `LMRecipe`):
    keys checked by path, values checked by each config's `__post_init__`."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "recipe"):
        return _build(cls, data, source)

    @classmethod
    def load(cls, path: str | os.PathLike):
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: recipe file not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: recipe is not valid JSON ({exc})") from None
        return cls.from_dict(data, f"{path}: recipe")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class Recipe(RecipeIO):
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
    oos: OOSConfig = OOSConfig()

    def __post_init__(self):
        _require(bool(self.name), "name", "a non-empty string", self.name)


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
    try:
        return cls(**kwargs)
    except InputError as exc:  # a value out of range: name it by its path in the recipe
        raise InputError(f"{where}.{exc}") from None


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
