"""Student model builders (tf-keras, so that tfmot can wrap them)."""

from __future__ import annotations

from ._tf import keras
from .config import StudentConfig
from .errors import InputError


def build_student(
    config: StudentConfig, vocab_size: int, sequence_length: int, num_labels: int, seed: int = 0
) -> "keras.Model":
    """Build a student with int32 token-id input `token_ids` and float logits output."""
    keras.utils.set_random_seed(seed)
    ids = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")(ids)
    if config.family == "cnn":
        branches = [
            keras.layers.GlobalMaxPooling1D(name=f"max_pool_k{k}")(
                keras.layers.Conv1D(config.filters, k, padding="same", activation="relu", name=f"conv_k{k}")(x)
            )
            for k in config.kernel_sizes
        ]
        x = branches[0] if len(branches) == 1 else keras.layers.Concatenate(name="concat")(branches)
    elif config.family == "bag":
        x = keras.layers.GlobalAveragePooling1D(name="mean_pool")(x)
    else:
        raise InputError(f"student family {config.family!r} is not one of: cnn, bag")
    x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    hidden = keras.layers.Dense(config.hidden_units, activation="relu", name="hidden")(x)
    logits = keras.layers.Dense(num_labels, name="logits")(hidden)
    return keras.Model(ids, logits, name=f"student_{config.family}")
