"""`demo-lm --teacher FILE --teacher-vocab VOCAB.txt`: a user's Keras 3 causal LM (a tiny bigram-like
Embedding + Dense over ids, trained here in a second) as the teacher, end to end through the CLI on a
tiny Chit-Chat slice; then each bad --teacher input: exit 2, one line naming the file or option, no
run folder."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress.cli import main
from tflite_compress.lm.config import (DecoderConfig, LMDistillConfig, LMEvalConfig, LMExportConfig, LMPruneConfig,
                                       LMRecipe, LMTokenizerConfig, TrainConfig)

CONTEXT = 16
RECIPE = LMRecipe(
    name="tiny-given",
    tokenizer=LMTokenizerConfig(vocabulary_size=200, min_frequency=2, max_train_texts=600),
    teacher=DecoderConfig(layers=1, dim=16, heads=2, ff_dim=32, context=CONTEXT),  # unused with --teacher
    teacher_train=TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, max_train_tokens=3000),
    student=DecoderConfig(layers=1, dim=16, heads=2, ff_dim=32, context=CONTEXT),
    student_train=TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, max_train_tokens=3000),
    distill=LMDistillConfig(alpha=0.5, temperature=2.0, top_k=16),
    prune=LMPruneConfig(target_sparsity=0.0),  # off: its KD fine-tune is the distillation's code path, and slow
    export=LMExportConfig(calibration_windows=2),
    eval=LMEvalConfig(max_eval_tokens=300, generation_examples=3, max_new_tokens=4),
)


def _keras3():
    from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow)
    import keras

    return keras


def _causal_lm(keras, vocab_size: int, dim: int = 24, out: int | None = None):
    """A "causal LM" for the contract: ids [batch, T] -> logits [batch, T, V], each position from its own token."""
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    h = keras.layers.Embedding(vocab_size, dim)(ids)
    return keras.Model(ids, keras.layers.Dense(out or vocab_size)(h))


@pytest.fixture(scope="module")
def given(tmp_path_factory):
    """corpus.jsonl, vocab.txt (words of its train split) and teacher.keras trained on that split."""
    from tflite_compress.lm.corpus import load_chitchat, load_corpus
    from tflite_compress.lm.tokenizer import LM_RESERVED, LMTokenizer, stream, windows
    from tflite_compress.tokenizer import normalize, split_words

    root = tmp_path_factory.mktemp("given")
    convs = load_chitchat(max_conversations=120)
    lines = [json.dumps({"context": list(c[:-1]), "reply": c[-1]}) for c in convs.train + convs.val + convs.test]
    (root / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = load_corpus(root / "corpus.jsonl")
    counts = collections.Counter(w for conv in corpus.train for t in conv for w in split_words(normalize(t)))
    vocab = list(LM_RESERVED) + [w for w, _ in counts.most_common(157)]  # V = 160
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    keras = _keras3()
    keras.utils.set_random_seed(0)
    model = _causal_lm(keras, len(vocab))
    w = windows(stream(corpus.train, LMTokenizer(vocab), 4000), CONTEXT)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(w[:, :-1], w[:, 1:], epochs=3, batch_size=32, verbose=0)
    model.save(root / "teacher.keras")
    (root / "recipe.json").write_text(json.dumps(RECIPE.to_dict()), encoding="utf-8")
    return root


def _demo(root, runs, *extra):
    args = ["demo-lm", "--corpus", str(root / "corpus.jsonl"), "--recipe", str(root / "recipe.json"),
            "--runs-dir", str(runs), "--name", "given", *extra]
    return CliRunner().invoke(main, args)


def test_given_teacher_end_to_end(given, tmp_path):
    from tflite_compress.lm.corpus import load_corpus
    from tflite_compress.lm.tokenizer import LMTokenizer, stream, windows

    runs = tmp_path / "runs"
    res = _demo(given, runs, "--teacher", str(given / "teacher.keras"), "--teacher-vocab", str(given / "vocab.txt"))
    assert res.exit_code == 0, res.output
    out = runs / "given"
    report = json.loads((out / "report.json").read_text())
    st = report["stages"]
    keras = _keras3()
    model = keras.saving.load_model(given / "teacher.keras")
    # the vocabulary and the teacher are the given ones: nothing learned, nothing trained, no teacher file
    assert st["tokenizer"]["source"] == "given" and st["tokenizer"]["vocabulary_size"] == 160
    assert (out / "vocab.txt").read_text() == (given / "vocab.txt").read_text()
    assert st["teacher"]["source"] == "given" and st["teacher"]["path"] == str(given / "teacher.keras")
    assert st["teacher"]["parameters"] == model.count_params() and st["teacher"]["keras"].startswith("keras 3")
    assert not list((runs / "cache").glob("lm-teacher-*")) and not (out / "teacher.tflite").exists()
    # under 4x the student's parameters: a warning in report.json, not an error
    assert st["teacher"]["param_ratio_to_student"] < 4 and "4x" in report["summary"]["teacher_warning"]
    # the distilled student trained from its top-16 log-probabilities, cached
    assert np.isfinite(st["distilled"]["loss"]).all() and min(st["distilled"]["kl"]) > 0, st["distilled"]
    (topk,) = (runs / "cache").glob("lm-given-teacher-*.top16-T2.npz")
    with np.load(topk) as f:
        assert f["ids"].shape == (st["distilled"]["train_windows"], CONTEXT, 16)
    # the teacher row: measured in Keras on the test windows, equal to a direct computation
    row = st["evaluate"]["rows"]["teacher"]
    tok = LMTokenizer.from_file(given / "vocab.txt")
    test = stream(load_corpus(given / "corpus.jsonl").test, tok, RECIPE.eval.max_eval_tokens + 1)
    w = windows(test[: RECIPE.eval.max_eval_tokens + 1], CONTEXT)
    logits = np.asarray(model.predict(w[:, :-1], verbose=0), np.float64)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(logp, w[:, 1:, None], -1).mean()
    assert row["evaluated_in"] == "keras" and "layer name" in row["note"]
    assert row["perplexity"] == pytest.approx(np.exp(nll), rel=1e-4)
    assert row["top1"] == pytest.approx((logits.argmax(-1) == w[:, 1:]).mean())
    assert row["perplexity"] < 0.5 * len(tok.vocab)  # it learned something: uniform is 160
    table = res.stdout
    line = next(ln for ln in table.splitlines() if ln.startswith("teacher (given, Keras)"))
    assert line.split()[4:6] == ["-", "-"] and f"{row['perplexity']:.2f}" in line
    assert f"teacher given ({given / 'teacher.keras'})" in table and "warning:" in table


def _tf_keras_h5(path, vocab_size):
    from tflite_compress._tf import keras as tf_keras

    ids = tf_keras.Input((None,), dtype="int32")
    model = tf_keras.Model(ids, tf_keras.layers.Dense(vocab_size)(tf_keras.layers.Embedding(vocab_size, 4)(ids)))
    model.save(path)
    return model


def test_tf_keras_h5_teacher_loads(given, tmp_path):
    from tflite_compress.lm.teacher import load_teacher

    model = _tf_keras_h5(tmp_path / "t.h5", 160)
    t = load_teacher(tmp_path / "t.h5", 160, np.zeros((2, CONTEXT), np.int32))
    assert t.keras == "tf-keras" and t.parameters == model.count_params() and len(t.sha256) == 64


def _bad_models(keras, root):
    """name -> (file, what the error names); built lazily in `root`."""
    v = 160
    (root / "garbage.keras").write_bytes(b"not a zip")
    _causal_lm(keras, v, out=v + 5).save(root / "wide.keras")
    floats = keras.Input((CONTEXT,), dtype="float32")
    keras.Model(floats, keras.layers.Dense(v)(keras.layers.Reshape((CONTEXT, 1))(floats))).save(root / "float_in.keras")
    ids = keras.Input((CONTEXT,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(v, 4)(ids))
    keras.Model(ids, keras.layers.Dense(v)(pooled)).save(root / "rank2_out.keras")
    ids3 = keras.Input((CONTEXT, 2), dtype="int32")
    keras.Model(ids3, keras.layers.Dense(v)(keras.layers.Embedding(v, 4)(ids3))).save(root / "rank3_in.keras")
    a, b = keras.Input((None,), dtype="int32"), keras.Input((None,), dtype="int32")
    emb = keras.layers.Embedding(v, 4)
    keras.Model([a, b], keras.layers.Dense(v)(keras.layers.Add()([emb(a), emb(b)]))).save(root / "two_in.keras")
    return {"missing": (root / "missing.keras", "--teacher file not found"),
            "two_in": (root / "two_in.keras", "takes 2 inputs; expected one"),
            "garbage": (root / "garbage.keras", "cannot load teacher model"),
            "wide": (root / "wide.keras", "outputs 165 logits a position; --teacher-vocab has 160 tokens"),
            "float_in": (root / "float_in.keras", "expected integer token ids"),
            "rank2_out": (root / "rank2_out.keras", "expected logits of rank 3"),
            "rank3_in": (root / "rank3_in.keras", "expected token ids of rank 2")}


def test_bad_teacher_inputs_exit_2_and_write_nothing(given, tmp_path):
    bad = _bad_models(_keras3(), tmp_path)
    vocab = str(given / "vocab.txt")
    cases = [(["--teacher", str(f), "--teacher-vocab", vocab], [str(f), needle]) for f, needle in bad.values()]
    cases += [(["--teacher", str(given / "teacher.keras")], ["--teacher-vocab"]),
              (["--teacher-vocab", vocab], ["--teacher-vocab needs --teacher"]),
              (["--teacher", str(given / "teacher.keras"), "--teacher-vocab", str(tmp_path / "none.txt")],
               [str(tmp_path / "none.txt")])]
    runs = tmp_path / "runs"
    for args, needles in cases:
        res = _demo(given, runs, *args)
        assert res.exit_code == 2, (args, res.output)
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1 and res.stderr.strip().splitlines()[-1] == errors[0], res.stderr
        assert all(n in errors[0] for n in needles), (needles, errors[0])
        assert not (runs / "given").exists()
        assert not list(runs.glob(".given.tmp*")) if runs.exists() else True
