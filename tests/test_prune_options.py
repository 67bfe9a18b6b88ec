"""Pruning options: constant schedule, per-layer targets and exclusions, 2:4, sparsity read from the .tflite."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tflite_compress.config import DistillConfig, PruneConfig, Recipe, StudentConfig
from tflite_compress.errors import InputError

SEQ, VOCAB, CLASSES = 12, 64, 4
STUDENT = StudentConfig(family="bag", embedding_dim=16, hidden_units=32)


def _run(config: PruneConfig, epochs: int = 2):
    from tflite_compress import distill, prune
    from tflite_compress.students import build_student

    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, 256)
    x = rng.integers(2, VOCAB, (256, SEQ)).astype(np.int32)
    x[:, 0] = 2 + y
    model = build_student(STUDENT, VOCAB, SEQ, CLASSES)
    pruned = prune.prune(model, config, epochs * 8)
    distill.compile_for_distillation(pruned, DistillConfig(), alpha=1.0)
    distill.fit(pruned, x, distill.pack_targets(y, None, CLASSES), epochs, 32, callbacks=prune.callbacks(), verbose=0)
    return prune.strip(pruned), x


def test_constant_schedule_with_per_layer_targets_and_exclusions():
    from tflite_compress import prune

    stripped, _ = _run(PruneConfig(target_sparsity=0.5, schedule="constant", layer_targets=("hidden=0.8",),
                                   exclude_layers=("logits",)))
    by_layer = prune.sparsity_by_layer(stripped)
    assert by_layer["embedding"] >= 0.49
    assert by_layer["hidden"] >= 0.79
    assert by_layer["logits"] < 0.05


def test_two_to_four_structured_sparsity_survives_into_the_tflite_file():
    from tflite_compress import convert, prune, qat

    stripped, x = _run(PruneConfig(target_sparsity=0.5, m_by_n=(2, 4)))
    for name in ("hidden", "logits"):
        assert prune.is_m_by_n(stripped.get_layer(name).kernel.numpy(), 2, 4), name
    q = qat.quantize_student(stripped, preserve_sparsity=True)
    content = convert.to_int8(q, x[:32])
    sp = prune.tflite_sparsity_by_layer(content, [layer.name for layer in stripped.layers])
    assert {"embedding", "hidden", "logits"} <= set(sp["by_layer"])
    assert min(sp["by_layer"][k] for k in ("embedding", "hidden", "logits")) >= 0.49
    assert sp["overall"] >= 0.49


def test_is_m_by_n():
    from tflite_compress.prune import is_m_by_n

    w = np.arange(1, 33, dtype=np.float32).reshape(8, 4)
    assert not is_m_by_n(w)
    w[0::2] = 0  # two zeros in every 4 consecutive inputs of each output
    assert is_m_by_n(w)


@pytest.mark.parametrize("changes, match", [
    ({"schedule": "cubic"}, "schedule: expected one of polynomial, constant; got 'cubic'"),
    ({"layer_targets": ("hidden",)}, "layer=sparsity"),
    ({"layer_targets": ("hidden=1.5",)}, "layer=sparsity"),
    ({"m_by_n": (2,)}, "two integers"),
    ({"m_by_n": (4, 2)}, "0 < m < n"),
    ({"target_sparsity": 1.0}, r"target_sparsity: expected a number in \[0, 1\)"),
])
def test_bad_prune_options_are_named_when_built(changes, match):
    with pytest.raises(InputError, match=match):
        PruneConfig(**changes)


def test_unknown_excluded_layer_is_named():
    config = PruneConfig(exclude_layers=("nope",))
    match = "no layer named nope"
    from tflite_compress import prune
    from tflite_compress.students import build_student

    with pytest.raises(InputError, match=match):
        prune.prune(build_student(STUDENT, VOCAB, SEQ, CLASSES), config, 10)


def test_prune_options_round_trip_through_json():
    r = Recipe().replace(prune=PruneConfig(schedule="constant", layer_targets=("hidden=0.8",), exclude_layers=("logits",),
                                           m_by_n=(2, 4)))
    assert Recipe.from_dict(r.to_dict()) == r
