"""Training the decoder: on the data alone (CE) or distilled from a frozen teacher (CE + KD).

L = alpha * CE(next token) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T)),
averaged over every token of every window. The teacher's logits come one of two ways:
- on the fly (`teacher=` a Keras model): one teacher forward per batch inside the training step;
- sparse (`topk=(ids, log-probs)` from `teacher_topk`): the teacher's k most likely tokens per
  position with their log-probabilities at temperature T, computed once and cached with the
  teacher (a full-vocabulary cache would be 4 KB a token at vocabulary 1,000). The KL then runs
  over k + 1 buckets, the teacher's top k tokens and "every other token", with both
  distributions normalised over the whole vocabulary: the KL of that coarser distribution, a
  lower bound of the full KL that does not push the student's tail to zero. (Renormalising the
  teacher over its top 32 did: at T=2 they hold 27% of its mass, and the distilled student's val
  perplexity went from 101 to 202.)

`LMTrainer` is a `keras.Model` wrapping the student, so `fit` drives it and tfmot's
`UpdatePruningStep` finds the student's pruning wrappers through it.
"""

from __future__ import annotations

import math

import numpy as np

from .._tf import keras, tf


class LMTrainer(keras.Model):
    """The student's training step: CE on the data, plus KD when a teacher is given."""

    def __init__(self, student, teacher=None, alpha: float = 1.0, temperature: float = 1.0, sparse: bool = False,
                 **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.sparse = bool(sparse)
        self.alpha = float(alpha) if (teacher is not None or sparse) else 1.0
        self.temperature = float(temperature)
        if teacher is not None:
            teacher.trainable = False

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _loss(self, x, y, training, top_ids=None, top_logits=None):
        logits = self.student(x, training=training)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        if self.alpha >= 1.0 or (self.teacher is None and top_ids is None):
            return ce, ce, tf.constant(0.0)
        t = self.temperature
        if top_ids is not None:
            # k + 1 buckets: the teacher's top k tokens and "the rest", both sides normalised over the whole
            # vocabulary (top_logits holds the teacher's top-k log-probabilities at temperature t)
            log_p_s = tf.gather(tf.nn.log_softmax(logits / t, axis=-1), tf.cast(top_ids, tf.int32), batch_dims=2)
            log_p_t = tf.cast(top_logits, tf.float32)
            p_t = tf.exp(log_p_t)
            rest_t = tf.clip_by_value(1.0 - tf.reduce_sum(p_t, axis=-1), 1e-6, 1.0)
            rest_s = tf.clip_by_value(1.0 - tf.reduce_sum(tf.exp(log_p_s), axis=-1), 1e-6, 1.0)
            kl = tf.reduce_sum(p_t * (log_p_t - log_p_s), axis=-1) + rest_t * (tf.math.log(rest_t) - tf.math.log(rest_s))
            kl = tf.reduce_mean(kl)
            return self.alpha * ce + (1.0 - self.alpha) * t * t * kl, ce, kl
        teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
        p_t = tf.nn.softmax(teacher_logits / t, axis=-1)
        log_p_t = tf.nn.log_softmax(teacher_logits / t, axis=-1)
        log_p_s = tf.nn.log_softmax(logits / t, axis=-1)
        kl = tf.reduce_mean(tf.reduce_sum(p_t * (log_p_t - log_p_s), axis=-1))
        return self.alpha * ce + (1.0 - self.alpha) * t * t * kl, ce, kl

    def train_step(self, data):
        x, y = data[0], data[1]
        top = data[2:] if len(data) > 2 else (None, None)
        with tf.GradientTape() as tape:
            loss, ce, kl = self._loss(x, y, True, *top)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss, "ce": ce, "kl": kl}


def dataset(windows: np.ndarray, batch_size: int, seed: int, shuffle: bool = True, topk=None):
    parts = (windows[:, :-1], windows[:, 1:]) + (tuple(a[: len(windows)] for a in topk) if topk is not None else ())
    ds = tf.data.Dataset.from_tensor_slices(parts)
    if shuffle:
        ds = ds.shuffle(len(windows), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=len(windows) >= batch_size).prefetch(2)


def train(student, windows: np.ndarray, epochs: int, batch_size: int, learning_rate: float, seed: int = 0,
          teacher=None, alpha: float = 1.0, temperature: float = 1.0, callbacks=(), verbose: int = 0,
          warmup_fraction: float = 0.05, topk=None):
    """Train `student` in place on `windows` ([n, context + 1] ids); returns the per-epoch history.

    KD from `teacher` (on the fly) or from `topk` = (ids, logits) `[n, context, k]` of these windows."""
    steps = max(1, (len(windows) // batch_size) * epochs)
    warm = max(1, int(steps * warmup_fraction))
    schedule = _WarmupCosine(learning_rate, warm, steps)
    trainer = LMTrainer(student, None if topk is not None else teacher, alpha, temperature, sparse=topk is not None)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0))
    tf.random.set_seed(seed)
    hist = trainer.fit(dataset(windows, batch_size, seed, topk=topk), epochs=epochs, callbacks=list(callbacks),
                       verbose=verbose)
    return {k: [float(v) for v in vals] for k, vals in hist.history.items()}


class _WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak: float, warmup: int, total: int):
        self.peak, self.warmup, self.total = float(peak), int(warmup), int(total)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / self.warmup
        progress = tf.clip_by_value((step - self.warmup) / max(1, self.total - self.warmup), 0.0, 1.0)
        cos = self.peak * 0.5 * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup, warm, cos)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total}


def nll_sum(model, windows: np.ndarray, batch_size: int = 64, ignore_id: int | None = None) -> tuple[float, int]:
    """(sum of next-token NLL in nats, number of targets) of a Keras LM over `windows`; targets equal
    to `ignore_id` (padding) are not counted."""
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        w = windows[start:start + batch_size]
        logits = model(w[:, :-1], training=False)
        ce = tf.keras.losses.sparse_categorical_crossentropy(w[:, 1:], logits, from_logits=True)
        keep = np.ones(w[:, 1:].shape, bool) if ignore_id is None else w[:, 1:] != ignore_id
        total += float(np.sum(ce.numpy()[keep]))
        count += int(keep.sum())
    return total, count


def keras_perplexity(model, windows: np.ndarray, batch_size: int = 64) -> float:
    """exp(mean next-token CE) of a Keras LM over `windows` (for choosing settings on val)."""
    total, count = nll_sum(model, windows, batch_size)
    return float(math.exp(total / max(1, count)))


def teacher_topk(teacher, windows: np.ndarray, k: int, temperature: float = 1.0,
                 batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's k most likely next tokens at every position of `windows`, with their log-probabilities
    at `temperature` (normalised over the whole vocabulary): (ids uint16, log-probs float16)."""
    forward = tf.function(lambda x: tf.math.top_k(tf.nn.log_softmax(teacher(x, training=False) / temperature), k=k))
    ids, vals = [], []
    for start in range(0, len(windows), batch_size):
        top = forward(tf.constant(windows[start:start + batch_size, :-1]))
        vals.append(top.values.numpy().astype(np.float16))
        ids.append(top.indices.numpy().astype(np.uint16))
    return np.concatenate(ids), np.concatenate(vals)
