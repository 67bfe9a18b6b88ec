"""`tflite-compress compress` end to end on tiny models and data: every data format, model format and
teacher kind, a recipe with stages off, and the bad inputs that must end with exit 2 and no output."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow)
from tflite_compress.cli import main
from tflite_compress.compress import CompressOptions, compress

TEMPLATES = {
    "lights_on": ["turn on the {r} lights", "switch the {r} light on", "lights on in the {r} please"],
    "lights_off": ["turn off the {r} lights", "switch the {r} light off", "lights off in the {r} please"],
    "order_food": ["order {f} for dinner", "i want {f} delivered", "get me some {f}"],
    "play_music": ["play {m}", "put on {m} please", "i want to hear {m}"],
}
FILL = {"r": ["kitchen", "bedroom", "office", "garage"], "f": ["pizza", "sushi", "ramen", "tacos"],
        "m": ["jazz", "lofi beats", "the beatles", "classical music"]}
OUTPUTS = {"labels.txt", "model_info.json", "model_int8.tflite", "recipe.json", "report.html", "report.json"}


def rows(n_per_intent: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for intent, temps in TEMPLATES.items():
        for _ in range(n_per_intent):
            t = rng.choice(temps)
            out.append((t.format(r=rng.choice(FILL["r"]), f=rng.choice(FILL["f"]), m=rng.choice(FILL["m"])), intent))
    rng.shuffle(out)
    return out


TINY_RECIPE = {
    "name": "tiny-test",
    "tokenizer": {"vocabulary_size": 200, "sequence_length": 10, "min_frequency": 1},
    "teacher": {"sequence_length": 16, "batch_size": 64, "head_epochs": 20},
    "student": {"embedding_dim": 8, "filters": 8, "kernel_sizes": [1, 2], "hidden_units": 16, "dropout": 0.0},
    "distill": {"epochs": 3, "batch_size": 16, "learning_rate": 0.01},
    "prune": {"epochs": 2, "learning_rate": 0.001},
    "qat": {"epochs": 1, "learning_rate": 0.0005},
    "convert": {"calibration_samples": 32},
}


def quiet(_msg):
    pass


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("compress_data")
    with open(d / "train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utterance", "intent"])
        w.writerows(rows(30, 0))
    with open(d / "eval.jsonl", "w") as f:
        for text, label in rows(8, 1):
            f.write(json.dumps({"text": text, "label": label}) + "\n")
    with open(d / "eval_other_labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["utterance", "intent"])
        w.writerows(rows(3, 2) + [("what's the weather", "weather")])
    (d / "tiny.json").write_text(json.dumps(TINY_RECIPE))
    for name, recipe in (("stages_off.json", dict(TINY_RECIPE, name="distill-only",
                                                   stages={"distill": True, "prune": False, "qat": False})),):
        (d / name).write_text(json.dumps(recipe))

    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(x))
    tr, ev = idx[:400], idx[400:560]
    names = np.array([str(i) for i in range(10)])
    np.savez(d / "digits_train.npz", x=x[tr], y=y[tr], labels=names)
    np.savez(d / "digits_eval.npz", x=x[ev], y=y[ev], labels=names)
    np.savez(d / "digits_flat.npz", x=x[ev].reshape(len(ev), -1), y=y[ev])
    return {p.name: p for p in d.iterdir()}


def tiny_bert_preset(path: Path) -> Path:
    """A 1-layer BERT preset folder (random weights): the teacher kind "preset", offline."""
    import keras_nlp

    words = sorted({w for temps in TEMPLATES.values() for t in temps for w in t.replace("{", " ").replace("}", " ").split()}
                   | {w for v in FILL.values() for s in v for w in s.split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tok = keras_nlp.models.BertTokenizer(vocabulary=vocab)
    backbone = keras_nlp.models.BertBackbone(vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
                                             intermediate_dim=32, max_sequence_length=32)
    backbone.save_to_preset(str(path))
    tok.save_to_preset(str(path))
    return path


def digits_cnn(kind: str, path: Path, x, y, extra_layers=(), epochs=8) -> Path:
    """A small CNN trained on digits, saved with Keras 3 ("keras3") or tf-keras ("tf-keras")."""
    if kind == "keras3":
        import keras
    else:
        from tflite_compress._tf import keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              *extra_layers, keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(path)
    return path


@pytest.fixture(scope="module")
def text_run(files, tmp_path_factory):
    """CSV train + JSONL eval, built-in student, a BERT preset teacher, through the CLI."""
    d = tmp_path_factory.mktemp("text_run")
    preset = tiny_bert_preset(d / "bert_preset")
    out = d / "out"
    res = CliRunner().invoke(main, ["compress", "--train", str(files["train.csv"]), "--eval", str(files["eval.jsonl"]),
                                    "--teacher", str(preset), "--recipe", str(files["tiny.json"]),
                                    "--cache-dir", str(d / "cache"), "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output
    return out, json.loads(res.stdout), d


def test_text_csv_jsonl_builtin_student_preset_teacher(text_run):
    out, report, _ = text_run
    assert OUTPUTS | {"vocab.txt"} == {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    st = report["stages"]
    assert {"teacher", "float", "pruned", "qat", "int8"} <= set(st)
    assert st["teacher"]["description"].startswith("BERT preset bert_preset")
    assert st["int8"]["float_ops"] == [] and st["int8"]["input"]["dtype"] == "int32"
    assert st["int8"]["output"]["dtype"] == "int8"
    assert report["compress"]["teacher"].startswith("preset:")
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["name"] == "tiny-test" and recipe["teacher"]["kind"] == "preset"
    assert "drop_points" in report["summary"]


def test_keras3_text_model_with_vocab_and_tflite_teacher(text_run, files, tmp_path):
    import keras

    out, _, d = text_run
    vocab = (out / "vocab.txt").read_text().splitlines()
    labels = (out / "labels.txt").read_text().splitlines()
    from tflite_compress.data import load_text_file
    from tflite_compress.tokenizer import TokenizerConfig, WordPieceTokenizer

    train = load_text_file(files["train.csv"])
    x = WordPieceTokenizer(vocab, TokenizerConfig(sequence_length=10)).encode_batch(train.texts)
    y = np.array([labels.index(lab) for lab in train.labels])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(len(vocab), 8),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(len(labels))])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    model.save(tmp_path / "user.keras")
    result = compress(CompressOptions(
        train=files["train.csv"], eval=files["eval.jsonl"], model=str(tmp_path / "user.keras"),
        vocab=out / "vocab.txt", labels=out / "labels.txt", teacher=str(out / "model_int8.tflite"),
        recipe=str(files["tiny.json"]), cache_dir=d / "cache", out_dir=tmp_path / "out",
        fit_epochs_to_data=False), log=quiet, verbose=0)
    r = result.report
    assert r["compress"]["model_format"] == "keras3" and r["compress"]["rebuilt_from_keras3"]
    assert r["stages"]["teacher"]["description"] == "TFLite model model_int8.tflite"
    assert {"input", "float", "pruned", "qat", "int8"} <= set(r["stages"])
    assert "drop_points_vs_input" in r["summary"] and r["stages"]["int8"]["float_ops"] == []
    assert json.loads((tmp_path / "out" / "model_info.json").read_text())["sequence_length"] == 10
    # The resolved recipe, fed back without --teacher, repeats the run with the same teacher (cached).
    again = compress(CompressOptions(
        train=files["train.csv"], eval=files["eval.jsonl"], model=str(tmp_path / "user.keras"),
        vocab=out / "vocab.txt", labels=out / "labels.txt", recipe=str(tmp_path / "out" / "recipe.json"),
        cache_dir=d / "cache", out_dir=tmp_path / "again", fit_epochs_to_data=False), log=quiet, verbose=0)
    assert again.report["stages"]["teacher"]["cache_hit"] is True
    assert again.recipe == result.recipe


def test_npz_tf_keras_h5_model_is_its_own_teacher(files, tmp_path):
    z = np.load(files["digits_train.npz"])
    model = digits_cnn("tf-keras", tmp_path / "cnn.h5", z["x"], z["y"])
    result = compress(CompressOptions(
        train=files["digits_train.npz"], eval=files["digits_eval.npz"], model=str(model),
        recipe=str(files["tiny.json"]), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out",
        fit_epochs_to_data=False), log=quiet, verbose=0)
    r = result.report
    assert r["compress"]["model_format"] == "h5" and r["recipe"] == "tiny-test"
    assert r["stages"]["teacher"]["description"] == "Keras model cnn.h5"  # self-distillation
    assert r["stages"]["pruned"]["sparsity"] >= 0.45
    int8 = r["stages"]["int8"]
    assert int8["input"]["dtype"] == "int8" and int8["output"]["dtype"] == "int8" and int8["float_ops"] == []
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(int8["op_counts"])
    assert r["summary"]["input_accuracy"] > 0.7 and abs(r["summary"]["drop_points_vs_input"]) < 10
    assert (tmp_path / "out" / "labels.txt").read_text().split() == [str(i) for i in range(10)]
    # The runtime harness reads the folder back: same accuracy in the interpreter.
    res = CliRunner().invoke(main, ["eval", str(result.model_path), "--data", str(files["digits_eval.npz"]), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["accuracy"] == pytest.approx(r["summary"]["int8_accuracy"])


def test_npz_keras3_teacher_and_recipe_with_stages_off(files, tmp_path):
    z = np.load(files["digits_train.npz"])
    teacher = digits_cnn("keras3", tmp_path / "teacher.keras", z["x"], z["y"], epochs=10)
    student = digits_cnn("tf-keras", tmp_path / "student.keras", z["x"], z["y"], epochs=2)
    result = compress(CompressOptions(
        train=files["digits_train.npz"], eval=files["digits_eval.npz"], model=str(student), teacher=str(teacher),
        recipe=str(files["stages_off.json"]), calibration=files["digits_eval.npz"], calibration_samples=16,
        cache_dir=tmp_path / "cache", out_dir=tmp_path / "out"), log=quiet, verbose=0)
    r = result.report
    assert r["compress"]["model_format"] == "tf-keras"
    assert r["stages"]["teacher"]["description"] == "Keras model teacher.keras"
    assert "pruned" not in r["stages"] and "qat" not in r["stages"]  # switched off: post-training quantization
    assert r["stages"]["int8"]["float_ops"] == []
    recipe = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert recipe["stages"] == {"distill": True, "prune": False, "qat": False}
    assert recipe["convert"]["calibration_samples"] == 16


def test_npz_savedmodel_teacher_from_keras3_export(files, tmp_path):
    """A SavedModel folder (Keras 3 `model.export`) as --teacher: its serving signature gives the logits."""
    import keras

    z = np.load(files["digits_train.npz"])
    teacher_file = digits_cnn("keras3", tmp_path / "teacher.keras", z["x"], z["y"], epochs=6)
    teacher = keras.saving.load_model(teacher_file)
    teacher.export(str(tmp_path / "teacher_sm"), verbose=False)
    student = digits_cnn("tf-keras", tmp_path / "student.keras", z["x"], z["y"], epochs=1)
    res = CliRunner().invoke(main, ["compress", str(student), "--train", str(files["digits_train.npz"]),
                                    "--eval", str(files["digits_eval.npz"]), "--teacher", str(tmp_path / "teacher_sm"),
                                    "--recipe", str(files["stages_off.json"]), "--cache-dir", str(tmp_path / "cache"),
                                    "-o", str(tmp_path / "out"), "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.stdout)["stages"]
    assert st["teacher"]["description"] == "SavedModel teacher_sm"
    assert st["teacher"]["parameters"] == teacher.count_params()
    # The teacher's logits are the Keras model's own: same test accuracy as predicting with it.
    ev = np.load(files["digits_eval.npz"])
    own = float(np.mean(teacher.predict(ev["x"], verbose=0).argmax(1) == ev["y"]))
    assert st["teacher"]["test"]["accuracy"] == pytest.approx(own)


def test_lambda_teacher_needs_unsafe(files, tmp_path):
    import keras

    z = np.load(files["digits_train.npz"])
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                keras.layers.Lambda(lambda t: t * 2.0), keras.layers.Dense(10)])
    teacher.save(tmp_path / "lambda_teacher.keras")
    student = digits_cnn("tf-keras", tmp_path / "student.keras", z["x"], z["y"], epochs=1)
    args = ["compress", str(student), "--train", str(files["digits_train.npz"]), "--eval", str(files["digits_eval.npz"]),
            "--teacher", str(tmp_path / "lambda_teacher.keras"), "--recipe", str(files["stages_off.json"]),
            "--cache-dir", str(tmp_path / "cache")]
    refused = CliRunner().invoke(main, args + ["-o", str(tmp_path / "refused")])
    assert refused.exit_code == 2 and "--unsafe" in refused.stderr.strip().splitlines()[-1], refused.output
    assert not (tmp_path / "refused").exists()
    trusted = CliRunner().invoke(main, args + ["-o", str(tmp_path / "trusted"), "--unsafe"])
    assert trusted.exit_code == 0, trusted.output


def test_text_npy_logits_teacher_bag_student(files, tmp_path):
    from tflite_compress.data import load_text_file

    train = load_text_file(files["train.csv"])
    names = sorted(set(train.labels))
    logits = np.full((len(train), len(names)), -2.0, np.float32)
    logits[np.arange(len(train)), [names.index(lab) for lab in train.labels]] = 3.0
    np.save(tmp_path / "logits.npy", logits)
    result = compress(CompressOptions(
        train=files["train.csv"], eval=files["eval.jsonl"], model="bag", teacher=str(tmp_path / "logits.npy"),
        recipe=str(files["stages_off.json"]), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out"),
        log=quiet, verbose=0)
    r = result.report
    assert r["stages"]["teacher"]["description"] == "precomputed logits logits.npy"
    assert "train" in r["stages"]["teacher"]  # figures on train: no eval logits exist
    assert r["stages"]["int8"]["float_ops"] == []
    bad = tmp_path / "short.npy"
    np.save(bad, logits[:5])
    res = CliRunner().invoke(main, ["compress", "--train", str(files["train.csv"]), "--teacher", str(bad),
                                    "--recipe", str(files["tiny.json"]), "-o", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "give --eval too" in res.output
    res = CliRunner().invoke(main, ["compress", "--train", str(files["train.csv"]), "--eval", str(files["eval.jsonl"]),
                                    "--teacher", str(bad), "--recipe", str(files["tiny.json"]), "-o", str(tmp_path / "bad")])
    assert res.exit_code == 2 and "teacher logits have shape (5, 4), expected (120, 4)" in res.output
    assert not (tmp_path / "bad").exists()


def test_keras3_layer_without_twin_goes_post_training(files, tmp_path):
    import keras

    z = np.load(files["digits_train.npz"])
    # RandomInvert: a Keras 3 layer with no tf-keras twin (identity at inference, so the file is integer-only).
    model = digits_cnn("keras3", tmp_path / "inv.keras", z["x"], z["y"], [keras.layers.RandomInvert()], epochs=4)
    res = CliRunner().invoke(main, ["compress", str(model), "--train", str(files["digits_train.npz"]),
                                    "--eval", str(files["digits_eval.npz"]), "--recipe", str(files["tiny.json"]),
                                    "--cache-dir", str(tmp_path / "cache"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "skipped distill, prune, qat: " in res.stdout and "RandomInvert" in res.stdout
    r = json.loads((tmp_path / "out" / "report.json").read_text())
    assert r["compress"]["post_training_only"] and set(r["compress"]["skipped"]) == {"distill", "prune", "qat"}
    assert "pruned" not in r["stages"] and "qat" not in r["stages"]
    assert r["stages"]["int8"]["input"]["dtype"] == "int8"


def custom_layer_model(src: Path, dst: Path) -> Path:
    """A copy of a Keras 3 .keras file whose Conv2D claims to be a custom layer nobody can import."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                cfg = json.loads(data)
                cfg["config"]["layers"][1].update(module="my_company.layers", class_name="FancyNorm",
                                                  registered_name="my_company>FancyNorm")
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    return dst


def _cli_error(args: list[str], out: Path) -> str:
    res = CliRunner().invoke(main, ["compress", *args, "-o", str(out)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and "Traceback" not in res.output, res.output
    return lines[-1]


def test_bad_inputs_exit_2_with_one_line_and_leave_out_dir_alone(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier run")
    tiny = ["--recipe", str(files["tiny.json"])]
    msg = _cli_error(["--train", str(files["train.csv"]), "--text-column", "sentence", *tiny], out)
    assert "no text column 'sentence'; columns found: utterance, intent" in msg
    msg = _cli_error(["--train", str(files["train.csv"]), "--eval", str(files["eval_other_labels.csv"]),
                      "--teacher", "none", *tiny], out)
    assert "label set differs from train" in msg and "'weather'" in msg
    msg = _cli_error(["--train", str(files["train.csv"]), "--oos-label", "nonsense", "--teacher", "none", *tiny], out)
    assert "--oos-label 'nonsense': no such label" in msg
    msg = _cli_error(["--train", str(files["train.csv"]), "--target-oos-recall", "1.5", *tiny], out)
    assert "--target-oos-recall" in msg
    z = np.load(files["digits_train.npz"])
    cnn = digits_cnn("keras3", tmp_path / "cnn.keras", z["x"][:64], z["y"][:64], epochs=1)
    msg = _cli_error([str(cnn), "--train", str(files["digits_flat.npz"]), *tiny], out)
    assert "input shape (None, 8, 8, 1) does not fit the data rows of shape (64,)" in msg
    msg = _cli_error([str(cnn), "--train", str(files["train.csv"]), "--vocab", str(files["tiny.json"]), *tiny], out)
    assert "--vocab" in msg  # not a vocabulary: [PAD], [UNK] first
    msg = _cli_error([str(custom_layer_model(cnn, tmp_path / "custom.keras")), "--train",
                      str(files["digits_train.npz"]), *tiny], out)
    assert "unsupported layer FancyNorm (module my_company.layers)" in msg
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
