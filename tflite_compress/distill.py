"""Knowledge distillation of a tf-keras student from cached teacher logits.

    L = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))

Labels and teacher logits travel together as one target array `[label, logit_0, ..., logit_C-1]`,
so the student trains with plain `model.fit`: tfmot's pruning and QAT wrappers and their
callbacks work unchanged.

Feature distillation (optional, `DistillConfig.feature_weight > 0`): a training-only model adds
a learned projection of the student's hidden layer to the teacher's feature width and a second
loss (MSE on standardized teacher features, or cosine) weighted beside the logits term. The
student shares its layers with that model, so after training it holds the trained weights and
its own graph (the one exported) has no projection.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .config import FEATURE_LOSSES, LOGIT_LOSSES, DistillConfig
from .errors import InputError
from ._tf import keras, tf


def pack_targets(labels: np.ndarray, teacher_logits: np.ndarray | None, num_labels: int) -> np.ndarray:
    """`[label, teacher logits...]` per row; without a teacher the logits are zeros (unused)."""
    labels = np.asarray(labels, np.float32).reshape(-1, 1)
    if teacher_logits is None:
        teacher_logits = np.zeros((len(labels), num_labels), np.float32)
    return np.concatenate([labels, np.asarray(teacher_logits, np.float32)], axis=1)


def distillation_loss(alpha: float, temperature: float, logit_loss: str = "kl") -> Callable:
    """Keras loss over packed targets (see `pack_targets`) and student logits.

    `logit_loss` "mse": the soft term is the mean squared difference of the logits (Tang et al.
    2019), in place of T^2 * KL; `temperature` is then unused.
    """
    if logit_loss not in LOGIT_LOSSES:
        raise InputError(f"distill.logit_loss {logit_loss!r} is not one of: {', '.join(LOGIT_LOSSES)}")
    t = float(temperature)

    def loss(y_packed, logits):
        labels = tf.cast(y_packed[:, 0], tf.int32)
        teacher = y_packed[:, 1:]
        ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if alpha >= 1.0:
            return ce
        if logit_loss == "mse":
            return alpha * ce + (1.0 - alpha) * tf.reduce_mean(tf.square(logits - teacher), axis=-1)
        p_teacher = tf.nn.softmax(teacher / t)
        kl = tf.reduce_sum(
            p_teacher * (tf.nn.log_softmax(teacher / t) - tf.nn.log_softmax(logits / t)), axis=-1
        )
        return alpha * ce + (1.0 - alpha) * (t * t) * kl

    loss.__name__ = "distillation_loss"
    return loss


def label_accuracy(y_packed, logits):
    labels = tf.cast(y_packed[:, 0], tf.int64)
    return tf.cast(tf.equal(tf.argmax(logits, axis=-1), labels), tf.float32)


label_accuracy.__name__ = "accuracy"


# XLA-compiled training (`xla=True`): the train step is compiled with `jit_compile` and run
# `XLA_STEPS` steps per call. On the demo's student (30,200 rows, batch 64, 2 cores) its 20
# epochs took 143 s against 168 s (docs/out-of-scope.md, "Training time"); single epochs on this
# shared machine swing between 6 and 10 s either way (benchmarks/train_speed.py). Not for pruning
# (tfmot's step callback must run every step) nor QAT (3 epochs; its compile costs what it saves).
XLA_STEPS = 32


def compile_for_distillation(model, config: DistillConfig, learning_rate: float | None = None,
                             alpha: float | None = None, xla: bool = False) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate or config.learning_rate),
        loss=distillation_loss(config.alpha if alpha is None else alpha, config.temperature, config.logit_loss),
        metrics=[label_accuracy],
        **_xla_options(xla),
    )


def _xla_options(xla: bool) -> dict:
    return {"jit_compile": True, "steps_per_execution": XLA_STEPS} if xla else {}


def fit(model, x: np.ndarray, targets, epochs: int, batch_size: int, callbacks=(),
        validation: tuple[np.ndarray, np.ndarray] | None = None, verbose: int = 1, seed: int = 0,
        length_margin: int | None = None):
    """Train with a shuffled tf.data pipeline; returns the Keras history.

    A model compiled with `jit_compile` trains on whole batches only: each epoch's last partial
    batch is dropped (a different one each epoch, as rows are reshuffled) when there is at least
    one whole batch, so that the XLA-compiled step sees one batch shape and compiles once.

    `length_margin` (see `students.length_margin`): the model's logits do not depend on where a
    row is cut after its last token plus this many positions. Short rows then train in batches of
    their own, cut to `length_buckets`' length (a second batch shape): the same function on
    fewer positions. `targets` may be an array or a tuple of arrays (feature distillation).
    """
    keras.utils.set_random_seed(seed)
    drop = bool(getattr(model, "jit_compile", False)) and len(x) >= batch_size
    buckets = length_buckets(x, batch_size, length_margin, drop) if length_margin else None
    if buckets is None:
        ds = tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(len(x), seed=seed).batch(batch_size,
                                                                                               drop_remainder=drop)
    else:
        cut, short = buckets
        parts, batches = [], []
        for rows, width in ((short, cut), (~short, x.shape[1])):
            sub = (x[rows][:, :width], tf.nest.map_structure(lambda a, rows=rows: a[rows], targets))
            n = int(rows.sum())
            parts.append(tf.data.Dataset.from_tensor_slices(sub).shuffle(n, seed=seed)
                         .batch(batch_size, drop_remainder=drop))
            batches.append(_batches(n, batch_size, drop))
        ds = tf.data.Dataset.sample_from_datasets(parts, weights=[b / sum(batches) for b in batches], seed=seed,
                                                  stop_on_empty_dataset=False)
        ds = ds.apply(tf.data.experimental.assert_cardinality(sum(batches)))  # a new pass each epoch
    val = None
    if validation is not None:
        val = tf.data.Dataset.from_tensor_slices(validation).batch(512)
    # The model's input spec names the full length; relaxed while it trains on the cut batches.
    relaxed = buckets is not None and "_manual_input_spec" not in model.__dict__
    if relaxed:
        model.input_spec = None
    try:
        return model.fit(ds, epochs=epochs, callbacks=list(callbacks), validation_data=val, verbose=verbose)
    finally:
        if relaxed:
            del model._manual_input_spec


def _batches(rows: int, batch_size: int, whole: bool) -> int:
    return rows // batch_size if whole else -(-rows // batch_size)


def batches_per_epoch(x: np.ndarray, batch_size: int, length_margin: int | None = None,
                      whole_batches: bool = False) -> int:
    """The steps of one epoch of `fit` on `x` (a model compiled without `jit_compile` unless
    `whole_batches`), cut batches included: what a pruning schedule counts."""
    whole = whole_batches and len(x) >= batch_size
    buckets = length_buckets(x, batch_size, length_margin, whole) if length_margin else None
    sizes = [len(x)] if buckets is None else [int(buckets[1].sum()), int((~buckets[1]).sum())]
    return sum(_batches(n, batch_size, whole) for n in sizes)


def row_lengths(x: np.ndarray) -> np.ndarray:
    """Positions up to and including each row's last non-padding (non-zero) token id."""
    nonzero = np.asarray(x) != 0
    return np.where(nonzero.any(1), x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)


def length_buckets(x: np.ndarray, batch_size: int, margin: int, whole_batches: bool = False
                   ) -> tuple[int, np.ndarray] | None:
    """(cut, short rows) for `fit`'s two batch shapes, or None when one shape is as cheap.

    A row is short when its length (`row_lengths`) is at most cut - margin. The cut minimises the
    positions a pass computes, counting each step's fixed cost as half a full row (measured on the
    demo's CNN, batch 64: ~9 ms a step at 16 positions, ~14 ms at 32, XLA, 2 cores); it is kept
    when that saves at least 10% and each bucket fills a batch (a whole one under `whole_batches`).
    """
    full = x.shape[1]
    lengths = row_lengths(x)
    least = batch_size if whole_batches else 1
    best = None
    for cut in range(margin + 1, full):
        n_short = int((lengths <= cut - margin).sum())
        if n_short < least or len(x) - n_short < least:
            continue
        cost = n_short * (cut + full / 2) + (len(x) - n_short) * (full + full / 2)
        if best is None or cost < best[0]:
            best = (cost, cut)
    if best is None or best[0] > 0.9 * len(x) * 1.5 * full:
        return None
    return best[1], lengths <= best[1] - margin


PROJECTION_LAYER = "feature_projection"


def feature_loss(kind: str) -> Callable:
    """MSE or (1 - cosine similarity) between projected student and teacher features."""
    if kind == "mse":
        def loss(target, projected):
            return tf.reduce_mean(tf.square(projected - target), axis=-1)
    elif kind == "cosine":
        def loss(target, projected):
            return 1.0 - tf.reduce_sum(tf.math.l2_normalize(target, -1) * tf.math.l2_normalize(projected, -1), axis=-1)
    else:
        raise InputError(f"distill.feature_loss {kind!r} is not one of: {', '.join(FEATURE_LOSSES)}")
    loss.__name__ = f"feature_{kind}"
    return loss


def standardize_features(features: dict[str, np.ndarray], reference: str = "train") -> dict[str, np.ndarray]:
    """Teacher features scaled per dimension by the `reference` split's mean and std."""
    ref = np.asarray(features[reference], np.float32)
    mean, std = ref.mean(0), ref.std(0) + 1e-6
    return {k: ((np.asarray(v, np.float32) - mean) / std).astype(np.float32) for k, v in features.items()}


def with_feature_head(student, feature_dim: int, layer: str = "hidden", seed: int = 0):
    """A training model with outputs `[logits, projection(student.get_layer(layer))]`.

    It shares every layer with `student` (training it trains the student); the projection
    (`feature_projection`, Dense to `feature_dim`) exists in this model only.
    """
    try:
        hidden = student.get_layer(layer).output
    except ValueError:
        raise InputError(f"distill.feature_layer {layer!r}: no such layer in {student.name!r}") from None
    keras.utils.set_random_seed(seed)
    projected = keras.layers.Dense(feature_dim, name=PROJECTION_LAYER)(hidden)
    return keras.Model(student.inputs, [student.outputs[0], projected], name=f"{student.name}_feature_distill")


def compile_for_feature_distillation(model, config: DistillConfig, learning_rate: float | None = None,
                                     alpha: float | None = None, xla: bool = False) -> None:
    """Compile a `with_feature_head` model: logits loss + `feature_weight` * feature loss."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate or config.learning_rate),
        loss=[distillation_loss(config.alpha if alpha is None else alpha, config.temperature, config.logit_loss),
              feature_loss(config.feature_loss)],
        loss_weights=[1.0, float(config.feature_weight)],
        metrics=[[label_accuracy], []],
        **_xla_options(xla),
    )


def feature_distillation(student, config: DistillConfig, targets: dict[str, np.ndarray],
                         teacher_features: dict[str, np.ndarray], alpha: float | None = None, seed: int = 0,
                         xla: bool = False):
    """(training model, targets per split) for feature distillation, compiled and ready for `fit`.

    `targets` are packed logits targets per split (`pack_targets`); the teacher features of the
    same splits are standardized on "train" for MSE (cosine ignores scale). The student is not
    changed until the training model is trained.
    """
    feats = standardize_features(teacher_features) if config.feature_loss == "mse" else teacher_features
    dim = int(np.asarray(feats["train"]).shape[1])
    model = with_feature_head(student, dim, config.feature_layer, seed=seed)
    compile_for_feature_distillation(model, config, alpha=alpha, xla=xla)
    return model, {k: (v, np.asarray(feats[k], np.float32)) for k, v in targets.items()}


def augment_texts(texts, copies: int, word_dropout: float = 0.15, swap_probability: float = 0.5,
                  seed: int = 0) -> list[str]:
    """`copies` noisy variants of each text, for the teacher to label (distillation data).

    Each variant drops every word with probability `word_dropout` (keeping at least one) and,
    with probability `swap_probability`, swaps two adjacent words. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(copies):
        for text in texts:
            words = text.split()
            kept = [w for w in words if rng.random() >= word_dropout] or words[:1]
            if len(kept) > 2 and rng.random() < swap_probability:
                i = int(rng.integers(0, len(kept) - 1))
                kept[i], kept[i + 1] = kept[i + 1], kept[i]
            out.append(" ".join(kept))
    return out


_FUNCTION_WORDS = frozenset(
    "a an the to of in on at for from by with and or but is are was were be been am do does did i me my you your "
    "we our us he she it its they them their this that these those what which who how when where why can could "
    "will would should shall may might must not no please".split())


def _word_kind(word: str) -> str:
    w = word.lower()
    if any(ch.isdigit() for ch in w):
        return "number"
    return "function" if w in _FUNCTION_WORDS else "content"


def tang_augment_texts(texts, copies: int, mask_probability: float = 0.1, replace_probability: float = 0.1,
                       ngram_probability: float = 0.25, seed: int = 0) -> list[str]:
    """`copies` variants of each text in the style of Tang et al. 2019 (distilling BERT into small
    students): each word is dropped with `mask_probability` (our tokenizers have no mask token)
    or replaced with `replace_probability` by a random corpus word of the same kind (number,
    function word, content word; a stand-in for their part-of-speech tags); then, with
    `ngram_probability`, only a random 1-5 word n-gram of the result is kept. Deterministic."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[str]] = {}
    for text in texts:
        for w in text.split():
            pools.setdefault(_word_kind(w), []).append(w)
    out = []
    for _ in range(copies):
        for text in texts:
            words = []
            for w in text.split():
                r = rng.random()
                if r < mask_probability:
                    continue
                if r < mask_probability + replace_probability:
                    pool = pools[_word_kind(w)]
                    w = pool[int(rng.integers(0, len(pool)))]
                words.append(w)
            words = words or text.split()[:1]
            if len(words) > 1 and rng.random() < ngram_probability:
                n = int(rng.integers(1, min(5, len(words)) + 1))
                start = int(rng.integers(0, len(words) - n + 1))
                words = words[start:start + n]
            out.append(" ".join(words))
    return out


def augmented_copies(texts, config: DistillConfig, seed: int = 0) -> list[str]:
    """`config.augment_copies` teacher-labelled variants of each text, in `config.augment_style`."""
    if config.augment_style == "tang":
        return tang_augment_texts(texts, config.augment_copies, seed=seed)
    return augment_texts(texts, config.augment_copies, config.augment_word_dropout,
                         config.augment_swap_probability, seed=seed)
