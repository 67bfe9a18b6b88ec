"""Bad input ends in a one-line error naming the file or option, and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from tflite_compress.cli import main


def _run(args):
    res = CliRunner().invoke(main, args)
    return res.exit_code, res.stderr.strip()


def _one_line_naming(err: str, needle: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert needle in lines[0], err


@pytest.fixture()
def files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    wrong_shape = tmp_path / "wrong.json"
    wrong_shape.write_text(json.dumps({"train": [["only text"]], "val": [], "test": []}))
    garbage = tmp_path / "model.tflite"
    garbage.write_bytes(b"\x00" * 64)
    empty_dir = tmp_path / "empty_cal"
    empty_dir.mkdir()
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"distill": {"epochs": "many"}}))
    return {"bad_json": bad_json, "wrong": wrong_shape, "garbage": garbage, "empty": empty_dir,
            "recipe": recipe, "tmp": tmp_path}


def test_demo_missing_data_file(files):
    code, err = _run(["demo", "--data", str(files["tmp"] / "nope.json"), "--runs-dir", str(files["tmp"] / "r")])
    assert code == 2
    _one_line_naming(err, "nope.json")


def test_demo_malformed_data_file(files):
    for key in ("bad_json", "wrong"):
        code, err = _run(["demo", "--data", str(files[key]), "--runs-dir", str(files["tmp"] / "r")])
        assert code == 2
        _one_line_naming(err, files[key].name)


def test_demo_missing_or_empty_calibration_folder(files):
    for path in (files["tmp"] / "no_such_dir", files["empty"]):
        code, err = _run(["demo", "--calibration", str(path), "--runs-dir", str(files["tmp"] / "r")])
        assert code == 2
        _one_line_naming(err, path.name)
        assert "calibration" in err


def test_demo_malformed_recipe(files):
    code, err = _run(["demo", "--recipe", str(files["recipe"]), "--runs-dir", str(files["tmp"] / "r")])
    assert code == 2
    _one_line_naming(err, "distill.epochs")


def test_eval_missing_and_garbage_model(files):
    code, err = _run(["eval", str(files["tmp"] / "missing.tflite"), "--data", str(files["bad_json"])])
    assert code == 2
    _one_line_naming(err, "missing.tflite")
    code, err = _run(["eval", str(files["garbage"]), "--data", str(files["bad_json"])])
    assert code == 2
    _one_line_naming(err, "model.tflite")


def test_nothing_written_on_bad_input(files):
    runs = files["tmp"] / "r"
    _run(["demo", "--data", str(files["bad_json"]), "--runs-dir", str(runs)])
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("recipe, key, value", [
    ({"prune": {"schedule": "nope"}}, "prune.schedule", "'nope'"),
    ({"student": {"family": "rnn"}}, "student.family", "'rnn'"),
    ({"distill": {"feature_loss": "l3"}}, "distill.feature_loss", "'l3'"),
    ({"prune": {"target_sparsity": 1.5}}, "prune.target_sparsity", "1.5"),
    ({"distill": {"temperature": 0}}, "distill.temperature", "0"),
    ({"qat": {"epochs": 0}}, "qat.epochs", "0"),
    ({"prune": {"m_by_n": [4, 2]}}, "prune.m_by_n", "[4, 2]"),
    ({"convert": {"calibration_samples": 0}}, "convert.calibration_samples", "0"),
    ({"teacher": {"kind": "gpt"}}, "teacher.kind", "'gpt'"),
])
def test_bad_recipe_values_fail_at_load_before_any_tensorflow(tmp_path, recipe, key, value):
    """Exit 2 naming the key and the value received, with TensorFlow never imported (no teacher built)."""
    path = tmp_path / "r.json"
    path.write_text(json.dumps(recipe))
    script = textwrap.dedent(f"""
        import sys
        from click.testing import CliRunner
        from tflite_compress.cli import main
        res = CliRunner().invoke(main, ["demo", "--recipe", {str(path)!r}, "--runs-dir", {str(tmp_path / "runs")!r}])
        print(res.exit_code)
        print(res.stderr.strip())
        print("tensorflow" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120).stdout.splitlines()
    assert out[0] == "2", out
    assert out[1].startswith("Error: ") and f"{key}: expected" in out[1] and f"got {value}" in out[1], out[1]
    assert out[2] == "False", "the recipe was checked only after TensorFlow was imported"
    assert not (tmp_path / "runs").exists()


def test_model_without_integer_only_form_is_exit_3(tmp_path):
    """Valid input the tool cannot make integer-only (a masked LSTM returning sequences): exit 3, one
    line naming the layer, before any training, nothing written, no MLIR dump."""
    from tflite_compress import _tf  # noqa: F401  (TF_USE_LEGACY_KERAS before Keras 3 imports TensorFlow)
    import keras

    words = ["play", "music", "song", "weather", "rain", "sunny"]
    with open(tmp_path / "train.csv", "w", encoding="utf-8") as f:
        f.write("text,label\n")
        for i in range(40):
            f.write(f"{words[i % 3]} {words[(i + 1) % 3]},music\n{words[3 + i % 3]} {words[3 + (i + 1) % 3]},weather\n")
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", *words]) + "\n", encoding="utf-8")
    (tmp_path / "labels.txt").write_text("music\nweather\n", encoding="utf-8")
    inp = keras.Input((8,), dtype="int32")
    h = keras.layers.Embedding(len(words) + 2, 4, mask_zero=True)(inp)
    h = keras.layers.LSTM(4, return_sequences=True, name="seq_lstm")(h)
    h = keras.layers.GlobalAveragePooling1D()(h)
    keras.Model(inp, keras.layers.Dense(2)(h)).save(tmp_path / "seq.keras")
    res = CliRunner().invoke(main, ["compress", str(tmp_path / "seq.keras"), "--train", str(tmp_path / "train.csv"),
                                    "--vocab", str(tmp_path / "vocab.txt"), "--labels", str(tmp_path / "labels.txt"),
                                    "-o", str(tmp_path / "out")])
    assert res.exit_code == 3, res.output
    lines = res.stderr.strip().splitlines()  # progress lines, then the error
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], res.stderr
    assert "'seq_lstm'" in errors[0] and "dynamic-range" in errors[0], errors[0]
    assert not any("loc(" in ln for ln in lines)  # no MLIR dump
    assert not (tmp_path / "out").exists()


def test_gate_errors_are_exit_1_through_gate_error(tmp_path):
    from tflite_compress.errors import GateError
    from tflite_compress.runtime.gates import check_gates

    check_gates({"gate": {"min_accuracy": {"limit": 0.5, "value": 0.6, "passed": True}, "passed": True}})
    with pytest.raises(GateError, match=r"min_accuracy 0.4000 \(limit 0.5000\)"):
        check_gates({"gate": {"min_accuracy": {"limit": 0.5, "value": 0.4, "passed": False}, "passed": False}})
