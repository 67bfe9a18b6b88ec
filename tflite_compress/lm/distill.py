"""Training the decoder: on the data alone (CE) or distilled from a frozen teacher (CE + KD).

L = alpha * CE(next token) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T)),
averaged over every token of every window. Teacher logits are computed on the fly inside the
training step (one teacher forward per batch): a full-vocabulary logit cache for 400k tokens
would be 100k x vocab floats (400 MB at vocab 1,000, per epoch's worth of windows), and a top-k cache changes the loss.

`LMTrainer` is a `keras.Model` wrapping the student, so `fit` drives it and tfmot's
`UpdatePruningStep` finds the student's pruning wrappers through it.
"""

from __future__ import annotations

import math

import numpy as np

from .._tf import keras, tf


class LMTrainer(keras.Model):
    """The student's training step: CE on the data, plus KD when a teacher is given."""

    def __init__(self, student, teacher=None, alpha: float = 1.0, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.alpha = float(alpha) if teacher is not None else 1.0
        self.temperature = float(temperature)
        if teacher is not None:
            teacher.trainable = False

    def call(self, x, training=False):
        return self.student(x, training=training)

    def _loss(self, x, y, training):
        logits = self.student(x, training=training)
        ce = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True))
        if self.teacher is None or self.alpha >= 1.0:
            return ce, ce, tf.constant(0.0)
        t = self.temperature
        teacher_logits = tf.stop_gradient(self.teacher(x, training=False))
        p_t = tf.nn.softmax(teacher_logits / t, axis=-1)
        log_p_t = tf.nn.log_softmax(teacher_logits / t, axis=-1)
        log_p_s = tf.nn.log_softmax(logits / t, axis=-1)
        kl = tf.reduce_mean(tf.reduce_sum(p_t * (log_p_t - log_p_s), axis=-1))
        return self.alpha * ce + (1.0 - self.alpha) * t * t * kl, ce, kl

    def train_step(self, data):
        x, y = data
        with tf.GradientTape() as tape:
            loss, ce, kl = self._loss(x, y, True)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {"loss": loss, "ce": ce, "kl": kl}


def dataset(windows: np.ndarray, batch_size: int, seed: int, shuffle: bool = True):
    ds = tf.data.Dataset.from_tensor_slices((windows[:, :-1], windows[:, 1:]))
    if shuffle:
        ds = ds.shuffle(len(windows), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size, drop_remainder=len(windows) >= batch_size).prefetch(2)


def train(student, windows: np.ndarray, epochs: int, batch_size: int, learning_rate: float, seed: int = 0,
          teacher=None, alpha: float = 1.0, temperature: float = 1.0, callbacks=(), verbose: int = 0,
          warmup_fraction: float = 0.05):
    """Train `student` in place on `windows` ([n, context + 1] ids); returns the per-epoch history."""
    steps = max(1, (len(windows) // batch_size) * epochs)
    warm = max(1, int(steps * warmup_fraction))
    schedule = _WarmupCosine(learning_rate, warm, steps)
    trainer = LMTrainer(student, teacher, alpha, temperature)
    trainer.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0))
    tf.random.set_seed(seed)
    hist = trainer.fit(dataset(windows, batch_size, seed), epochs=epochs, callbacks=list(callbacks), verbose=verbose)
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


def keras_perplexity(model, windows: np.ndarray, batch_size: int = 64) -> float:
    """exp(mean next-token CE) of a Keras LM over `windows` (for choosing settings on val)."""
    total, count = 0.0, 0
    for start in range(0, len(windows), batch_size):
        w = windows[start:start + batch_size]
        logits = model(w[:, :-1], training=False)
        ce = tf.keras.losses.sparse_categorical_crossentropy(w[:, 1:], logits, from_logits=True)
        total += float(tf.reduce_sum(ce))
        count += int(np.prod(w[:, 1:].shape))
    return float(math.exp(total / max(1, count)))
