"""The kinds of models users bring, Keras 3 and tf-keras, through `compress` with the default recipe's
stages (self-distillation, 50% pruning, QAT) on tiny data and a tiny recipe: each ends in an
integer-only INT8 file validated in the LiteRT interpreter, pruned to its target over the weights
tfmot wraps, by the path the model allows (QAT, or post-training INT8 with the reason given).

In `make test`: two Keras 3 models holding every kind side by side (MLP, CNN, MobileNet-style and
ResNet-style branches on one image; LSTM, GRU, BiLSTM and 1-block transformer branches on one
sentence), one compress run each: a run's cost is Keras's and the converter's fixed work per model
(tracing, conversion), so eight one-kind runs cost about four times as much. The one-kind cases,
Keras 3 and tf-keras taken in turn, are marked slow (`make test-slow`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow)
from tflite_compress.compress import CompressOptions, compress
from tflite_compress.config import Recipe
from tflite_compress.errors import RunError
from tflite_compress.prune import DEPTHWISE_REASON
from tflite_compress.recipes import DEFAULT_RECIPE, load_recipe

from conftest import tiny_clinc
from zoo_models import TEXT_KINDS, VISION_KINDS, digits, keras_module, text_data, text_model, train_and_save
from zoo_models import vision_model, write_text_files

SEQ, VOCAB = 8, 300


def zoo_recipe() -> Recipe:
    """The default recipe's stages and targets with tiny epochs."""
    default = load_recipe(DEFAULT_RECIPE)
    return default.replace(
        name="zoo-test",
        distill=dataclasses.replace(default.distill, batch_size=16),
        prune=dataclasses.replace(default.prune, epochs=3, learning_rate=1e-3),
        qat=dataclasses.replace(default.qat, epochs=8, learning_rate=5e-4),  # ~150 steps: QAT's ranges settle
        convert=dataclasses.replace(default.convert, calibration_samples=32),
    )


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def vision_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("zoo_vision")
    x, y, xe, ye = digits(300, 100)
    names = np.array([str(i) for i in range(10)])
    np.savez(d / "train.npz", x=x, y=y, labels=names)
    np.savez(d / "eval.npz", x=xe, y=ye, labels=names)
    return d, (x, y)


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("zoo_text")
    data = tiny_clinc(per_intent_train=40, per_intent_eval=10, oos=20)
    train_rows = [tuple(r) for r in data["train"]] + [(t, "oos") for t, _ in data["oos_train"]]
    eval_rows = [tuple(r) for r in data["test"]] + [(t, "oos") for t, _ in data["oos_test"]]
    vocab, names, x, y, _, _ = text_data(train_rows, eval_rows, VOCAB, SEQ)
    return write_text_files(d, vocab, names, train_rows, eval_rows), (len(vocab), len(names), x, y)


def run(model_path, train, ev, out, **kw):
    opts = CompressOptions(train=train, eval=ev, model=str(model_path), out_dir=out, cache_dir=out.parent / "cache",
                           recipe=zoo_recipe(), fit_epochs_to_data=False, **kw)
    return compress(opts, log=quiet, verbose=0).report


def check_common(report):
    st = report["stages"]
    assert st["int8"]["float_ops"] == [], st["int8"]["op_counts"]
    assert report["summary"]["integer_only"]
    # Pruning at its target over the weights it wrapped; the rest listed apart with a reason.
    assert st["pruned"]["sparsity"] >= 0.48
    assert all(v >= 0.45 for v in st["pruned"]["sparsity_by_layer"].values()), st["pruned"]["sparsity_by_layer"]
    assert all(info["why"] for info in st["pruned"]["not_pruned"].values())
    # The INT8 file answers like the model it came from.
    assert st["int8"]["agreement_with_float"] >= 0.75, st["int8"]


# Each kind once, Keras 3 and tf-keras taken in turn (every kind in both would double a slow test).
VISION_CASES = [("mlp", "tf-keras"), ("cnn", "keras3"), ("mobilenet", "keras3"), ("resnet", "tf-keras")]
TEXT_CASES = [("lstm", "keras3"), ("gru", "tf-keras"), ("bilstm", "keras3"), ("transformer", "tf-keras")]
assert {k for k, _ in VISION_CASES} == set(VISION_KINDS) and {k for k, _ in TEXT_CASES} == set(TEXT_KINDS)


def test_vision_kinds_side_by_side(vision_files, tmp_path):
    """MLP, CNN, MobileNet-style and ResNet-style branches in one Keras 3 model: QAT, BatchNormalization
    folded, depthwise kernels listed apart, an integer-only file."""
    import keras

    d, (x, y) = vision_files
    keras.utils.set_random_seed(0)
    path = train_and_save(vision_model(keras, "all", width=8), keras, x, y, tmp_path / "all.keras", epochs=20)
    report = run(path, d / "train.npz", d / "eval.npz", tmp_path / "out")
    check_common(report)
    st = report["stages"]
    assert report["compress"]["rebuilt_from_keras3"]
    assert "qat" in st, report["compress"]["skipped"]
    ops = st["int8"]["op_counts"]
    assert {"FULLY_CONNECTED", "CONV_2D", "MAX_POOL_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MEAN",
            "CONCATENATION"} <= set(ops), ops
    assert ops["ADD"] == 2  # the two residual adds
    assert "BATCH_NORMALIZATION" not in ops and "MUL" not in ops  # BatchNormalization folded
    assert {info["why"] for info in st["pruned"]["not_pruned"].values()} == {DEPTHWISE_REASON}
    assert len(st["pruned"]["not_pruned"]) == 2


def test_text_kinds_side_by_side(text_files, tmp_path):
    """LSTM, GRU, Bidirectional(LSTM) (masked) and a 1-block transformer in one Keras 3 model: every
    recurrent kernel pruned, post-training INT8 (the reason given), fused LSTMs, the GRU unrolled."""
    import keras

    files, (vocab_size, num_labels, x, y) = text_files
    keras.utils.set_random_seed(0)
    model = text_model(keras, "all", vocab_size, SEQ, num_labels, units=8, embedding_dim=8)
    path = train_and_save(model, keras, x, y, tmp_path / "all.keras", epochs=15, logits=True)
    report = run(path, files["train"], files["eval"], tmp_path / "out", vocab=files["vocab"], labels=files["labels"])
    check_common(report)
    st, skipped = report["stages"], report["compress"]["skipped"]
    assert report["compress"]["rebuilt_from_keras3"]
    assert "qat" not in st and "LSTM/GRU" in skipped["qat"]
    ops = st["int8"]["op_counts"]
    assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == 3, ops  # the LSTM, and the BiLSTM's two directions
    assert "WHILE" not in ops and ops["FULLY_CONNECTED"] > SEQ  # the GRU unrolled
    assert "BATCH_MATMUL" in ops  # attention
    assert st["pruned"]["not_pruned"] == {}
    by_layer = st["pruned"]["sparsity_by_layer"]
    assert all(by_layer[name] >= 0.45 for name in ("lstm", "gru", "bidirectional", "multi_head_attention")), by_layer


# One kind per model: slow (each run costs what a side-by-side run does).
@pytest.mark.slow
@pytest.mark.parametrize("kind,flavour", VISION_CASES)
def test_vision_zoo(kind, flavour, vision_files, tmp_path):
    d, (x, y) = vision_files
    keras = keras_module(flavour)
    keras.utils.set_random_seed(0)
    # Batches of 16 over 30 epochs: BatchNormalization's moving statistics settle (at 20 epochs of 32 the
    # Keras 3 MobileNet-style model scored 19% on the eval images).
    path = train_and_save(vision_model(keras, kind, width=8), keras, x, y, tmp_path / f"{kind}.keras", epochs=30,
                          batch_size=16, learning_rate=0.005)
    report = run(path, d / "train.npz", d / "eval.npz", tmp_path / "out")
    check_common(report)
    st = report["stages"]
    assert "qat" in st, report["compress"]["skipped"]  # vision blocks take the QAT path
    ops = set(st["int8"]["op_counts"])
    if kind == "mobilenet":
        assert {"DEPTHWISE_CONV_2D", "CONV_2D", "ADD", "MEAN"} <= ops
        assert "BATCH_NORMALIZATION" not in ops and "MUL" not in ops  # BatchNormalization folded
        dw = [info for info in st["pruned"]["not_pruned"].values() if info["why"] == DEPTHWISE_REASON]
        assert len(dw) == 2
    if kind in ("mobilenet", "resnet"):
        assert "ADD" in ops


@pytest.mark.slow
@pytest.mark.parametrize("kind,flavour", TEXT_CASES)
def test_text_zoo(kind, flavour, text_files, tmp_path):
    files, (vocab_size, num_labels, x, y) = text_files
    keras = keras_module(flavour)
    keras.utils.set_random_seed(0)
    model = text_model(keras, kind, vocab_size, SEQ, num_labels)
    path = train_and_save(model, keras, x, y, tmp_path / f"{kind}.keras", epochs=15, logits=True)
    report = run(path, files["train"], files["eval"], tmp_path / "out", vocab=files["vocab"], labels=files["labels"])
    check_common(report)
    st, skipped = report["stages"], report["compress"]["skipped"]
    ops = st["int8"]["op_counts"]
    assert report["compress"]["rebuilt_from_keras3"] == (flavour == "keras3")
    if kind in ("lstm", "bilstm"):
        # Fused LSTM builtins (no TensorList / WHILE), taken post-training with the reason given.
        assert ops.get("UNIDIRECTIONAL_SEQUENCE_LSTM") == (2 if kind == "bilstm" else 1), ops
    if kind == "gru":
        assert "WHILE" not in ops and ops["FULLY_CONNECTED"] > SEQ  # unrolled
    if kind == "transformer":
        assert "qat" in skipped and "qat" not in st
    else:
        assert "qat" not in st and "LSTM/GRU" in skipped["qat"]
        # The recurrent kernels are pruned too (a Bidirectional's through both directions' cells).
        assert st["pruned"]["not_pruned"] == {}
        rnn = {"lstm": "lstm", "gru": "gru", "bilstm": "bidirectional"}[kind]
        assert st["pruned"]["sparsity_by_layer"][rnn] >= 0.45, st["pruned"]["sparsity_by_layer"]


def test_masked_sequences_refused_in_one_line(text_files, tmp_path):
    """A masked LSTM returning sequences has no integer-only form: one line naming the layer, exit 3,
    before any training."""
    import keras

    files, (vocab_size, num_labels, x, y) = text_files
    inp = keras.Input((SEQ,), dtype="int32")
    h = keras.layers.Embedding(vocab_size, 8, mask_zero=True)(inp)
    h = keras.layers.LSTM(8, return_sequences=True, name="seq_lstm")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inp, keras.layers.Dense(num_labels)(h))
    path = tmp_path / "seq.keras"
    model.save(path)
    with pytest.raises(RunError) as err:
        run(path, files["train"], files["eval"], tmp_path / "out", vocab=files["vocab"], labels=files["labels"])
    msg = str(err.value)
    assert err.value.exit_code == 3 and "\n" not in msg
    assert "'seq_lstm'" in msg and "dynamic-range" in msg
    assert not (tmp_path / "out").exists()
