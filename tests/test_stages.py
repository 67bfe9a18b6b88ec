"""Stage-level tests: tokenizer parity with keras-nlp, distillation loss, pruning, QAT, conversion."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tflite_compress.config import DistillConfig, PruneConfig, StudentConfig, TokenizerConfig
from tflite_compress.data import load_clinc150
from tflite_compress.errors import InputError
from tflite_compress.tokenizer import WordPieceTokenizer, learn_vocabulary

EDGE_CASES = [
    "What's the WEATHER like in São Paulo?!", "set a timer for 10:30 p.m.", "naïve café résumé",
    "transfer $1,000.50 to acct #12345", "zzqxj blorptastic", "a" * 150, "tab\tand\nnewline",
    "emoji 🙂 and 中文字 mixed", "", "   ", "hyphen-ated words--dash", "it''s \"quoted\" (maybe)",
]


@pytest.fixture(scope="module")
def clinc_tokenizer():
    ds = load_clinc150()
    config = TokenizerConfig(vocabulary_size=2000, sequence_length=32, min_frequency=5)
    return ds, WordPieceTokenizer(learn_vocabulary(ds.train.texts[::3], config), config)


def test_tokenizer_matches_keras_nlp(clinc_tokenizer):
    import keras_nlp

    ds, tok = clinc_tokenizer
    ref = keras_nlp.tokenizers.WordPieceTokenizer(
        vocabulary=tok.vocab, lowercase=True, strip_accents=True, oov_token="[UNK]", dtype="int32")
    texts = list(ds.test.texts[:800]) + EDGE_CASES
    out = ref(texts)
    want = out.to_list() if hasattr(out, "to_list") else [[int(i) for i in row] for row in out]
    got = [tok.tokenize(t) for t in texts]
    mismatches = [(t, w, g) for t, w, g in zip(texts, want, got) if w != g]
    assert not mismatches, mismatches[:3]


def test_tokenizer_fixed_length_and_vocab_checks(clinc_tokenizer, tmp_path):
    _, tok = clinc_tokenizer
    ids = tok.encode_batch(["set a timer", "a " * 100])
    assert ids.dtype == np.int32 and ids.shape == (2, 32)
    assert (ids[0, 3:] == 0).all() and (ids[1] != 0).all()
    bad = tmp_path / "vocab.txt"
    bad.write_text("hello\nworld\n")
    with pytest.raises(InputError, match="vocab.txt"):
        WordPieceTokenizer.from_file(bad)
    with pytest.raises(InputError, match="not found"):
        WordPieceTokenizer.from_file(tmp_path / "missing.txt")


def test_distillation_loss_matches_formula():
    from tflite_compress.distill import distillation_loss, pack_targets

    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32) * 3
    y = np.array([0, 1, 2, 3, 1])
    alpha, temp = 0.3, 2.5

    def log_softmax(z):
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    ce = -log_softmax(s)[np.arange(5), y]
    pt = np.exp(log_softmax(t / temp))
    kl = (pt * (log_softmax(t / temp) - log_softmax(s / temp))).sum(1)
    want = alpha * ce + (1 - alpha) * temp**2 * kl
    got = distillation_loss(alpha, temp)(pack_targets(y, t, 4), s).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # alpha = 1: labels alone, the teacher is ignored.
    np.testing.assert_allclose(distillation_loss(1.0, temp)(pack_targets(y, None, 4), s).numpy(), ce, rtol=1e-5)
    # "mse" (Tang et al.): the mean squared logit difference in place of T^2 * KL; T plays no part.
    want = alpha * ce + (1 - alpha) * ((s - t) ** 2).mean(1)
    for temp_ in (temp, 1.0):
        got = distillation_loss(alpha, temp_, "mse")(pack_targets(y, t, 4), s).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5)
    with pytest.raises(InputError, match="logit_loss 'l2'"):
        distillation_loss(alpha, temp, "l2")


def _tiny_data(n=256, seq=12, vocab=60, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(2, vocab, (n, seq)).astype(np.int32)
    x[:, 0] = 2 + y  # a learnable signal
    return x, y


def test_pruning_reaches_target_in_a_short_run():
    from tflite_compress import distill, prune
    from tflite_compress.students import build_student

    x, y = _tiny_data()
    model = build_student(StudentConfig(embedding_dim=8, filters=8, kernel_sizes=(1, 2), hidden_units=16), 60, 12, 4)
    cfg = PruneConfig(target_sparsity=0.5, epochs=2)
    steps = 2 * int(np.ceil(len(x) / 32))  # 16 steps: tfmot's default frequency (100) would prune nothing
    pruned = prune.prune(model, cfg, steps)
    distill.compile_for_distillation(pruned, DistillConfig(), alpha=1.0)
    distill.fit(pruned, x, distill.pack_targets(y, None, 4), 2, 32, callbacks=prune.callbacks(), verbose=0)
    stripped = prune.strip(pruned)
    assert not any("prune" in type(layer).__name__.lower() for layer in stripped.layers)
    by_layer = prune.sparsity_by_layer(stripped)
    assert set(by_layer) == {"embedding", "conv_k1", "conv_k2", "hidden", "logits"}
    assert min(by_layer.values()) >= 0.49
    assert prune.overall_sparsity(stripped) >= 0.49
    # The input model is untouched.
    assert prune.overall_sparsity(model) < 0.01


def test_qat_student_saves_loads_converts_and_keeps_zeros(tmp_path):
    from tflite_compress import convert, distill, qat
    from tflite_compress._tf import keras
    from tflite_compress.runtime import TFLiteModel, weight_sparsity
    from tflite_compress.students import build_student

    x, y = _tiny_data()
    model = build_student(StudentConfig(embedding_dim=8, filters=8, kernel_sizes=(1, 3), hidden_units=16), 60, 12, 4)
    w = model.get_layer("hidden").kernel
    w.assign(w.numpy() * (np.arange(w.shape[1]) % 2 == 0))  # half the columns zero
    q = qat.quantize_student(model, preserve_sparsity=True)
    kinds = {type(layer.layer).__name__ for layer in q.layers if hasattr(layer, "layer")}
    assert {"Embedding", "Conv1D", "Dense"} <= kinds
    assert q.inputs[0].dtype == "int32"
    distill.compile_for_distillation(q, DistillConfig(), learning_rate=1e-3, alpha=1.0)
    distill.fit(q, x, distill.pack_targets(y, None, 4), 1, 32, verbose=0)
    path = tmp_path / "qat.h5"
    q.save(path)
    with qat.quantize_scope():
        loaded = keras.models.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(x[:16], verbose=0), q.predict(x[:16], verbose=0), atol=1e-5)
    content = convert.to_int8(q, x[:64])
    tfl = TFLiteModel(content)
    out = tfl.predict(x[:64])
    keras_out = q.predict(x[:64], verbose=0)
    # INT8 logits track the QAT model's (quantization error only).
    assert np.mean(out.argmax(1) == keras_out.argmax(1)) > 0.9
    hidden = [v for k, v in weight_sparsity(tfl)["tensors"].items() if v["shape"] == [16, 16]]
    assert hidden and max(h["sparsity"] for h in hidden) >= 0.5


def test_conversion_rejects_float_compute():
    from tflite_compress import convert
    from tflite_compress._tf import keras

    inp = keras.Input((4,))
    out = keras.layers.Dense(3)(keras.layers.Lambda(lambda t: keras.backend.cumsum(t, axis=1))(inp))
    model = keras.Model(inp, out)
    with pytest.raises(convert.ConversionError):
        convert.to_int8(model, np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32))


def test_augment_texts_is_deterministic_and_keeps_words():
    from tflite_compress.distill import augment_texts

    texts = ["set a timer for ten minutes", "hi", "what is my bank balance right now"]
    a = augment_texts(texts, copies=2, seed=3)
    assert a == augment_texts(texts, copies=2, seed=3)
    assert len(a) == 6 and all(a)
    for src, aug in zip(texts * 2, a):
        assert set(aug.split()) <= set(src.split())
    assert a != texts * 2  # something was dropped or swapped
    assert augment_texts(texts, copies=0) == []


def test_minilm_fine_tune_learns_on_tiny_data(tmp_path):
    """`teacher.fine_tune: true` trains the encoder with a head: the loss falls, the features move,
    and the cache keeps fine-tuned and frozen features apart."""
    from tflite_compress.config import TeacherConfig
    from tflite_compress.teacher import FINE_TUNE_FEATURE_SCALE, MiniLMTeacher, teacher_outputs

    texts = ["set a timer for ten minutes", "start a five minute timer", "timer for an hour please",
             "what is the weather today", "will it rain tomorrow", "is it sunny outside"]
    labels = np.array([0, 0, 0, 1, 1, 1])
    config = TeacherConfig(sequence_length=12, fine_tune=True, fine_tune_epochs=4, fine_tune_learning_rate=1e-4,
                           fine_tune_head_learning_rate=1e-2,
                           head_epochs=5)
    teacher = MiniLMTeacher(config)
    before = teacher.features(texts, verbose=0)
    seen = []
    losses = teacher.fine_tune(texts, labels, 2, verbose=0, on_epoch=lambda e, loss, head: seen.append(
        (e, loss, np.asarray(head(teacher.features(texts, verbose=0) * FINE_TUNE_FEATURE_SCALE)).shape)))
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert seen == [(e + 1, loss, (6, 2)) for e, loss in enumerate(losses)]  # the hook: each epoch, its head
    assert not np.allclose(teacher.features(texts, verbose=0), before, atol=1e-3)

    splits = {"train": tuple(texts), "test": tuple(texts[:2])}
    tuned = teacher_outputs(config, splits, labels, 2, tmp_path, log=lambda m: None)
    frozen = teacher_outputs(TeacherConfig(sequence_length=12, head_epochs=5), splits, labels, 2, tmp_path,
                             log=lambda m: None)
    assert "fine-tuned" in tuned.description and "frozen" in frozen.description
    assert tuned.cache_key != frozen.cache_key
    assert tuned.logits["train"].shape == (6, 2)
    # the key follows every fine-tuning setting; a frozen encoder's key is the one it always had
    # (cached features of earlier versions stay valid)
    from tflite_compress.teacher import _fine_tune_key, teacher_cache_key

    assert teacher_cache_key(config, splits, labels) == tuned.cache_key
    for change in ({"fine_tune_head_learning_rate": 5e-3}, {"fine_tune_learning_rate": 5e-5}, {"fine_tune_epochs": 2}):
        assert teacher_cache_key(dataclasses.replace(config, **change), splits, labels) != tuned.cache_key
    assert _fine_tune_key(TeacherConfig(), None) == [False, 2, 3e-5, None]


@pytest.mark.parametrize("hidden", [0, 32])
def test_teacher_head_steps_per_call_do_not_change_its_logits(hidden, monkeypatch):
    """The head trains `HEAD_STEPS` steps per call: the same steps, in the same order, so logits
    equal to the bit those of one step per call (a linear head and an MLP with dropout)."""
    from tflite_compress import teacher
    from tflite_compress.config import TeacherConfig

    rng = np.random.default_rng(1)
    feats = rng.normal(size=(300, 16)).astype(np.float32)  # 300 rows, batch 64: a partial last batch
    labels = rng.integers(0, 4, 300)
    config = TeacherConfig(head_hidden=hidden, head_epochs=4, head_batch_size=64, head_ensemble=2)
    assert teacher.HEAD_STEPS > 1
    many = teacher.train_head(feats, labels, 4, config)(feats)
    monkeypatch.setattr(teacher, "HEAD_STEPS", 1)
    one = teacher.train_head(feats, labels, 4, config)(feats)
    assert np.array_equal(many, one)


def test_teacher_head_ensemble_averages_mlp_heads():
    """`head_hidden` > 0 trains MLP heads, `head_ensemble` of them with consecutive seeds; the logits
    are their mean. On two noisy clusters the ensemble learns them; its members differ (seeds)."""
    from tflite_compress.config import TeacherConfig
    from tflite_compress.teacher import head_description, head_parameters, train_head

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(np.arange(3), 40)
    feats = (centres[labels] + 0.8 * rng.normal(size=(120, 16))).astype(np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    config = TeacherConfig(head_hidden=32, head_ensemble=3, head_epochs=30, head_learning_rate=1e-2)
    both = train_head(feats, labels, 3, config)(feats)
    one = [train_head(feats, labels, 3, dataclasses.replace(config, head_ensemble=1, seed=s))(feats) for s in range(3)]
    assert both.shape == (120, 3) and (both.argmax(1) == labels).mean() > 0.9
    assert not np.allclose(one[0], one[1], atol=1e-3)
    np.testing.assert_allclose(both, np.mean(one, axis=0), rtol=1e-4, atol=1e-4)
    assert head_parameters(16, 3, config) == 3 * (16 * 32 + 32 + 32 * 3 + 3)
    assert head_description(config) == "3 MLP heads (32 GELU) averaged"
    with pytest.raises(InputError, match="head_ensemble"):
        TeacherConfig(head_ensemble=0)


def test_learned_vocabulary_is_keras_nlps_at_its_min_frequency():
    """learn_vocabulary counts pretokenized batches of texts; at keras-nlp's fixed min_frequency (10)
    it gives compute_word_piece_vocabulary's vocabulary, piece for piece."""
    import keras_nlp

    from tflite_compress.tokenizer import RESERVED_TOKENS

    texts = list(load_clinc150().train.texts[:3000])
    config = TokenizerConfig(vocabulary_size=600, min_frequency=10)
    from tflite_compress._tf import tf

    theirs = keras_nlp.tokenizers.compute_word_piece_vocabulary(  # (a list would be file names)
        tf.data.Dataset.from_tensor_slices(texts), config.vocabulary_size, lowercase=True, strip_accents=True, reserved_tokens=list(RESERVED_TOKENS))
    assert learn_vocabulary(texts, config) == list(theirs)


def test_vocabulary_cache_reuses_and_recomputes_a_damaged_entry(tmp_path):
    from tflite_compress.tokenizer import cached_vocabulary

    texts = tuple(load_clinc150().train.texts[:600])
    config = TokenizerConfig(vocabulary_size=400, min_frequency=3)
    logs: list[str] = []
    first, hit1 = cached_vocabulary(texts, config, tmp_path, logs.append)
    second, hit2 = cached_vocabulary(texts, config, tmp_path, logs.append)
    assert (hit1, hit2) == (False, True) and first == second == learn_vocabulary(texts, config)
    other, hit3 = cached_vocabulary(texts, TokenizerConfig(vocabulary_size=400, min_frequency=5), tmp_path, logs.append)
    assert not hit3 and other != first  # the settings are in the key
    (tmp_path / "one").mkdir()
    cached_vocabulary(texts, config, tmp_path / "one", logs.append)
    (entry,) = (tmp_path / "one").glob("vocab-*.npz")
    entry.write_bytes(entry.read_bytes()[:-7])  # truncated: the footer no longer checks
    again, hit4 = cached_vocabulary(texts, config, tmp_path / "one", logs.append)
    assert not hit4 and again == first
    assert any("corrupt" in m for m in logs) and list((tmp_path / "one").glob("*.corrupt"))
    from tflite_compress.teacher import FeatureCache  # the store `cache list` / `cache clear` read

    assert sorted(e.status for e in FeatureCache(tmp_path / "one").store.entries() if e.key.startswith("vocab-")) == \
        ["moved aside", "ok"]
