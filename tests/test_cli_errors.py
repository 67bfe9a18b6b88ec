"""Bad input ends in a one-line error naming the file or option, and exit 2."""

from __future__ import annotations

import json

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
