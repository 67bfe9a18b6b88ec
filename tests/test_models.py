"""User model files: Keras 3 rebuilt as tf-keras, safety checks, fit checks, recipes. No training here."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow)
from tflite_compress.errors import InputError
from tflite_compress.models import check_fits, load_model, strip_final_softmax


def quiet(_msg):
    pass


def keras3_text_model(path, vocab_size=50, seq=8, classes=3, softmax=True):
    import keras

    keras.utils.set_random_seed(0)
    ids = keras.Input((seq,), dtype="int32", name="ids")
    x = keras.layers.Embedding(vocab_size, 8)(ids)
    a = keras.layers.GlobalMaxPooling1D()(keras.layers.Conv1D(4, 2, padding="same", activation="relu")(x))
    b = keras.layers.GlobalAveragePooling1D()(x)
    h = keras.layers.Dense(8, activation="relu", kernel_regularizer=keras.regularizers.L2(1e-4))(
        keras.layers.Concatenate()([a, b]))
    out = keras.layers.Dense(classes, activation="softmax" if softmax else None)(h)
    keras.Model(ids, out).save(path)
    return path


def keras3_cnn(path, extra=None):
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.BatchNormalization()]
    layers += extra or []
    layers += [keras.layers.Flatten(), keras.layers.Dense(10)]
    keras.Sequential(layers).save(path)
    return path


def test_keras3_functional_rebuilt_equal_and_softmax_stripped(tmp_path):
    loaded = load_model(keras3_text_model(tmp_path / "m.keras"), log=quiet)
    assert loaded.file_format == "keras3" and loaded.rebuilt_from_keras3 and loaded.trainable_by_tfmot
    from tflite_compress._tf import keras

    assert isinstance(loaded.model, keras.Model) and loaded.max_abs_diff < 1e-5
    ids = np.random.default_rng(0).integers(0, 50, (5, 8)).astype(np.int32)
    probs = loaded.model.predict(ids, verbose=0)
    stripped = strip_final_softmax(loaded, log=quiet)
    logits = stripped.model.predict(ids, verbose=0)
    assert stripped.softmax_removed
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(axis=1, keepdims=True), atol=1e-5)
    check_fits(stripped, "text", 3, vocab_size=40)
    with pytest.raises(InputError, match="outputs 3 scores but the data has 4 labels"):
        check_fits(stripped, "text", 4, vocab_size=40)
    with pytest.raises(InputError, match="fewer than the 60 tokens"):
        check_fits(stripped, "text", 3, vocab_size=60)
    with pytest.raises(InputError, match="does not fit the data rows"):
        check_fits(stripped, "arrays", 3, row_shape=(8, 8, 1))


def test_keras3_sequential_cnn_rebuilt_as_functional(tmp_path):
    loaded = load_model(keras3_cnn(tmp_path / "cnn.keras"), log=quiet)
    assert loaded.rebuilt_from_keras3 and loaded.input_shape == (None, 8, 8, 1)
    assert type(loaded.model.layers[0]).__name__ == "InputLayer"  # Functional: QAT sees the input layer
    with pytest.raises(InputError, match=r"input shape \(None, 8, 8, 1\) does not fit the data rows of shape \(64,\)"):
        check_fits(loaded, "arrays", 10, row_shape=(64,))
    with pytest.raises(InputError, match="does not fit text data"):
        check_fits(loaded, "text", 10, vocab_size=10)


def test_keras3_layer_without_twin_takes_post_training_path(tmp_path):
    import keras

    loaded = load_model(keras3_cnn(tmp_path / "rms.keras", [keras.layers.RMSNormalization()]), log=quiet)
    assert not loaded.trainable_by_tfmot and loaded.file_format == "keras3"
    assert "RMSNormalization" in loaded.notes[0] and "pruning, QAT and distillation skipped" in loaded.notes[0]
    assert isinstance(loaded.model, keras.Model)  # the Keras 3 model itself, for post-training quantization


def test_unknown_layer_class_is_a_clear_error(tmp_path):
    src = keras3_cnn(tmp_path / "cnn.keras")
    bad = tmp_path / "custom.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                cfg = json.loads(data)
                layer = cfg["config"]["layers"][2]
                layer.update(module="my_company.layers", class_name="FancyNorm", registered_name="my_company>FancyNorm")
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    with pytest.raises(InputError, match="unsupported layer.*FancyNorm"):
        load_model(bad, log=quiet)


def test_lambda_and_pickles_refused_unless_unsafe(tmp_path):
    import keras
    from tflite_compress._tf import keras as tfk

    k3 = tmp_path / "lambda3.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t * 2), keras.layers.Dense(2)]).save(k3)
    with pytest.raises(InputError, match="refused to load Lambda layer .*--unsafe"):
        load_model(k3, log=quiet)
    assert load_model(k3, unsafe=True, log=quiet).model is not None
    h5 = tmp_path / "lambda2.h5"
    tfk.Sequential([tfk.Input((4,)), tfk.layers.Lambda(lambda t: t * 2), tfk.layers.Dense(2)]).save(h5)
    with pytest.raises(InputError, match="refused to load Lambda layer"):
        load_model(h5, log=quiet)
    pkl = tmp_path / "model.pkl"
    pkl.write_bytes(b"\x80\x04N.")
    with pytest.raises(InputError, match="pickled models are not loaded"):
        load_model(pkl, log=quiet)


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
def test_tf_keras_formats_load(tmp_path, fmt):
    from tflite_compress._tf import keras as tfk

    model = tfk.Sequential([tfk.Input((6,)), tfk.layers.Dense(4, activation="relu"), tfk.layers.Dense(3)])
    path = tmp_path / ("m" if fmt == "savedmodel" else f"m.{fmt}")
    model.save(path) if fmt != "savedmodel" else model.save(path, save_format="tf")
    loaded = load_model(path, log=quiet)
    assert loaded.trainable_by_tfmot and not loaded.rebuilt_from_keras3
    x = np.ones((2, 6), np.float32)
    np.testing.assert_allclose(loaded.model.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_builtin_recipes_round_trip_and_unknown_name(tmp_path):
    from tflite_compress.config import Recipe
    from tflite_compress.recipes import builtin_names, load_recipe

    names = builtin_names()
    assert {"int8-default", "int8-pruned-50", "ptq-only"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.name == name and Recipe.from_dict(recipe.to_dict()) == recipe
    assert load_recipe("ptq-only").stages.qat is False
    assert load_recipe(None) == Recipe()
    with pytest.raises(InputError, match="no such built-in recipe"):
        load_recipe("int8-magic")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "mine", "stages": {"prune": False}}))
    assert load_recipe(str(path)).stages.prune is False
