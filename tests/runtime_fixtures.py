"""Tiny models for the runtime tests: built, trained and converted once per test session.

`runtime_models()` builds them into one temp folder (cached per process); the fixtures in the
`tests/test_runtime_*.py` modules wrap it. Layout:

    text/model.tflite (INT8) + vocab.txt + labels.txt + model_info.json, text/float.tflite,
    text/untrained.tflite (INT8, random weights: a model that misses gates),
    text/test.csv, text/test.jsonl, text/clinc.json, text/keras_model.h5
    arrays/model.tflite (INT8), arrays/float.tflite, arrays/test.npz
    flex/model.tflite (a Flex op the LiteRT interpreter cannot run)
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import tempfile
from pathlib import Path

import numpy as np

LABELS = ["greet", "weather", "music", "oos"]
KEYWORDS = {
    "greet": ["hello", "hi", "hey", "morning"],
    "weather": ["rain", "sunny", "forecast", "cold"],
    "music": ["song", "play", "album", "guitar"],
    "oos": ["banana", "tax", "car", "bank"],
}
FILLER = ["the", "a", "please", "me", "now", "is", "what", "today"]
SEQUENCE_LENGTH = 8


@dataclasses.dataclass(frozen=True)
class RuntimeModels:
    root: Path
    text_int8: Path
    text_float: Path
    text_untrained: Path
    text_keras: Path
    text_csv: Path
    text_jsonl: Path
    text_clinc: Path
    arrays_int8: Path
    arrays_float: Path
    arrays_npz: Path
    flex: Path | None


def _texts(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        lab = LABELS[i % len(LABELS)]
        words = [str(rng.choice(KEYWORDS[lab]))] + [str(w) for w in rng.choice(FILLER, size=int(rng.integers(1, 4)))]
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(lab)
    return texts, labels


def _build_text(folder: Path) -> None:
    from tflite_compress._tf import keras, tf
    from tflite_compress.config import ConvertConfig
    from tflite_compress.convert import to_float, to_int8
    from tflite_compress.tokenizer import PAD_TOKEN, UNK_TOKEN, TokenizerConfig, WordPieceTokenizer

    folder.mkdir(parents=True)
    vocab = [PAD_TOKEN, UNK_TOKEN] + sorted({w for ws in KEYWORDS.values() for w in ws} | set(FILLER))
    config = TokenizerConfig(vocabulary_size=len(vocab), sequence_length=SEQUENCE_LENGTH)
    tok = WordPieceTokenizer(vocab, config)
    train_x, train_y = _texts(400, 0)
    test_x, test_y = _texts(80, 1)
    x = tok.encode_batch(train_x)
    y = np.array([LABELS.index(v) for v in train_y])
    tf.keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((SEQUENCE_LENGTH,), dtype="int32"),
        keras.layers.Embedding(len(vocab), 8),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(len(LABELS)),
    ])
    untrained = keras.models.clone_model(model)
    (folder / "untrained.tflite").write_bytes(to_int8(untrained, x, ConvertConfig(calibration_samples=50)))
    model.compile(keras.optimizers.Adam(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    (folder / "model.tflite").write_bytes(to_int8(model, x, ConvertConfig(calibration_samples=100)))
    (folder / "float.tflite").write_bytes(to_float(model))
    model.save(folder / "keras_model.h5")
    tok.save(folder / "vocab.txt")
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    info = {"task": "text_classification", "labels_file": "labels.txt", "oos_label": "oos",
            "sequence_length": SEQUENCE_LENGTH, "tokenizer": config.to_info()}
    (folder / "model_info.json").write_text(json.dumps(info), encoding="utf-8")
    with open(folder / "test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows(zip(test_x, test_y))
    with open(folder / "test.jsonl", "w", encoding="utf-8") as f:
        for t, lab in zip(test_x, test_y):
            f.write(json.dumps({"utterance": t, "intent": lab}) + "\n")
    clinc = {"test": [[t, lab] for t, lab in zip(test_x, test_y) if lab != "oos"],
             "oos_test": [[t, lab] for t, lab in zip(test_x, test_y) if lab == "oos"]}
    (folder / "clinc.json").write_text(json.dumps(clinc), encoding="utf-8")


def _build_arrays(folder: Path) -> None:
    from tflite_compress._tf import keras, tf
    from tflite_compress.config import ConvertConfig
    from tflite_compress.convert import to_float, to_int8

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(3, 6)).astype(np.float32)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, size=n)
        return (centers[y] + rng.normal(0, 1, size=(n, 6))).astype(np.float32), y.astype(np.int64)

    x, y = sample(300)
    tf.keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.layers.Input((6,)),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3),
    ])
    model.compile(keras.optimizers.Adam(0.03), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=20, batch_size=32, verbose=0)
    (folder / "model.tflite").write_bytes(to_int8(model, x, ConvertConfig(calibration_samples=100)))
    (folder / "float.tflite").write_bytes(to_float(model))
    xt, yt = sample(60)
    np.savez(folder / "test.npz", x=xt, y=yt)


def _build_flex(folder: Path) -> Path | None:
    """A model whose graph keeps a TensorFlow (Flex) op; None if the converter will not make one."""
    from tflite_compress._tf import tf

    folder.mkdir(parents=True)

    class FlexModule(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
        def __call__(self, x):
            return tf.math.cumprod(x, axis=1)  # FlexCumprod: no builtin kernel

    mod = FlexModule()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([mod.__call__.get_concrete_function()], mod)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    try:
        content = conv.convert()
    except Exception:  # noqa: BLE001 - no Flex support in this converter build
        return None
    path = folder / "model.tflite"
    path.write_bytes(content)
    return path


@functools.lru_cache(maxsize=1)
def runtime_models() -> RuntimeModels:
    """Build every tiny model once per process (about 15 s on 2 cores)."""
    root = Path(tempfile.mkdtemp(prefix="tflc_runtime_models_"))
    _build_text(root / "text")
    _build_arrays(root / "arrays")
    flex = _build_flex(root / "flex")
    t, a = root / "text", root / "arrays"
    return RuntimeModels(
        root=root, text_int8=t / "model.tflite", text_float=t / "float.tflite", text_untrained=t / "untrained.tflite",
        text_keras=t / "keras_model.h5",
        text_csv=t / "test.csv", text_jsonl=t / "test.jsonl", text_clinc=t / "clinc.json",
        arrays_int8=a / "model.tflite", arrays_float=a / "float.tflite", arrays_npz=a / "test.npz", flex=flex,
    )
