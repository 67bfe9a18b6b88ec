"""Per-layer quantization error, named by Keras layer."""

from __future__ import annotations

import numpy as np

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tflite_compress.config import StudentConfig

SEQ, VOCAB, CLASSES = 10, 50, 3


def _data():
    rng = np.random.default_rng(0)
    return rng.integers(1, VOCAB, (48, SEQ)).astype(np.int32)


def test_layer_errors_of_a_qat_transformer_are_named_by_keras_layer():
    from tflite_compress import convert, debug, qat
    from tflite_compress.students import build_student

    x = _data()
    model = build_student(StudentConfig(family="transformer", embedding_dim=16, num_heads=2, ff_units=32,
                                        transformer_layers=1, hidden_units=16), VOCAB, SEQ, CLASSES)
    q = qat.quantize_student(model, preserve_sparsity=False)
    content = convert.to_int8(q, x)
    rows = debug.layer_errors(q, content, x[:16])
    names = [r["layer"] for r in rows]
    assert {"embedding", "block0_attention", "block0_attention_norm", "block0_ffn_gelu", "mean_pool", "logits"} <= set(names)
    for r in rows:
        assert r["dtype"] in ("int8", "int32")
        assert np.isfinite(r["rmse"]) and r["cosine"] > 0.5, r
    assert "block0_attention_norm" in debug.format_errors(rows)


def test_tflite_quantization_debugger_rows_are_mapped_to_layers():
    from tflite_compress import debug
    from tflite_compress.students import build_student

    x = _data()
    model = build_student(StudentConfig(family="cnn", embedding_dim=8, filters=8, kernel_sizes=(1, 2), hidden_units=16),
                          VOCAB, SEQ, CLASSES)
    rows = debug.quantization_debugger(model, x[:32], x[:8])
    layers = {r["layer"] for r in rows}
    assert {"conv_k1", "hidden", "logits"} <= layers
    assert all("mean_squared_error" in r for r in rows)
