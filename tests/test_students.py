"""Every student family: prune (50%) -> prune-preserving QAT -> full-INT8, integer-only, sparse."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tflite_compress.config import DistillConfig, PruneConfig, StudentConfig
from tflite_compress.errors import InputError

SEQ, VOCAB, CLASSES = 12, 60, 4

TINY = {
    "bag": StudentConfig(family="bag", embedding_dim=16, hidden_units=16, hidden_layers=2),
    "cnn": StudentConfig(family="cnn", embedding_dim=8, filters=8, kernel_sizes=(1, 3), hidden_units=16, conv_layers=2),
    "transformer_post_norm": StudentConfig(family="transformer", embedding_dim=16, num_heads=2, ff_units=32,
                                           transformer_layers=1, hidden_units=16),
    "transformer_pre_norm": StudentConfig(family="transformer", embedding_dim=16, num_heads=2, ff_units=32,
                                          transformer_layers=1, hidden_units=16, norm_first=True),
}


def _tiny_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.integers(2, VOCAB, (n, SEQ)).astype(np.int32)
    x[:, 0] = 2 + y  # a learnable signal
    return x, y


@pytest.mark.parametrize("name", list(TINY))
def test_family_prunes_quantizes_and_converts_integer_only(name):
    from tflite_compress import convert, distill, prune, qat
    from tflite_compress.runtime import TFLiteModel, ops_with_types
    from tflite_compress.students import build_student

    config = TINY[name]
    x, y = _tiny_data()
    targets = distill.pack_targets(y, None, CLASSES)
    model = build_student(config, VOCAB, SEQ, CLASSES)
    assert model.inputs[0].dtype == "int32" and model.output_shape == (None, CLASSES)
    assert model.get_layer("hidden").units == config.hidden_units

    pruned = prune.prune(model, PruneConfig(target_sparsity=0.5, epochs=2), 16)
    distill.compile_for_distillation(pruned, DistillConfig(), learning_rate=2e-3, alpha=1.0)
    distill.fit(pruned, x, targets, 2, 32, callbacks=prune.callbacks(), verbose=0)
    stripped = prune.strip(pruned)
    assert prune.overall_sparsity(stripped) >= 0.49

    q = qat.quantize_student(stripped, preserve_sparsity=True)
    distill.compile_for_distillation(q, DistillConfig(), learning_rate=1e-3, alpha=1.0)
    distill.fit(q, x, targets, 1, 32, verbose=0)
    content = convert.to_int8(q, x[:64])  # raises ConversionError on any float tensor between ops

    tfl = TFLiteModel(content)
    for op in ops_with_types(tfl):
        assert set(op["outputs"]) <= {"int8", "int32"}, op
    if config.family == "transformer":
        ops = {op["op"] for op in ops_with_types(tfl)}
        assert {"BATCH_MATMUL", "SOFTMAX", "GELU", "RSQRT"} <= ops
    # Zeros survive PQAT and conversion, per Keras layer as read back from the file.
    sp = prune.tflite_sparsity_by_layer(content, [layer.name for layer in stripped.layers])
    pruned_layers = {k for k, v in prune.sparsity_by_layer(stripped).items() if v >= 0.49}
    assert pruned_layers and pruned_layers <= set(sp["by_layer"])
    assert min(sp["by_layer"][k] for k in pruned_layers) >= 0.49
    # INT8 logits track the QAT model's (a barely trained model has near-ties: allow a few flips).
    got, want = tfl.predict(x[:128]), q.predict(x[:128], verbose=0)
    assert np.mean(got.argmax(1) == want.argmax(1)) >= 0.8
    assert abs(np.mean(got.argmax(1) == y[:128]) - np.mean(want.argmax(1) == y[:128])) <= 0.05


XLA_FAMILIES = dict(TINY, transformer_integer_kernels=StudentConfig(
    family="transformer", embedding_dim=16, num_heads=2, ff_units=32, transformer_layers=1, hidden_units=16,
    ffn_activation="relu", norm="tanh", static_shapes=True))


@pytest.mark.parametrize("name", list(XLA_FAMILIES))
def test_family_learns_with_the_xla_step(name):
    """The pipeline trains the students it builds with an XLA-compiled step (`xla=True`, whole batches)."""
    from tflite_compress import distill
    from tflite_compress.students import build_student

    x, y = _tiny_data(250)  # not a multiple of the batch: the partial batch is dropped, one shape compiles
    model = build_student(XLA_FAMILIES[name], VOCAB, SEQ, CLASSES, seed=0)
    distill.compile_for_distillation(model, DistillConfig(), learning_rate=5e-3, alpha=1.0, xla=True)
    assert model.jit_compile
    history = distill.fit(model, x, distill.pack_targets(y, None, CLASSES), 30, 32, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    model.jit_compile = False
    assert np.mean(model.predict(x, verbose=0).argmax(1) == y) > 0.8  # chance: 0.25

    few = build_student(XLA_FAMILIES[name], VOCAB, SEQ, CLASSES, seed=0)  # fewer rows than a batch: still trains
    distill.compile_for_distillation(few, DistillConfig(), alpha=1.0, xla=True)
    before = [w.copy() for w in few.get_weights()]
    distill.fit(few, x[:20], distill.pack_targets(y[:20], None, CLASSES), 1, 32, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, few.get_weights()))


@pytest.mark.parametrize("config", [
    StudentConfig(family="cnn", embedding_dim=8, filters=8, kernel_sizes=(1, 3), hidden_units=16, conv_layers=2),
    StudentConfig(family="cnn", embedding_dim=8, filters=8, kernel_sizes=(2, 4), hidden_units=16),
    StudentConfig(family="cnn", embedding_dim=8, filters=8, kernel_sizes=(3,), hidden_units=16, conv_layers=3),
], ids=["k1,3x2", "k2,4", "k3x3"])
def test_cnn_logits_do_not_see_padding_past_the_margin(config):
    """A row cut `length_margin` positions after its last token gives the logits of the full row.
    Why, checked on the last convolution of each kernel width: every position's output of the full
    row is one of the cut row's (so the max pools agree); one position less, the widest kernel's
    all-padding window is missing (the margin is not wider than it needs to be)."""
    from tflite_compress._tf import keras
    from tflite_compress.students import build_student, length_margin

    full = 24
    margin = length_margin(config)
    model = build_student(config, VOCAB, full, CLASSES, seed=3)
    rng = np.random.default_rng(0)
    table = model.get_layer("embedding").get_weights()[0]
    table[0] = rng.normal(0, 3, table.shape[1])  # a loud padding id
    model.get_layer("embedding").set_weights([table])
    last = [[layer for layer in model.layers if layer.name.startswith(f"conv_k{k}")][-1] for k in config.kernel_sizes]
    convs = keras.Model(model.input, [layer.output for layer in last])
    for m in (model, convs):
        m.input_spec = None  # as distill.fit does while it trains on cut rows

    def branches(x):  # per kernel width, the set of the last convolution's per-position outputs
        outs = convs.predict(x, verbose=0)
        return [{tuple(np.round(row, 4)) for row in out[0]} for out in (outs if len(last) > 1 else [outs])]

    for n in (1, 4, 9, full - margin):
        x = np.zeros((1, full), np.int32)
        x[:, :n] = rng.integers(1, VOCAB, (1, n))
        np.testing.assert_allclose(model.predict(x[:, :n + margin], verbose=0), model.predict(x, verbose=0),
                                   rtol=1e-5, atol=1e-5)
        whole = branches(x)
        assert all(w <= c for w, c in zip(whole, branches(x[:, :n + margin])))
        assert not whole[-1] <= branches(x[:, :n + margin - 1])[-1]  # kernel_sizes ascend: the widest last
    for family in ("bag", "transformer"):
        assert length_margin(StudentConfig(family=family)) is None


def test_length_buckets_cut_short_rows_when_it_saves_positions():
    from tflite_compress import distill

    x = np.zeros((400, 32), np.int32)
    lengths = np.r_[np.full(300, 6), np.full(100, 30)]
    for i, n in enumerate(lengths):
        x[i, :n] = 5
    x[0, 3] = 0  # a zero inside a row does not end it
    assert np.array_equal(distill.row_lengths(x), lengths)
    cut, short = distill.length_buckets(x, 64, margin=3)
    assert cut == 9 and np.array_equal(short, lengths <= 6)
    assert distill.length_buckets(x[250:], 64, margin=3, whole_batches=True) is None  # 50 short rows: no whole batch
    assert distill.length_buckets(x[300:], 64, margin=3) is None  # every row long: one shape
    # an epoch's steps, as fit makes them: per bucket, partial batches kept unless whole ones only
    assert distill.batches_per_epoch(x, 64) == 7 and distill.batches_per_epoch(x, 64, whole_batches=True) == 6
    assert distill.batches_per_epoch(x, 64, 3) == 5 + 2 and distill.batches_per_epoch(x, 64, 3, True) == 4 + 1


def test_cut_batches_train_the_student_and_restore_its_input_shape():
    """`distill.fit(length_margin=...)` (the pipeline's built CNN students): short rows train cut, in
    batches of their own, under the XLA step and as Keras runs it (pruning, QAT)."""
    from tflite_compress import distill
    from tflite_compress.students import build_student, length_margin

    config = XLA_FAMILIES["cnn"]
    rng = np.random.default_rng(0)
    n, full = 320, 24
    y = rng.integers(0, CLASSES, n)
    x = np.zeros((n, full), np.int32)
    for i, length in enumerate(np.where(rng.random(n) < 0.7, 4, full)):
        x[i, :length] = rng.integers(2, VOCAB, length)
    x[:, 1] = 2 + y
    assert distill.length_buckets(x, 32, length_margin(config), whole_batches=True) is not None
    for xla in (True, False):
        model = build_student(config, VOCAB, full, CLASSES, seed=0)
        distill.compile_for_distillation(model, DistillConfig(), learning_rate=5e-3, alpha=1.0, xla=xla)
        history = distill.fit(model, x, distill.pack_targets(y, None, CLASSES), 20, 32, verbose=0,
                              length_margin=length_margin(config))
        assert history.history["loss"][-1] < history.history["loss"][0]
        model.jit_compile = False
        assert np.mean(model.predict(x, verbose=0).argmax(1) == y) > 0.8  # chance: 0.25
        assert "_manual_input_spec" not in model.__dict__  # the relaxed input spec is gone again
        assert model.input_spec[0].shape == (None, full) and model.input_shape == (None, full)


@pytest.mark.parametrize("bad, match", [
    ({"family": "rnn"}, "family: expected one of bag, cnn, transformer; got 'rnn'"),
    ({"family": "transformer", "embedding_dim": 30, "num_heads": 4}, "embedding_dim: expected a multiple of num_heads=4"),
    ({"family": "cnn", "kernel_sizes": ()}, "kernel_sizes"),
    ({"hidden_layers": 0}, "hidden_layers: expected a value >= 1; got 0"),
])
def test_bad_student_configs_are_named_when_built(bad, match):
    with pytest.raises(InputError, match=match):
        StudentConfig(**bad)


def test_width_and_depth_options():
    from tflite_compress.students import build_student

    cnn = build_student(StudentConfig(family="cnn", filters=8, kernel_sizes=(2,), conv_layers=3, hidden_layers=2), VOCAB, SEQ, CLASSES)
    assert [layer.name for layer in cnn.layers if layer.name.startswith("conv")] == ["conv_k2", "conv_k2_2", "conv_k2_3"]
    assert {"hidden_1", "hidden"} <= {layer.name for layer in cnn.layers}
    tr = build_student(StudentConfig(family="transformer", embedding_dim=32, num_heads=4, transformer_layers=3), VOCAB, SEQ, CLASSES)
    assert sum(layer.name.endswith("_attention") for layer in tr.layers) == 3
    assert tr.get_layer("block2_ffn_in").units == StudentConfig().ff_units


def test_student_config_round_trips_through_json():
    from tflite_compress.config import Recipe

    r = Recipe().replace(student=TINY["transformer_pre_norm"])
    assert Recipe.from_dict(r.to_dict()) == r
