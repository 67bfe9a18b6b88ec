"""Feature distillation: a learned projection of the student's hidden layer matches teacher features;
the exported model keeps only the logits path."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tflite_compress.config import DistillConfig, Recipe, StudentConfig
from tflite_compress.errors import InputError

SEQ, VOCAB, CLASSES, FEAT = 10, 50, 3, 24


def test_feature_losses_match_their_formulas():
    from tflite_compress.distill import feature_loss

    rng = np.random.default_rng(0)
    t, s = rng.normal(size=(4, 6)).astype(np.float32), rng.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(feature_loss("mse")(t, s).numpy(), ((s - t) ** 2).mean(1), rtol=1e-5)
    cos = (t * s).sum(1) / np.linalg.norm(t, axis=1) / np.linalg.norm(s, axis=1)
    np.testing.assert_allclose(feature_loss("cosine")(t, s).numpy(), 1 - cos, rtol=1e-4, atol=1e-6)
    with pytest.raises(InputError, match="mse, cosine"):
        feature_loss("l1")


@pytest.mark.parametrize("kind", ["mse", "cosine"])
def test_feature_distillation_trains_the_student_and_exports_logits_only(kind):
    from tflite_compress import convert, distill
    from tflite_compress.runtime import TFLiteModel
    from tflite_compress.students import build_student

    rng = np.random.default_rng(0)
    y = rng.integers(0, CLASSES, 192)
    x = rng.integers(2, VOCAB, (192, SEQ)).astype(np.int32)
    x[:, 0] = 2 + y
    # Teacher features: a fixed random map of the label, plus noise.
    feats = {"train": (np.eye(CLASSES)[y] @ rng.normal(size=(CLASSES, FEAT)) + 0.1 * rng.normal(size=(192, FEAT))).astype(np.float32)}
    student = build_student(StudentConfig(family="bag", embedding_dim=16, hidden_units=16), VOCAB, SEQ, CLASSES)
    before = [w.copy() for w in student.get_weights()]
    config = DistillConfig(feature_weight=1.0, feature_loss=kind)
    targets = {"train": distill.pack_targets(y, None, CLASSES)}
    train_model, fit_targets = distill.feature_distillation(student, config, targets, feats, alpha=1.0)
    assert [o.shape[-1] for o in train_model.outputs] == [CLASSES, FEAT]
    first = train_model.evaluate(x, fit_targets["train"], verbose=0)[2]  # the feature loss
    distill.fit(train_model, x, fit_targets["train"], 6, 32, verbose=0)
    assert train_model.evaluate(x, fit_targets["train"], verbose=0)[2] < first
    # The student (shared layers) trained; its own graph has one output and no projection.
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))
    assert len(student.outputs) == 1 and distill.PROJECTION_LAYER not in [layer.name for layer in student.layers]
    content = convert.to_int8(student, x[:32])
    tfl = TFLiteModel(content)
    assert tfl.output_shape == (1, CLASSES)
    shapes = [tuple(t["shape"]) for t in tfl.interpreter.get_tensor_details()]
    assert not any(FEAT in s for s in shapes), "the projection must not be exported"


def test_feature_distillation_config_round_trips():
    r = Recipe().replace(distill=DistillConfig(feature_weight=0.5, feature_loss="cosine"))
    assert Recipe.from_dict(r.to_dict()) == r


def test_unknown_feature_layer_is_named():
    from tflite_compress import distill
    from tflite_compress.students import build_student

    student = build_student(StudentConfig(family="bag", embedding_dim=8, hidden_units=8), VOCAB, SEQ, CLASSES)
    with pytest.raises(InputError, match="feature_layer 'pooled'"):
        distill.with_feature_head(student, FEAT, "pooled")
