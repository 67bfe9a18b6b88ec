"""Knowledge distillation of a tf-keras student from cached teacher logits.

    L = alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))

Labels and teacher logits travel together as one target array `[label, logit_0, ..., logit_C-1]`,
so the student trains with plain `model.fit`: tfmot's pruning and QAT wrappers and their
callbacks work unchanged.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .config import DistillConfig
from ._tf import keras, tf


def pack_targets(labels: np.ndarray, teacher_logits: np.ndarray | None, num_labels: int) -> np.ndarray:
    """`[label, teacher logits...]` per row; without a teacher the logits are zeros (unused)."""
    labels = np.asarray(labels, np.float32).reshape(-1, 1)
    if teacher_logits is None:
        teacher_logits = np.zeros((len(labels), num_labels), np.float32)
    return np.concatenate([labels, np.asarray(teacher_logits, np.float32)], axis=1)


def distillation_loss(alpha: float, temperature: float) -> Callable:
    """Keras loss over packed targets (see `pack_targets`) and student logits."""
    t = float(temperature)

    def loss(y_packed, logits):
        labels = tf.cast(y_packed[:, 0], tf.int32)
        teacher = y_packed[:, 1:]
        ce = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        if alpha >= 1.0:
            return ce
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


def compile_for_distillation(model, config: DistillConfig, learning_rate: float | None = None,
                             alpha: float | None = None) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate or config.learning_rate),
        loss=distillation_loss(config.alpha if alpha is None else alpha, config.temperature),
        metrics=[label_accuracy],
    )


def fit(model, x: np.ndarray, targets: np.ndarray, epochs: int, batch_size: int, callbacks=(),
        validation: tuple[np.ndarray, np.ndarray] | None = None, verbose: int = 1, seed: int = 0):
    """Train with a shuffled tf.data pipeline; returns the Keras history."""
    keras.utils.set_random_seed(seed)
    ds = tf.data.Dataset.from_tensor_slices((x, targets)).shuffle(len(x), seed=seed).batch(batch_size)
    val = None
    if validation is not None:
        val = tf.data.Dataset.from_tensor_slices(validation).batch(512)
    return model.fit(ds, epochs=epochs, callbacks=list(callbacks), validation_data=val, verbose=verbose)
