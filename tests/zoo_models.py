"""The kinds of models users bring, built with Keras 3 (`keras`) or tf-keras, and the data they read.

Used by tests/test_zoo.py (tiny sizes) and benchmarks/zoo.py (the two models of issue 17 at their
size). Vision models read 8x8x1 images (scikit-learn's digits); text models read int32 token ids
from the suite's WordPiece tokenizer (padding at the end, id 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VISION_KINDS = ("mlp", "cnn", "mobilenet", "resnet")
TEXT_KINDS = ("lstm", "gru", "bilstm", "transformer")


def keras_module(flavour: str):
    """`keras` (Keras 3) for "keras3", tf-keras for "tf-keras"."""
    if flavour == "keras3":
        import keras

        return keras
    from tflite_compress._tf import keras

    return keras


def digits(n_train: int, n_eval: int, seed: int = 0):
    """scikit-learn's 8x8 digits as float32 (n, 8, 8, 1) in [0, 1]: (x_train, y_train, x_eval, y_eval)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    idx = np.random.default_rng(seed).permutation(len(x))
    tr, ev = idx[:n_train], idx[n_train:n_train + n_eval]
    return x[tr], y[tr], x[ev], y[ev]


def _vision_features(L, kind: str, inp, width: int):
    """The body of one vision kind, from the 8x8x1 input to a feature vector."""
    if kind == "mlp":
        x = L.Flatten()(inp)
        return L.Dense(4 * width, activation="relu")(x)
    if kind == "cnn":
        x = L.Conv2D(width, 3, padding="same", activation="relu")(inp)
        x = L.MaxPooling2D(2)(x)
        x = L.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
        return L.GlobalAveragePooling2D()(x)
    if kind == "mobilenet":
        # Conv2D stem, DepthwiseConv2D + BN + ReLU6 + 1x1 Conv2D + BN blocks, a residual Add.
        x = L.Conv2D(width, 3, padding="same", use_bias=False)(inp)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        for i, (channels, stride) in enumerate(((2 * width, 2), (2 * width, 1))):
            y = L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)
            y = L.BatchNormalization()(y)
            y = L.ReLU(6.0)(y)
            y = L.Conv2D(channels, 1, use_bias=False)(y)
            y = L.BatchNormalization()(y)
            if i == 1:
                x = L.Add()([x, y])  # residual: same shape as the block's input
            else:
                x = L.ReLU(6.0)(y)
        x = L.GlobalAveragePooling2D()(x)
        return L.Dropout(0.1)(x)
    if kind == "resnet":
        x = L.Conv2D(width, 3, padding="same", use_bias=False)(inp)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
        y = L.Conv2D(width, 3, padding="same", use_bias=False)(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU()(y)
        y = L.Conv2D(width, 3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization()(y)
        x = L.ReLU()(L.Add()([x, y]))
        x = L.AveragePooling2D(2)(x)
        return L.GlobalAveragePooling2D()(x)
    raise ValueError(f"unknown vision kind {kind!r}")


def vision_model(keras, kind: str, num_classes: int = 10, width: int = 8):
    """An 8x8x1 image classifier of one kind; `width` scales the channels. kind "all": every kind
    side by side on the same input, their features concatenated (one model, one compress run)."""
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    kinds = VISION_KINDS if kind == "all" else (kind,)
    feats = [_vision_features(L, k, inp, width) for k in kinds]
    x = feats[0] if len(feats) == 1 else L.Concatenate()(feats)
    return keras.Model(inp, L.Dense(num_classes, activation="softmax")(x), name=kind)


def _text_features(keras, kind: str, inp, vocab_size: int, embedding_dim: int, units: int, mask_zero: bool):
    """Embedding and the body of one text kind, from token ids to a feature vector."""
    L = keras.layers
    x = L.Embedding(vocab_size, embedding_dim, mask_zero=mask_zero and kind != "transformer")(inp)
    if kind == "lstm":
        return L.LSTM(units)(x)
    if kind == "gru":
        return L.GRU(units)(x)
    if kind == "bilstm":
        return L.Bidirectional(L.LSTM(units))(x)
    if kind == "transformer":
        a = L.MultiHeadAttention(num_heads=2, key_dim=embedding_dim // 2)(x, x)
        x = L.LayerNormalization()(L.Add()([x, a]))
        f = L.Dense(2 * embedding_dim, activation="relu")(x)
        f = L.Dense(embedding_dim)(f)
        x = L.LayerNormalization()(L.Add()([x, f]))
        return L.GlobalAveragePooling1D()(x)
    raise ValueError(f"unknown text kind {kind!r}")


def text_model(keras, kind: str, vocab_size: int, sequence_length: int, num_classes: int, units: int = 16,
               embedding_dim: int = 16, mask_zero: bool = True):
    """A token-id classifier of one kind: Embedding -> LSTM/GRU/Bidirectional(LSTM)/1 transformer block -> Dense.
    kind "all": every kind side by side on the same token ids (each with its own Embedding), their
    features concatenated."""
    L = keras.layers
    inp = keras.Input((sequence_length,), dtype="int32")
    kinds = TEXT_KINDS if kind == "all" else (kind,)
    feats = [_text_features(keras, k, inp, vocab_size, embedding_dim, units, mask_zero) for k in kinds]
    x = feats[0] if len(feats) == 1 else L.Concatenate()(feats)
    return keras.Model(inp, L.Dense(num_classes)(x), name=kind)


def train_and_save(model, keras, x, y, path: Path, epochs: int, batch_size: int = 32, learning_rate: float = 0.01,
                   logits: bool = False) -> Path:
    model.compile(keras.optimizers.Adam(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=logits), metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    model.save(path)
    return path


def text_data(train_rows, eval_rows, vocab_size: int, sequence_length: int):
    """(vocab, label_names, x_train, y_train, x_eval, y_eval) from (text, label) rows, with the
    suite's tokenizer (the vocabulary learned on the train texts)."""
    from tflite_compress.config import TokenizerConfig
    from tflite_compress.tokenizer import WordPieceTokenizer, learn_vocabulary

    cfg = TokenizerConfig(vocabulary_size=vocab_size, sequence_length=sequence_length, min_frequency=1)
    texts = [t for t, _ in train_rows]
    vocab = learn_vocabulary(texts, cfg)
    tok = WordPieceTokenizer(vocab, cfg)
    names = sorted({lab for _, lab in train_rows})
    if "oos" in names:
        names = [n for n in names if n != "oos"] + ["oos"]
    ids = {n: i for i, n in enumerate(names)}
    return (vocab, names, tok.encode_batch(texts), np.array([ids[lab] for _, lab in train_rows]),
            tok.encode_batch([t for t, _ in eval_rows]), np.array([ids[lab] for _, lab in eval_rows]))


def write_text_files(folder: Path, vocab, names, train_rows, eval_rows) -> dict[str, Path]:
    """vocab.txt, labels.txt, train.jsonl, eval.jsonl in `folder`."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (folder / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    for split, rows in (("train", train_rows), ("eval", eval_rows)):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for text, label in rows:
                f.write(json.dumps({"text": text, "label": label}) + "\n")
    return {p.stem: p for p in folder.iterdir()}
