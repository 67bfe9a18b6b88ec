"""export-android and the golden-file writer (tflite_compress.android), on a tiny model built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress import android
from tflite_compress.cli import main
from tflite_compress.errors import InputError

REPO = Path(__file__).resolve().parent.parent
LABELS = ["alarm", "weather", "oos"]
TEXTS = {
    "alarm": ["set an alarm for seven", "wake me up at six", "alarm at noon please", "set my alarm"],
    "weather": ["is it going to rain", "what is the weather", "weather forecast today", "will it be sunny"],
    "oos": ["tell me about bananas", "how tall is a giraffe", "what is tax law", "random words here"],
}
SEQUENCE_LENGTH = 12


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder as the pipeline writes it: a tiny INT8 student, vocab, labels, model_info."""
    from tflite_compress._tf import keras  # noqa: F401  (TensorFlow for building only)
    from tflite_compress.config import Recipe, StudentConfig
    from tflite_compress.convert import to_int8
    from tflite_compress.files import atomic_write_json, atomic_write_text
    from tflite_compress.pipeline import MODEL_FILE, model_info
    from tflite_compress.runtime import TFLiteModel
    from tflite_compress.students import build_student
    from tflite_compress.tokenizer import TokenizerConfig, WordPieceTokenizer, learn_vocabulary

    out = tmp_path_factory.mktemp("run")
    texts = [t for ts in TEXTS.values() for t in ts]
    tok_cfg = TokenizerConfig(vocabulary_size=60, sequence_length=SEQUENCE_LENGTH)
    recipe = Recipe(tokenizer=tok_cfg, student=StudentConfig(embedding_dim=8, filters=8, kernel_sizes=(1, 2), hidden_units=8))
    tok = WordPieceTokenizer(learn_vocabulary(texts, tok_cfg), tok_cfg)
    x = tok.encode_batch(texts)
    model = build_student(recipe.student, len(tok.vocab), SEQUENCE_LENGTH, len(LABELS))
    content = to_int8(model, x)
    (out / MODEL_FILE).write_bytes(content)
    tok.save(out / "vocab.txt")
    atomic_write_text(out / "labels.txt", "\n".join(LABELS) + "\n")
    atomic_write_json(out / "model_info.json", model_info(TFLiteModel(content), recipe, LABELS, "oos"))
    return out


@pytest.fixture
def app(tmp_path) -> Path:
    (tmp_path / "app").mkdir()
    return tmp_path / "app"


def _copy_run(run: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in run.iterdir():
        (dest / p.name).write_bytes(p.read_bytes())
    return dest


def _edit_info(folder: Path, fn) -> None:
    info = json.loads((folder / "model_info.json").read_text())
    fn(info)
    (folder / "model_info.json").write_text(json.dumps(info))


def test_export_copies_and_checks_the_assets(tiny_run, app):
    result = CliRunner().invoke(main, ["export-android", str(tiny_run), "--app", str(app), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assets = app / "src" / "main" / "assets"
    names = ["model_int8.tflite", "vocab.txt", "labels.txt", "model_info.json"]
    assert sorted(p.name for p in assets.iterdir()) == sorted(names)  # no temp files left behind
    for name in names:
        assert (assets / name).read_bytes() == (tiny_run / name).read_bytes()
        assert report["assets"]["files"][name]["sha256"] == android.sha256_file(tiny_run / name)
    assert report["assets"]["sequence_length"] == SEQUENCE_LENGTH
    assert report["assets"]["num_labels"] == len(LABELS)


def test_export_replaces_earlier_assets(tiny_run, app):
    assets = app / "src" / "main" / "assets"
    assets.mkdir(parents=True)
    (assets / "vocab.txt").write_text("stale\n")
    android.export_android(tiny_run, app)
    assert (assets / "vocab.txt").read_bytes() == (tiny_run / "vocab.txt").read_bytes()


@pytest.mark.parametrize(
    "breakage, expected",
    [
        (lambda d: (d / "model_info.json").unlink(), "model_info.json: not found"),
        (lambda d: (d / "model_info.json").write_text("{oops"), "model_info.json: not valid JSON"),
        (lambda d: _edit_info(d, lambda i: i.update(schema_version=2)), "schema_version 2"),
        (lambda d: _edit_info(d, lambda i: i.update(sequence_length=7)), "sequence_length"),
        (lambda d: _edit_info(d, lambda i: i["input"].update(dtype="float32")), "input.dtype must be 'int32'"),
        (lambda d: _edit_info(d, lambda i: i["output"].update(dtype="float32")), "output.dtype must be 'int8'"),
        (lambda d: _edit_info(d, lambda i: i["output"].pop("quantization")), "output.quantization"),
        (lambda d: _edit_info(d, lambda i: i["output"]["quantization"].update(scale=0.0)), "scale must be > 0"),
        (lambda d: _edit_info(d, lambda i: i["output"]["quantization"].update(scale=0.5)), "differs from model_int8"),
        (lambda d: (d / "vocab.txt").write_text("hello\n[UNK]\n"), "vocab.txt: vocabulary must start"),
        (lambda d: (d / "labels.txt").write_text("a\nb\n"), "labels.txt: 2 labels"),
        (lambda d: (d / "model_int8.tflite").write_bytes(b"not a model at all"), "model_int8.tflite: not a"),
    ],
)
def test_bad_run_folders_exit_2_with_one_line_naming_the_file(tiny_run, app, tmp_path, breakage, expected):
    run = _copy_run(tiny_run, tmp_path / "broken")
    breakage(run)
    result = CliRunner().invoke(main, ["export-android", str(run), "--app", str(app)])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and expected in message and str(run) in message, message
    assert not (app / "src").exists()  # nothing copied from a bad run
    with pytest.raises(InputError):
        android.export_android(run, app)


def test_missing_run_or_app_folder(tiny_run, tmp_path):
    runner = CliRunner()
    r1 = runner.invoke(main, ["export-android", str(tmp_path / "nope"), "--app", str(tmp_path)])
    r2 = runner.invoke(main, ["export-android", str(tiny_run), "--app", str(tmp_path / "no_app")])
    assert (r1.exit_code, r2.exit_code) == (2, 2)
    assert "run folder not found" in r1.output and "app folder not found" in r2.output


def test_golden_file_from_exported_assets(tiny_run, app, tmp_path):
    golden_path = tmp_path / "golden" / "g.json"
    result = CliRunner().invoke(main, ["export-android", str(tiny_run), "--app", str(app), "--golden", str(golden_path)])
    assert result.exit_code == 0, result.output
    g = json.loads(golden_path.read_text())
    assert g["counts"]["cases"] == len(g["cases"]) >= 500
    assert g["counts"]["crafted"] >= 40 and g["counts"]["varied"] > 0
    from tflite_compress.runtime import RuntimeOptions, TFLiteModel
    from tflite_compress.tokenizer import WordPieceTokenizer

    assets = app / "src" / "main" / "assets"
    info = json.loads((assets / "model_info.json").read_text())
    tok = WordPieceTokenizer.from_file(assets / "vocab.txt", android.tokenizer_config(info))
    model = TFLiteModel(assets / "model_int8.tflite", RuntimeOptions(xnnpack=False))
    for case in g["cases"][:: 25]:
        ids = tok.encode(case["text"])
        assert ids.tolist() == case["token_ids"]
        assert LABELS[int(np.argmax(model.invoke_raw(ids[None])[0]))] == case["label"]
    texts = [c["text"] for c in g["cases"]]
    assert any(len(t) > 300 for t in texts) and any(t != t.lower() for t in texts) and "" in texts
    assert any(c["n_tokens"] > SEQUENCE_LENGTH for c in g["cases"])  # over-long inputs are truncated
    for row in g["raw_outputs"]:
        deq = android.dequantize_int8(np.array(row["int8"]), **g["output_quantization"])
        assert np.array(row["dequantized_bits"], np.int32).view(np.float32).tolist() == deq.tolist()
    assert (golden_path.parent / android.UNICODE_GOLDEN_NAME).is_file()


def test_golden_file_carries_the_oos_rule(tiny_run, app, tmp_path):
    from tflite_compress.runtime.oos_rule import OOSRule, max_softmax

    run = _copy_run(tiny_run, tmp_path / "run")
    # A threshold inside the model's range of max-softmax values, so the rule changes some answers.
    _edit_info(run, lambda i: i.update(oos_rule={"score": "max_softmax", "threshold": 0.34, "label": "oos"}))
    golden_path = tmp_path / "g.json"
    result = CliRunner().invoke(main, ["export-android", str(run), "--app", str(app), "--golden", str(golden_path)])
    assert result.exit_code == 0, result.output
    g = json.loads(golden_path.read_text())
    assert g["oos_rule"] == {"score": "max_softmax", "threshold": 0.34, "label": "oos"}
    assert g["counts"]["clinc150_oos"] >= 30
    rule = OOSRule.from_info(g["oos_rule"])
    rows = {r["id"]: r for r in g["rule_outputs"]}
    assert {c["id"] for c in g["cases"] if c["true_label"] == "oos"} <= set(rows)
    for r in rows.values():
        deq = android.dequantize_int8(np.array(r["int8"]), **g["output_quantization"])[None]
        assert r["max_softmax"] == pytest.approx(float(max_softmax(deq)[0]), abs=1e-12)
        assert LABELS[int(rule.predict(deq, LABELS)[0])] == r["label_rule"] == g["cases"][r["id"]]["label_rule"]
    # A max_logit rule just above the median largest logit of the rows answered in scope: it turns
    # some to out-of-scope, and each row carries the rule's score.
    from tflite_compress.runtime.oos_rule import max_logit

    deq_rows = [android.dequantize_int8(np.array(r["int8"]), **g["output_quantization"])[None] for r in rows.values()]
    t = float(np.median([max_logit(d)[0] for d in deq_rows if LABELS[int(d.argmax())] != "oos"])) + 1e-3
    _edit_info(run, lambda i: i.update(oos_rule={"score": "max_logit", "threshold": t, "label": "oos"}))
    result = CliRunner().invoke(main, ["export-android", str(run), "--app", str(app), "--golden", str(golden_path)])
    assert result.exit_code == 0, result.output
    g = json.loads(golden_path.read_text())
    assert g["oos_rule"] == {"score": "max_logit", "threshold": t, "label": "oos"}
    rule = OOSRule.from_info(g["oos_rule"])
    changed = 0
    for r in g["rule_outputs"]:
        deq = android.dequantize_int8(np.array(r["int8"]), **g["output_quantization"])[None]
        assert r["score"] == float(max_logit(deq)[0])
        assert LABELS[int(rule.predict(deq, LABELS)[0])] == r["label_rule"] == g["cases"][r["id"]]["label_rule"]
        changed += r["label_rule"] != r["label"]
    assert changed > 0, (t, [(r["label"], r["label_rule"], r["score"]) for r in g["rule_outputs"]][:20])
    bad = _copy_run(tiny_run, tmp_path / "bad")
    _edit_info(bad, lambda i: i.update(oos_rule={"score": "max_softmax", "threshold": 2, "label": "oos"}))
    with pytest.raises(InputError, match="threshold"):
        android.check_app_assets(bad)


def test_quantization_cases_follow_the_harness_formula():
    from tflite_compress.runtime.interpreter import TFLiteModel

    for case in android.quantization_cases(0.1146, 29):
        x = np.array(case["x_bits"], np.int32).view(np.float32)
        # The harness's own quantize_input, on a model whose input has this scale and zero point.
        fake_in = type("M", (), {"input": {"dtype": np.int8, "quantization": (case["scale"], case["zero_point"])}})()
        with np.errstate(over="ignore", invalid="ignore"):
            expected = TFLiteModel.quantize_input(fake_in, x)
            v = x / case["scale"] + case["zero_point"]
        assert case["quantized"] == expected.tolist()
        assert 0.5 in np.abs(v[np.isfinite(v)]) % 1  # exact .5 ties are covered
    fake = type("M", (), {"output": {"quantization": (0.25, -3)}})()
    q = np.arange(-128, 128, dtype=np.int8)
    np.testing.assert_array_equal(TFLiteModel.dequantize_output(fake, q), android.dequantize_int8(q, 0.25, -3))


def test_committed_golden_matches_committed_assets_and_the_python_tokenizer():
    golden = json.loads(android.DEFAULT_GOLDEN.read_text())
    assets = android.DEFAULT_APP_DIR / android.ASSETS_SUBDIR
    checked = android.check_app_assets(assets)
    assert {k: v["sha256"] for k, v in golden["assets"].items()} == {k: v["sha256"] for k, v in checked.files.items()}, (
        "the app's assets changed since the golden file was written: run `make android-golden`")
    from tflite_compress.tokenizer import WordPieceTokenizer, normalize, split_words

    tok = WordPieceTokenizer.from_file(assets / "vocab.txt", android.tokenizer_config(checked.info))
    assert len(golden["cases"]) >= 500
    for case in golden["cases"]:
        assert normalize(case["text"]) == case["normalized"]
        assert split_words(case["normalized"]) == case["words"]
        assert tok.encode(case["text"]).tolist() == case["token_ids"], case["text"]


def test_android_modules_do_not_import_tensorflow():
    code = ("import sys, tflite_compress.android, tflite_compress.commands_android; "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'keras') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_committed_golden_records_arm64_labels(tmp_path):
    """`label_arm64_xnnpack` (from `make arm64-golden`) on every case, and the list of cases where `label` differs."""
    golden = json.loads(android.DEFAULT_GOLDEN.read_text())
    labels = set((android.DEFAULT_APP_DIR / android.ASSETS_SUBDIR / "labels.txt").read_text().splitlines())
    assert all(case[android.ARM64_LABEL_KEY] in labels for case in golden["cases"])
    differs = [c["id"] for c in golden["cases"] if c["label"] != c[android.ARM64_LABEL_KEY]]
    assert golden["arm64_xnnpack"]["cases_where_label_differs"] == differs
    # Writing the same ARM64 predictions again gives the committed file byte for byte.
    copy = tmp_path / "golden.json"
    copy.write_bytes(android.DEFAULT_GOLDEN.read_bytes())
    rows = [{"text": c["text"], "predicted": c[android.ARM64_LABEL_KEY]} for c in golden["cases"]]
    about = golden["arm64_xnnpack"]["about"].split("ARM64 kernels (", 1)[1].split("), as a phone", 1)[0]
    android.add_arm64_labels(copy, rows, about=about)
    assert copy.read_bytes() == android.DEFAULT_GOLDEN.read_bytes()
    rows[5]["text"] = "another text"
    with pytest.raises(InputError, match="case 5: the ARM64 prediction is for another text"):
        android.add_arm64_labels(copy, rows, about=about)
