"""Frozen configs of the language-model pipeline, and `LMRecipe` that holds them (no TensorFlow).

Every value is checked when the config is built (`InputError` naming the key and the value);
a recipe round-trips through JSON unchanged (`LMRecipe.from_dict(r.to_dict()) == r`).
"""

from __future__ import annotations

import dataclasses

from ..config import RecipeIO, _require


def _check(where: str, ok: bool, value, expected: str) -> None:
    """`config._require` in this module's argument order (the one message shape of every recipe)."""
    _require(ok, where, expected, value)


@dataclasses.dataclass(frozen=True)
class LMTokenizerConfig:
    """WordPiece over the train split; `[EOT]` ends every turn."""

    vocabulary_size: int = 1000
    min_frequency: int = 5
    max_train_texts: int = 15000  # turns the vocabulary is learned on (a sample of the train split)

    def __post_init__(self):
        _check("vocabulary_size", 16 <= self.vocabulary_size <= 65536, self.vocabulary_size, "16..65536")
        _check("min_frequency", self.min_frequency >= 1, self.min_frequency, "an integer >= 1")
        _check("max_train_texts", self.max_train_texts >= 1, self.max_train_texts, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class DecoderConfig:
    """A pre-norm GPT-style decoder: token + learned position embeddings, `layers` blocks, untied head."""

    layers: int = 2
    dim: int = 64
    heads: int = 4
    ff_dim: int = 256
    context: int = 128  # the fixed maximum context (tokens) of training, the cache and the file

    def __post_init__(self):
        _check("layers", 1 <= self.layers <= 48, self.layers, "1..48")
        _check("dim", self.dim >= 4, self.dim, "an integer >= 4")
        _check("heads", self.heads >= 1 and self.dim % self.heads == 0, self.heads, f"a divisor of dim={self.dim}")
        _check("ff_dim", self.ff_dim >= 1, self.ff_dim, "an integer >= 1")
        _check("context", 4 <= self.context <= 4096, self.context, "4..4096")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training of one model (teacher, student on data, or distilled student)."""

    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 2e-3
    max_train_tokens: int = 100_000  # tokens of the train split used (a prefix of the shuffled stream)

    def __post_init__(self):
        _check("epochs", self.epochs >= 1, self.epochs, "an integer >= 1")
        _check("batch_size", self.batch_size >= 1, self.batch_size, "an integer >= 1")
        _check("learning_rate", 0 < self.learning_rate < 1, self.learning_rate, "a number in (0, 1)")
        _check("max_train_tokens", self.max_train_tokens >= 16, self.max_train_tokens, "an integer >= 16")


@dataclasses.dataclass(frozen=True)
class LMDistillConfig:
    """L = alpha * CE(data) + (1 - alpha) * T^2 * KL(teacher_T || student_T), over the teacher's top-k logits."""

    alpha: float = 0.2  # alpha and T chosen on val (docs/language-models.md)
    temperature: float = 1.0
    top_k: int = 32  # teacher logits kept per token, computed once and cached (0: full logits on the fly)

    def __post_init__(self):
        _check("alpha", 0.0 <= self.alpha <= 1.0, self.alpha, "a number in [0, 1]")
        _check("top_k", self.top_k >= 0, self.top_k, "an integer >= 0 (0: the teacher's full logits on the fly)")
        _check("temperature", self.temperature > 0, self.temperature, "a number > 0")


@dataclasses.dataclass(frozen=True)
class LMPruneConfig:
    """Magnitude pruning of the Dense and Embedding kernels (tfmot), fine-tuned with the KD loss."""

    target_sparsity: float = 0.3
    epochs: int = 1
    learning_rate: float = 1e-3
    max_train_tokens: int = 200_000  # tokens of the train stream the pruning fine-tune reads per epoch

    def __post_init__(self):
        _check("target_sparsity", 0.0 <= self.target_sparsity < 1.0, self.target_sparsity, "a number in [0, 1)")
        _check("max_train_tokens", self.max_train_tokens >= 16, self.max_train_tokens, "an integer >= 16")
        _check("epochs", self.epochs >= 1, self.epochs, "an integer >= 1")
        _check("learning_rate", 0 < self.learning_rate < 1, self.learning_rate, "a number in (0, 1)")


QUANTIZATIONS = ("dynamic", "full-int8", "float")


@dataclasses.dataclass(frozen=True)
class LMExportConfig:
    """`quantization`: the shipped file's kind; every kind is written and measured anyway."""

    quantization: str = "dynamic"
    calibration_windows: int = 64

    def __post_init__(self):
        _check("quantization", self.quantization in QUANTIZATIONS, self.quantization, f"one of {', '.join(QUANTIZATIONS)}")
        _check("calibration_windows", self.calibration_windows >= 1, self.calibration_windows, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class LMEvalConfig:
    """How much of the split the pipeline's evaluation reads (generation is the slow part)."""

    max_eval_tokens: int = 20_000
    generation_examples: int = 200
    max_new_tokens: int = 24

    def __post_init__(self):
        _check("max_eval_tokens", self.max_eval_tokens >= 16, self.max_eval_tokens, "an integer >= 16")
        _check("generation_examples", self.generation_examples >= 1, self.generation_examples, "an integer >= 1")
        _check("max_new_tokens", self.max_new_tokens >= 1, self.max_new_tokens, "an integer >= 1")


@dataclasses.dataclass(frozen=True)
class LMRecipe(RecipeIO):
    name: str = "chitchat-lm"
    seed: int = 0
    tokenizer: LMTokenizerConfig = LMTokenizerConfig()
    teacher: DecoderConfig = DecoderConfig(layers=4, dim=128, heads=4, ff_dim=512)
    # budgets chosen on the val split (docs/language-models.md, "Choosing the budget")
    teacher_train: TrainConfig = TrainConfig(epochs=1, batch_size=8, learning_rate=2e-3, max_train_tokens=3_400_000)
    student: DecoderConfig = DecoderConfig()
    student_train: TrainConfig = TrainConfig(epochs=1, batch_size=8, learning_rate=5e-3, max_train_tokens=2_400_000)
    distill: LMDistillConfig = LMDistillConfig()
    prune: LMPruneConfig = LMPruneConfig()
    export: LMExportConfig = LMExportConfig()
    eval: LMEvalConfig = LMEvalConfig()

    def __post_init__(self):
        _check("name", isinstance(self.name, str) and bool(self.name), self.name, "a non-empty string")
        _check("student.context", self.student.context == self.teacher.context, self.student.context,
               f"the teacher's context ({self.teacher.context})")
        _check("distill.top_k", self.distill.top_k <= self.tokenizer.vocabulary_size, self.distill.top_k,
               f"at most tokenizer.vocabulary_size ({self.tokenizer.vocabulary_size})")

