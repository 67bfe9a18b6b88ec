"""`eval`, `bench`, `inspect`, `compare` on tiny models built and converted here, run in the interpreter."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from runtime_fixtures import LABELS, RuntimeModels, runtime_models
from tflite_compress.cli import main
from tflite_compress.errors import InputError


@pytest.fixture(scope="session")
def models() -> RuntimeModels:
    return runtime_models()


def run(*args: str) -> "object":
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: str, code: int = 0) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def assert_bad_input(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]


def litert_outputs(model_path, rows) -> np.ndarray:
    """Dequantized outputs from LiteRT's own Interpreter, one row per invoke: an independent reading."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model_path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for row in np.asarray(rows):
        x = row[None]
        s_in, z_in = inp["quantization"]
        if inp["dtype"] == np.int8 and x.dtype.kind == "f":
            x = np.clip(np.round(x / s_in + z_in), -128, 127)
        it.set_tensor(inp["index"], x.astype(inp["dtype"]))
        it.invoke()
        q = it.get_tensor(out["index"])[0]
        s, z = out["quantization"]
        results.append((q.astype(np.float64) - z) * s if s else q.astype(np.float64))
    return np.array(results)


def text_rows(models) -> tuple[list[str], list[str]]:
    rows = list(csv.DictReader(open(models.text_csv, encoding="utf-8")))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def encode(models, texts) -> np.ndarray:
    from tflite_compress.runtime import load_bundle

    return load_bundle(models.text_int8).tokenizer.encode_batch(texts)


# ---------------------------------------------------------------- no TensorFlow

def test_runtime_and_commands_import_no_tensorflow(models):
    """In a fresh process: import the harness, run every command; TensorFlow never loads."""
    script = textwrap.dedent(f"""
        import sys
        import tflite_compress.runtime, tflite_compress.commands_runtime, tflite_compress.runtime._probe
        assert "tensorflow" not in sys.modules, "import loaded TensorFlow"
        from click.testing import CliRunner
        from tflite_compress.cli import main
        r = CliRunner()
        t, a = {str(models.text_int8)!r}, {str(models.arrays_int8)!r}
        for args in (["eval", t, "--data", {str(models.text_csv)!r}, "--baseline", {str(models.text_float)!r}],
                     ["eval", a, "--data", {str(models.arrays_npz)!r}],
                     ["bench", t, "--runs", "5", "--warmup", "1"], ["inspect", t],
                     ["compare", a, {str(models.arrays_float)!r}, "--samples", "8"]):
            res = r.invoke(main, args)
            assert res.exit_code == 0, (args, res.output)
        bad = [m for m in sys.modules if m == "tensorflow" or m.startswith(("tensorflow.", "tf_keras", "keras"))]
        assert not bad, bad[:5]
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------- eval

@pytest.mark.parametrize("data", ["text_csv", "text_jsonl", "text_clinc"])
def test_eval_text_formats_agree(models, data):
    m = run_json("eval", models.text_int8, "--data", getattr(models, data))
    assert m["samples"] > 0 and m["data_kind"] == "text"
    # The same figures by hand, from LiteRT's own Interpreter invoked row by row.
    texts, gold = text_rows(models)
    pred = np.array(LABELS)[litert_outputs(models.text_int8, encode(models, texts)).argmax(axis=1)]
    gold = np.array(gold)
    assert m["accuracy"] == pytest.approx(np.mean(pred == gold))
    in_scope = gold != "oos"
    assert m["accuracy_in_scope"] == pytest.approx(np.mean(pred[in_scope] == gold[in_scope]))
    assert m["recall_out_of_scope"] == pytest.approx(np.mean(pred[~in_scope] == "oos"))
    assert "recall_out_of_scope" in m and m["metric"] == "accuracy_in_scope"  # labels.txt has "oos"
    csv_m = run_json("eval", models.text_int8, "--data", models.text_csv)
    assert m["accuracy"] == pytest.approx(csv_m["accuracy"])  # same rows, three formats


def test_eval_matches_the_interpreter_and_batching(models):
    from tflite_compress.runtime import load_bundle

    bundle = load_bundle(models.text_int8)
    rows = list(csv.DictReader(open(models.text_csv, encoding="utf-8")))
    scores = np.concatenate([bundle.model.predict(bundle.tokenizer.encode(r["text"])[None], batch_size=1) for r in rows])
    expected = np.mean(scores.argmax(1) == np.array([LABELS.index(r["label"]) for r in rows]))
    for batch in ("1", "16", "64"):
        m = run_json("eval", models.text_int8, "--data", models.text_csv, "--batch-size", batch)
        assert m["accuracy"] == pytest.approx(expected)
        assert m["runtime"]["batch_size"] == int(batch)  # the model's batch dimension is dynamic


def test_eval_min_accuracy_gate(models, tmp_path):
    # Shuffled labels give an accuracy below 1 whatever the model learned.
    rows = list(csv.DictReader(open(models.text_csv, encoding="utf-8")))
    rng = np.random.default_rng(0)
    labels = rng.permutation([r["label"] for r in rows])
    noisy = tmp_path / "noisy.csv"
    with open(noisy, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((r["text"], lab) for r, lab in zip(rows, labels))
    acc = run_json("eval", models.text_int8, "--data", noisy)["accuracy_in_scope"]
    assert acc < 1
    passed = run_json("eval", models.text_int8, "--data", noisy, "--min-accuracy", f"{max(acc - 0.01, 0):.4f}")
    assert passed["gate"]["passed"] is True
    failed = run("eval", models.text_int8, "--data", noisy, "--min-accuracy", f"{min(acc + 0.01, 1):.4f}")
    assert failed.exit_code == 1
    assert "Gate missed: min_accuracy" in failed.stderr
    assert "FAIL" in failed.stdout


def test_eval_max_size_gate(models):
    size = models.text_int8.stat().st_size
    ok = run_json("eval", models.text_int8, "--data", models.text_csv, "--max-size", str(size))
    assert ok["size_bytes"] == size and ok["gate"]["max_size_bytes"]["passed"] is True
    failed = run("eval", models.text_int8, "--data", models.text_csv, "--max-size", str(size - 1), "--json")
    assert failed.exit_code == 1 and "Gate missed: max_size_bytes" in failed.stderr
    assert json.loads(failed.stdout)["gate"]["max_size_bytes"] == {"limit": size - 1, "value": size, "passed": False}
    kb = run_json("eval", models.text_int8, "--data", models.text_csv, "--max-size", "1KB", code=1)
    assert kb["gate"]["max_size_bytes"]["limit"] == 1024
    assert_bad_input(run("eval", models.text_int8, "--data", models.text_csv, "--max-size", "big"), "--max-size")


def test_op_details_adapter_matches_the_flatbuffer(models):
    """LiteRT's private node listing, read through the one adapter, matches the file's own operator list.

    Fails loudly when a LiteRT release renames or reshapes `_get_ops_details()`.
    """
    from tflite_compress.runtime import RuntimeOptions, TFLiteModel, parse_model
    from tflite_compress.runtime.interpreter import op_details

    content = models.text_int8.read_bytes()
    ops = op_details(TFLiteModel(content, RuntimeOptions(xnnpack=False)).interpreter)
    flat = parse_model(content, "model")
    main_graph, codes = flat.subgraphs[0], flat.operator_codes
    assert [op["op_name"] for op in ops] == [codes[o.opcode_index].name for o in main_graph.operators]
    assert [op["inputs"] for op in ops] == [list(o.inputs) for o in main_graph.operators]
    assert [op["outputs"] for op in ops] == [list(o.outputs) for o in main_graph.operators]
    delegated = op_details(TFLiteModel(content, RuntimeOptions(xnnpack=True)).interpreter)
    assert any(op["op_name"] == "DELEGATE" for op in delegated)


def test_eval_max_drop_against_tflite_baseline(models):
    good = run_json("eval", models.text_int8, "--data", models.text_csv)
    bad = run_json("eval", models.text_untrained, "--data", models.text_csv)
    drop = good["accuracy_in_scope"] - bad["accuracy_in_scope"]
    assert drop > 0.05  # random weights do worse than trained ones
    r = run_json("eval", models.text_untrained, "--data", models.text_csv, "--baseline", models.text_int8,
                 "--max-drop", f"{min(drop + 0.01, 1.0):.4f}")
    assert r["drop"] == pytest.approx(drop) and r["gate"]["passed"] is True
    assert r["baseline"]["accuracy_in_scope"] == pytest.approx(good["accuracy_in_scope"])
    failed = run("eval", models.text_untrained, "--data", models.text_csv, "--baseline", models.text_int8,
                 "--max-drop", f"{drop - 0.01:.4f}", "--json")
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["gate"]["max_drop"]["passed"] is False
    assert "Gate missed: max_drop" in failed.stderr


def test_eval_keras_baseline(models):
    from tflite_compress._tf import keras
    from tflite_compress.runtime import load_bundle

    bundle = load_bundle(models.text_int8)
    rows = list(csv.DictReader(open(models.text_csv, encoding="utf-8")))
    x = bundle.tokenizer.encode_batch([r["text"] for r in rows])
    y = np.array([LABELS.index(r["label"]) for r in rows])
    keras_pred = keras.models.load_model(models.text_keras, compile=False).predict(x, verbose=0).argmax(1)
    oos = LABELS.index("oos")
    expected = np.mean(keras_pred[y != oos] == y[y != oos])
    r = run_json("eval", models.text_int8, "--data", models.text_csv, "--baseline", models.text_keras, "--max-drop", "1")
    assert r["baseline"]["accuracy_in_scope"] == pytest.approx(expected)
    assert r["drop"] == pytest.approx(expected - r["accuracy_in_scope"])


def test_eval_npz(models, tmp_path):
    from tflite_compress.runtime import TFLiteModel

    data = np.load(models.arrays_npz)
    pred = TFLiteModel(models.arrays_int8).predict(data["x"]).argmax(1)
    m = run_json("eval", models.arrays_int8, "--data", models.arrays_npz)
    assert m["data_kind"] == "arrays" and m["samples"] == len(data["y"])
    assert m["accuracy"] == pytest.approx(np.mean(pred == data["y"]))
    assert "recall_out_of_scope" not in m  # no labels.txt: class ids, no oos label
    # labels.txt beside the model names the classes in the confusion list
    folder = tmp_path / "named"
    folder.mkdir()
    shutil.copy(models.arrays_int8, folder / "model.tflite")
    (folder / "labels.txt").write_text("red\ngreen\nblue\n", encoding="utf-8")
    named = run_json("eval", folder / "model.tflite", "--data", models.arrays_npz)
    assert named["accuracy"] == m["accuracy"]
    assert all(c["true"] in ("red", "green", "blue") for c in named["most_confused"])


def test_eval_bad_inputs(models, tmp_path):
    assert_bad_input(run("eval", tmp_path / "missing.tflite", "--data", models.text_csv), "missing.tflite")
    assert_bad_input(run("eval", models.text_int8, "--data", tmp_path / "none.csv"), "none.csv")
    assert_bad_input(run("eval", models.text_int8, "--data", models.text_csv, "--max-drop", "0.1"), "--baseline")
    assert_bad_input(run("eval", models.text_int8, "--data", models.text_csv, "--threads", "two"), "--threads")
    (tmp_path / "d.parquet").write_bytes(b"x")
    assert_bad_input(run("eval", models.text_int8, "--data", tmp_path / "d.parquet"), "d.parquet")
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((3, 6), np.float32))
    assert_bad_input(run("eval", models.arrays_int8, "--data", tmp_path / "nolabels.npz"), "nolabels.npz", "'y'")
    np.savez(tmp_path / "range.npz", x=np.zeros((3, 6), np.float32), y=np.array([0, 1, 7]))
    assert_bad_input(run("eval", models.arrays_int8, "--data", tmp_path / "range.npz"), "range.npz", "class ids")
    np.savez(tmp_path / "pickled.npz", x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    assert_bad_input(run("eval", models.arrays_int8, "--data", tmp_path / "pickled.npz"), "pickled.npz")
    np.savez(tmp_path / "shape.npz", x=np.zeros((3, 5), np.float32), y=np.array([0, 1, 2]))
    assert_bad_input(run("eval", models.arrays_int8, "--data", tmp_path / "shape.npz"), "expects")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04garbage")
    assert_bad_input(run("eval", models.arrays_int8, "--data", tmp_path / "garbage.npz"), "garbage.npz")
    assert_bad_input(run("eval", models.arrays_int8, "--data", models.text_csv), "labels.txt")
    assert_bad_input(run("eval", models.text_int8, "--data", models.text_csv, "--baseline", tmp_path / "b.h5"), "b.h5")


# ---------------------------------------------------------------- bench

def test_bench_matrix_text_model(models):
    r = run_json("bench", models.text_int8, "--threads", "1,2", "--batch", "1,4", "--runs", "30", "--warmup", "3")
    assert [(row["threads"], row["batch"]) for row in r["results"]] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    for row in r["results"]:
        assert row["init_us"] > 0 and row["first_invoke_us"] > 0
        assert 0 < row["invoke_us_p50"] <= row["invoke_us_p90"] <= row["invoke_us_p99"]
        assert row["invoke_samples_per_s"] > 0
        assert 0 < row["end_to_end_us_p50"] <= row["end_to_end_us_p99"]  # tokenize + invoke
        assert isinstance(row["xnnpack_applied"], bool)
    assert r["end_to_end"] is True and r["xnnpack_requested"] is True
    assert r["peak_rss_bytes"] > 0
    table = run("bench", models.text_int8, "--runs", "10").stdout
    assert "p50_us" in table and "e2e_p50_us" in table and "peak resident memory" in table


def test_bench_arrays_model_without_xnnpack_and_reference(models):
    r = run_json("bench", models.arrays_int8, "--runs", "10", "--no-xnnpack")
    assert r["results"][0]["xnnpack_applied"] is False and r["end_to_end"] is False
    assert "end_to_end_us_p50" not in r["results"][0]
    ref = run_json("bench", models.arrays_float, "--runs", "10", "--reference-kernels", "--batch", "1,3")
    assert ref["reference_kernels"] is True and all(not row["xnnpack_applied"] for row in ref["results"])


def test_bench_bad_options(models):
    assert_bad_input(run("bench", models.text_int8, "--batch", "0"), "--batch")
    assert_bad_input(run("bench", models.text_int8, "--threads", "1,x"), "--threads")
    assert_bad_input(run("bench", models.arrays_int8, "--data", models.text_csv), "--data")


# ---------------------------------------------------------------- inspect

def test_inspect_int8_model_matches_the_interpreter(models):
    from tflite_compress.runtime import RuntimeOptions, TFLiteModel

    r = run_json("inspect", models.text_int8)
    interp = TFLiteModel(models.text_int8, RuntimeOptions(xnnpack=False)).interpreter
    counts: dict[str, int] = {}
    for op in interp._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    assert r["op_counts"] == counts
    (inp,), (out,) = r["inputs"], r["outputs"]
    detail_in, detail_out = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == "int32" and inp["shape"] == list(detail_in["shape"])
    assert out["dtype"] == "int8"
    assert out["quantization"]["scale"] == pytest.approx(detail_out["quantization"][0])
    assert out["quantization"]["zero_point"] == detail_out["quantization"][1]
    assert r["float_ops"] == [] and r["non_integer_tensors"] == [] and r["custom_ops"] == []
    sizes = [t["size_bytes"] for t in r["tensors_by_size"]]
    assert sizes == sorted(sizes, reverse=True) and sum(sizes) < r["size_bytes"]
    assert r["size_bytes"] == models.text_int8.stat().st_size and 0 < r["gzip_bytes"]
    assert r["signatures"][0]["key"] == "serving_default"
    tensors = {t["name"]: t for t in interp.get_tensor_details()}
    checked = 0
    for t in r["tensors_by_size"]:
        if t["sparsity"] is None:
            continue
        detail = tensors[t["name"]]
        arr = interp.get_tensor(detail["index"])  # constants read straight from the interpreter
        zero_point = detail["quantization"][1] if arr.dtype == np.int8 else 0
        assert t["sparsity"] == pytest.approx(np.mean(arr == zero_point)), t["name"]
        checked += 1
    assert checked >= 2
    assert r["interpreter"]["loadable"] is True


def test_inspect_float_model_reports_float_islands(models):
    r = run_json("inspect", models.arrays_float)
    assert r["float_ops"] and {t["dtype"] for t in r["non_integer_tensors"]} == {"float32"}
    table = run("inspect", models.arrays_float).stdout
    assert "FULLY_CONNECTED" in table and "float islands" in table and "largest tensors" in table


def test_inspect_flex_model_it_cannot_load(models):
    if models.flex is None:
        pytest.skip("this converter build makes no Flex ops")
    r = run_json("inspect", models.flex)
    assert r["interpreter"]["loadable"] is False and r["interpreter"]["error"]
    assert [c["op"] for c in r["custom_ops"]] == ["FlexCumprod"] and r["custom_ops"][0]["flex"] is True
    assert "CANNOT LOAD" in run("inspect", models.flex).stdout
    # eval cannot run it: a one-line error, exit 2
    assert_bad_input(run("eval", models.flex, "--data", models.arrays_npz), "cannot load")


# ---------------------------------------------------------------- compare

def test_compare_int8_vs_float(models):
    r = run_json("compare", models.arrays_int8, models.arrays_float, "--samples", "64")
    assert r["samples"] == 64 and 0 <= r["mean_abs_error"] <= r["max_abs_error"]
    on_data = run_json("compare", models.arrays_int8, models.arrays_float, "--data", models.arrays_npz)
    x = np.load(models.arrays_npz)["x"]
    assert on_data["samples"] == len(x)
    # The same figures by hand from LiteRT's own Interpreter on the same rows.
    a, b = litert_outputs(models.arrays_int8, x), litert_outputs(models.arrays_float, x)
    assert on_data["top1_agreement"] == pytest.approx(np.mean(a.argmax(1) == b.argmax(1)))
    assert on_data["max_abs_error"] == pytest.approx(np.abs(a - b).max(), rel=1e-5)
    assert on_data["mean_abs_error"] == pytest.approx(np.abs(a - b).mean(), rel=1e-5)
    text = run_json("compare", models.text_int8, models.text_float, "--data", models.text_csv)
    assert text["samples"] > 0 and text["top1_agreement"] > 0


def test_compare_same_model_and_reference_kernels(models):
    same = run_json("compare", models.text_int8, models.text_int8, "--samples", "32")
    assert same["top1_agreement"] == 1 and same["max_abs_error"] == 0 and same["kl_divergence_mean"] == pytest.approx(0)
    ref = run_json("compare", models.arrays_int8, "--reference-kernels", "--samples", "32")
    assert ref["model_b"]["reference_kernels"] is True and ref["model_b"]["xnnpack_applied"] is False
    # XNNPACK and the reference kernels differ by at most one int8 step per logit on the same file.
    step = json.loads(run("inspect", models.arrays_int8, "--json").stdout)["outputs"][0]["quantization"]["scale"]
    assert ref["max_abs_error"] <= step * 1.01 and ref["top1_agreement"] >= 0.9
    assert "top-1 agreement" in run("compare", models.arrays_int8, "--reference-kernels").stdout


def test_compare_gate_and_bad_input(models):
    r = run_json("compare", models.text_int8, models.text_untrained, "--samples", "64")
    assert r["top1_agreement"] < 1
    failed = run("compare", models.text_int8, models.text_untrained, "--samples", "64", "--min-agreement", "1")
    assert failed.exit_code == 1 and "Gate missed" in failed.stderr
    assert_bad_input(run("compare", models.text_int8), "--reference-kernels")
    assert_bad_input(run("compare", models.text_int8, models.arrays_int8), "input shape")


# ---------------------------------------------------------------- probe

def test_probe_reports_crash_and_timeout(models):
    from tflite_compress.runtime._probe import probe_model

    content = models.text_int8.read_bytes()
    assert probe_model(content, "m.tflite").ok
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    with pytest.raises(InputError, match=r"m.tflite: interpreter crashed loading it \(SIGSEGV"):
        probe_model(content, "m.tflite", command=crash)
    hang = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(InputError, match="m.tflite: interpreter timed out loading it"):
        probe_model(content, "m.tflite", timeout_s=1, command=hang)
    silent = [sys.executable, "-c", "import sys; sys.exit(3)"]
    with pytest.raises(InputError, match="crashed"):
        probe_model(content, "m.tflite", command=silent)


# ---------------------------------------------------------------- backends

def test_tensorflow_backend_agrees_with_litert(models):
    import importlib.util

    from tflite_compress.runtime import RuntimeOptions, TFLiteModel, random_inputs

    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("tensorflow is not installed")
    litert = TFLiteModel(models.arrays_int8, RuntimeOptions(reference_kernels=True))
    x = random_inputs(litert, 32, seed=3)
    other = TFLiteModel(models.arrays_int8, RuntimeOptions(reference_kernels=True, backend="tensorflow"))
    assert other.backend == "tensorflow"
    step = litert.output["quantization"][0]
    np.testing.assert_allclose(other.predict(x), litert.predict(x), atol=step * 1.01)


TFLITE_RUNTIME_ENV = "TFLITE_RUNTIME_PYTHON"


def _tflite_runtime_python() -> str:
    """The device-like env's Python (.ci/tflite_runtime_env.sh; `make test` sets $TFLITE_RUNTIME_PYTHON)."""
    python = os.environ.get(TFLITE_RUNTIME_ENV)
    if not python:
        message = f"${TFLITE_RUNTIME_ENV} is not set (make test builds that env with .ci/tflite_runtime_env.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: this check must run)")
        pytest.skip(message)
    return python


@pytest.mark.parametrize("which", ["text", "arrays"])
def test_tflite_runtime_backend_matches_litert_per_prediction(models, which, tmp_path):
    """tflite-runtime 2.14 (numpy 1.x, no TensorFlow) and ai-edge-litert give the same prediction on every row.

    Both on LiteRT's builtin kernels (tflite-runtime's Python wheel applies no XNNPACK), so the
    outputs must be equal, not only the top-1.
    """
    python = _tflite_runtime_python()
    model, data = (models.text_int8, models.text_csv) if which == "text" else (models.arrays_int8, models.arrays_npz)
    device = tmp_path / "tflite_runtime.jsonl"
    here = tmp_path / "litert.jsonl"
    script = ("import numpy, sys; assert numpy.__version__.startswith('1.'), numpy.__version__; "
              "from tflite_compress.cli import main; main(sys.argv[1:])")
    proc = subprocess.run([python, "-c", script, "eval", str(model), "--data", str(data), "--backend", "tflite_runtime",
                           "--no-xnnpack", "--predictions", str(device), "--json"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["runtime"]["backend"] == "tflite_runtime" and report["runtime"]["backend_version"] == "2.14.0"
    run_json("eval", model, "--data", data, "--backend", "ai_edge_litert", "--no-xnnpack", "--predictions", here)
    cmp = run_json("compare", here, device, "--min-agreement", "1")
    assert cmp["samples"] > 50 and cmp["top1_agreement"] == 1 and cmp["top1_score_abs_diff_max"] == 0


# ---------------------------------------------------------------- predictions files

def test_eval_predictions_and_compare_them(models, tmp_path):
    a, b = tmp_path / "int8.jsonl", tmp_path / "untrained.jsonl"
    r = run_json("eval", models.text_int8, "--data", models.text_csv, "--predictions", a)
    assert r["predictions"] == str(a)
    rows = [json.loads(line) for line in a.read_text(encoding="utf-8").splitlines()]
    with open(models.text_csv, newline="", encoding="utf-8") as f:
        data = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == list(range(len(data)))
    assert [(row["text"], row["gold"]) for row in rows] == [(d["text"], d["label"]) for d in data]
    assert all(row["margin"] >= 0 and row["predicted"] in LABELS and row["runner_up"] in LABELS for row in rows)
    assert np.mean([row["predicted"] == row["gold"] for row in rows]) == pytest.approx(r["accuracy"])
    run_json("eval", models.text_untrained, "--data", models.text_csv, "--predictions", b)
    same = run_json("compare", a, a)
    assert same["top1_agreement"] == 1 and same["disagreements"] == [] and same["top1_score_abs_diff_max"] == 0
    cmp = run_json("compare", a, b)
    assert cmp["top1_agreement"] < 1 and cmp["accuracy_a"] == pytest.approx(r["accuracy"])
    assert len(cmp["disagreements"]) == round((1 - cmp["top1_agreement"]) * cmp["samples"])
    d = cmp["disagreements"][0]
    assert rows[d["id"]]["predicted"] == d["a"]["predicted"] != d["b"]["predicted"] and d["a"]["margin"] >= 0
    failed = run("compare", a, b, "--min-agreement", "1")
    assert failed.exit_code == 1 and "Gate missed" in failed.stderr and "differ" in failed.stdout
    arrays = tmp_path / "arrays.jsonl"
    run_json("eval", models.arrays_int8, "--data", models.arrays_npz, "--predictions", arrays)
    assert json.loads(arrays.read_text().splitlines()[0])["text"] is None


def test_predictions_bad_input(models, tmp_path):
    good = tmp_path / "p.jsonl"
    run_json("eval", models.text_int8, "--data", models.text_csv, "--predictions", good)
    assert_bad_input(run("eval", models.text_int8, "--data", models.text_csv, "--predictions", tmp_path / "p.csv"),
                     "--predictions", "expected a .jsonl")
    missing_dir = tmp_path / "nope" / "p.jsonl"
    assert_bad_input(run("eval", models.text_int8, "--data", models.text_csv, "--predictions", missing_dir),
                     "does not exist")
    assert not missing_dir.parent.exists()
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join(good.read_text().splitlines(keepends=True)[:5]))
    assert_bad_input(run("compare", good, fewer), "ids differ")
    shuffled = tmp_path / "texts.jsonl"
    rows = [json.loads(line) for line in good.read_text().splitlines()]
    rows[3]["text"] = "something else"
    shuffled.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert_bad_input(run("compare", good, shuffled), "id 3 has another text")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 0, "text": "x"}\n')
    assert_bad_input(run("compare", good, broken), "line 1 is not a prediction", "missing gold")
    assert_bad_input(run("compare", good, models.text_int8), "not one of each")
    assert_bad_input(run("compare", good, good, "--data", models.text_csv), "--data: not used")
    assert_bad_input(run("compare", good, tmp_path / "absent.jsonl"), "predictions file not found")
