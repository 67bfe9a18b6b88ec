"""Each of our QuantizeConfigs: wrap, train a step, save, load, convert to INT8, run in LiteRT.

One tiny model per group of layers; every case checks that the layer under test is wrapped
with the expected config, that the saved QAT model loads again under `quantize_scope`, that
the INT8 file has only int8/int32 tensors between ops, and that its outputs track the QAT model's.
"""

from __future__ import annotations

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

SEQ, VOCAB, DIM, CLASSES = 8, 40, 16, 3


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.integers(1, VOCAB, (n, SEQ)).astype(np.int32)
    x[:, 0] = 1 + y
    return x, y


def _pooling(keras, students):
    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    c = keras.layers.Conv1D(DIM, 2, padding="same", activation="relu", name="conv")(e)
    a = keras.layers.GlobalAveragePooling1D(name="avg_pool")(c)
    m = keras.layers.GlobalMaxPooling1D(name="max_pool")(c)
    h = keras.layers.Concatenate(name="concat")([a, m])
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="logits")(h))


def _norm_activations(keras, students):
    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    n = keras.layers.LayerNormalization(name="norm")(e)
    h = keras.layers.Activation("gelu", name="gelu")(keras.layers.Dense(2 * DIM, name="ffn_in")(n))
    h = keras.layers.GlobalAveragePooling1D(name="pool")(h)
    logits = keras.layers.Dense(CLASSES, name="logits")(h)
    return keras.Model(ids, keras.layers.Activation("softmax", name="softmax")(logits))


def _mha(keras, students):
    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    a = students.QuantizableMultiHeadAttention(num_heads=2, key_dim=DIM // 2, name="mha")(e)
    h = keras.layers.GlobalAveragePooling1D(name="pool")(keras.layers.Add(name="residual")([e, a]))
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="logits")(h))


def _elementwise(keras, students):
    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    d = keras.layers.Dense(DIM, name="proj")(e)
    s = keras.layers.Add(name="add")([e, d])
    g = keras.layers.Dense(DIM, activation="sigmoid", name="gate")(e)
    m = keras.layers.Multiply(name="multiply")([s, g])
    t = m + d  # a TFOpLambda (tf.__operators__.add): replaced by ElementwiseOp before wrapping
    h = keras.layers.GlobalAveragePooling1D(name="pool")(t)
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="logits")(h))


def _attention_pieces(keras, students):
    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM, name="embedding")(ids)
    e = students.PositionEmbedding(SEQ, name="positions")(e)
    q, k, v = (keras.layers.Dense(DIM, name=n)(e) for n in ("query", "key", "value"))
    a = students.DotProductAttention(2, name="attention")([q, k, v])
    h = keras.layers.GlobalAveragePooling1D(name="pool")(a)
    return keras.Model(ids, keras.layers.Dense(CLASSES, name="logits")(h))


CASES = {
    "pooling": (_pooling, {"avg_pool": "PoolingQuantizeConfig", "max_pool": "PoolingQuantizeConfig",
                           "conv": "Conv1DQuantizeConfig", "embedding": "EmbeddingQuantizeConfig"}),
    "layernorm_gelu_softmax": (_norm_activations, {"norm": "LayerNormQuantizeConfig", "gelu": "ActivationQuantizeConfig",
                                                   "softmax": "ActivationQuantizeConfig"}),
    "multi_head_attention": (_mha, {"mha": "MultiHeadAttentionQuantizeConfig", "residual": "ElementwiseQuantizeConfig"}),
    "add_multiply_oplambda": (_elementwise, {"add": "ElementwiseQuantizeConfig", "multiply": "ElementwiseQuantizeConfig",
                                             "tf.__operators__.add": "ElementwiseQuantizeConfig"}),
    "position_and_dot_product_attention": (_attention_pieces, {"positions": "PositionEmbeddingQuantizeConfig",
                                                               "attention": "AttentionQuantizeConfig"}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_quantize_config_round_trip(case, tmp_path):
    from tflite_compress import convert, distill, qat, students
    from tflite_compress._tf import keras
    from tflite_compress.config import DistillConfig
    from tflite_compress.runtime import TFLiteModel, ops_with_types

    build, expected = CASES[case]
    keras.utils.set_random_seed(0)
    model = build(keras, students)
    x, y = _data()
    q = qat.quantize_student(model, preserve_sparsity=False)
    configs = {lay.layer.name: type(lay.quantize_config).__name__ for lay in q.layers if hasattr(lay, "quantize_config")}
    for name, config in expected.items():
        assert configs.get(name) == config, (name, configs)

    # Train a step (the moving-average ranges settle on real activations).
    distill.compile_for_distillation(q, DistillConfig(), learning_rate=1e-3, alpha=1.0)
    distill.fit(q, x, distill.pack_targets(y, None, CLASSES), 1, 32, verbose=0)

    # Save and load again under quantize_scope.
    # h5 for all but MHA, whose nested projections h5 restores in another order: SavedModel.
    path = tmp_path / (f"{case}_savedmodel" if case == "multi_head_attention" else f"{case}.h5")
    q.save(path)
    with qat.quantize_scope():
        loaded = keras.models.load_model(path, compile=False)
    want = q.predict(x, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), want, atol=1e-5)

    # Full-integer INT8 (to_int8 raises on any float tensor between ops), run in LiteRT.
    content = convert.to_int8(loaded, x[:48])
    tfl = TFLiteModel(content)
    for op in ops_with_types(tfl):
        assert set(op["outputs"]) <= {"int8", "int32"}, op
    got = tfl.predict(x)
    # Within a few output quantization steps, or 10% of the output spread (attention and
    # LayerNorm internals are calibrated by the converter, not simulated in QAT).
    step = float(tfl.output["quantization"][0])
    tolerance = max(3 * step, 0.1 * float(np.ptp(want)))
    assert np.max(np.abs(got - want)) <= tolerance, (np.max(np.abs(got - want)), tolerance)
    # Same top class wherever the QAT model is further from a tie than the error allowed.
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2 * tolerance
    assert np.all(got[clear].argmax(1) == want[clear].argmax(1))


def test_unsupported_op_layer_is_named():
    from tflite_compress import qat
    from tflite_compress._tf import keras, tf
    from tflite_compress.errors import InputError

    ids = keras.Input((SEQ,), dtype="int32")
    e = keras.layers.Embedding(VOCAB, DIM)(ids)
    m = keras.Model(ids, keras.layers.Dense(CLASSES)(tf.math.cumsum(e, axis=1)[:, -1]))
    with pytest.raises(InputError, match="cumsum|strided_slice|cannot be quantized"):
        qat.quantize_student(m, preserve_sparsity=False)
