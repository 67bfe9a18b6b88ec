"""The whole pipeline on tiny data: every stage runs for real (MiniLM teacher included)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress.cli import main
from tflite_compress.data import load_clinc150


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_clinc_file, tiny_recipe):
    from tflite_compress.pipeline import run_text_pipeline

    runs = tmp_path_factory.mktemp("runs")
    logs: list[str] = []
    result = run_text_pipeline(load_clinc150(tiny_clinc_file), tiny_recipe, runs / "tiny", runs / "cache",
                               log=logs.append, verbose=0)
    return result, logs, runs


def test_run_folder_holds_every_output(tiny_run):
    result, _, runs = tiny_run
    names = sorted(p.name for p in result.out_dir.iterdir())
    assert names == ["labels.txt", "model_info.json", "model_int8.tflite", "recipe.json", "report.html", "report.json",
                     "vocab.txt"]
    # No temp folders left beside the run.
    assert not [p for p in runs.iterdir() if p.name.startswith(".")]
    info = json.loads((result.out_dir / "model_info.json").read_text())
    assert info["schema_version"] == 1
    assert info["input"]["dtype"] == "int32" and info["input"]["shape"] == [1, 16]
    assert info["output"]["dtype"] == "int8" and info["output"]["quantization"]["scale"] > 0
    assert info["tokenizer"]["sequence_length"] == 16
    labels = (result.out_dir / "labels.txt").read_text().splitlines()
    assert labels[-1] == "oos" and len(labels) == info["num_labels"] == 7
    from tflite_compress.config import Recipe

    assert Recipe.from_dict(json.loads((result.out_dir / "recipe.json").read_text())) == result.recipe


def test_int8_file_is_integer_only_and_sparse(tiny_run):
    result, _, _ = tiny_run
    int8 = result.report["stages"]["int8"]
    assert int8["float_ops"] == []
    for op in int8["ops"]:
        assert set(op["outputs"]) <= {"int8", "int32"}, op
    assert {"GATHER", "CONV_2D", "FULLY_CONNECTED"} <= set(int8["op_counts"])
    # 50% target: the zeros survive QAT (prune-preserving) and conversion.
    assert result.report["stages"]["pruned"]["sparsity"] >= 0.49
    assert int8["weight_sparsity"] >= 0.45
    assert int8["gzip_bytes"] < int8["size_bytes"]


def test_cut_batches_run_every_training_stage_and_keep_the_files_shape(tiny_run, tiny_clinc_file, tiny_recipe,
                                                                          tmp_path):
    """`distill.cut_batches`: the student trains on short rows cut in batches of their own through
    distillation, pruning and QAT; the file still takes the full length, integer-only and sparse,
    and learns about as well as the tiny run without the cut."""
    import dataclasses

    from tflite_compress.pipeline import run_text_pipeline

    recipe = tiny_recipe.replace(distill=dataclasses.replace(tiny_recipe.distill, cut_batches=True))
    logs: list[str] = []
    result = run_text_pipeline(load_clinc150(tiny_clinc_file), recipe, tmp_path / "cut", tiny_run[2] / "cache",
                               log=logs.append, verbose=0)
    line = next(line for line in logs if "cut batches:" in line)
    assert re.search(r"cut batches: \d+ of \d+ rows at \d+ of 16 positions", line), line
    info = json.loads((result.out_dir / "model_info.json").read_text())
    assert info["input"]["shape"] == [1, 16]
    int8 = result.report["stages"]["int8"]
    assert int8["float_ops"] == [] and int8["weight_sparsity"] >= 0.45
    plain = tiny_run[0].report["stages"]["int8"]["test"]["accuracy_in_scope"]
    assert int8["test"]["accuracy_in_scope"] >= plain - 0.15, (int8["test"], plain)


def test_progress_lines_follow_the_one_stage_list(tiny_run):
    from tflite_compress.pipeline import CLASSIFIER_STAGES

    _, logs, _ = tiny_run
    steps = [line for line in logs if line.startswith("[")]
    n = len(CLASSIFIER_STAGES)
    assert [s.split("]")[0] + "]" for s in steps] == [f"[{i}/{n}]" for i in range(1, n + 1)]
    labels = ["data", "tokenizer", "teacher", "student", "pruning", "QAT", "convert", "validate", "report"]
    assert [s.split("] ", 1)[1].split(":")[0] for s in steps] == labels
    assert [s.name for s in CLASSIFIER_STAGES] == ["data", "tokenizer", "teacher", "student", "prune", "qat",
                                                   "convert", "validate", "report"]


def test_tokenizer_line_prints_the_learned_size(tiny_run):
    result, logs, _ = tiny_run
    size = result.report["stages"]["tokenizer"]["vocabulary_size"]
    assert size == len((result.out_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert any(f"learned a {size}-piece WordPiece vocabulary" in line for line in logs)


def test_int8_accuracy_equals_a_count_by_hand(tiny_run, tiny_clinc_file):
    """The report's INT8 figures, recomputed from LiteRT's own Interpreter on the written file."""
    from ai_edge_litert.interpreter import Interpreter

    from tflite_compress.runtime import load_bundle

    result, _, _ = tiny_run
    test = load_clinc150(tiny_clinc_file).test
    ids = load_bundle(result.model_path).tokenizer.encode_batch(test.texts)
    labels = (result.out_dir / "labels.txt").read_text(encoding="utf-8").splitlines()
    it = Interpreter(model_path=str(result.model_path))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    pred = []
    for row in ids:
        it.set_tensor(inp["index"], row[None].astype(np.int32))
        it.invoke()
        pred.append(labels[int(it.get_tensor(out["index"])[0].argmax())])
    pred, gold = np.array(pred), np.array(test.labels)
    in_scope = gold != "oos"
    int8 = result.report["stages"]["int8"]["test"]
    assert int8["accuracy_in_scope"] == pytest.approx(np.mean(pred[in_scope] == gold[in_scope]))
    assert int8["recall_out_of_scope"] == pytest.approx(np.mean(pred[~in_scope] == "oos"))
    assert result.report["summary"]["int8_accuracy_in_scope"] == int8["accuracy_in_scope"]


def test_every_stage_reports_figures(tiny_run):
    result, logs, _ = tiny_run
    st = result.report["stages"]
    # Every stage before the report stage, which writes them, and their total.
    timings = result.report["timings_s"]
    assert set(timings) == {"data", "tokenizer", "teacher", "student", "prune", "qat", "convert", "validate", "total"}
    assert timings["total"] == pytest.approx(sum(v for k, v in timings.items() if k != "total"))
    # The real teacher learns 6 intents easily; the student learns something from it.
    assert st["teacher"]["test"]["accuracy_in_scope"] > 0.8
    assert st["float"]["test"]["accuracy_in_scope"] > 0.5
    assert st["int8"]["agreement_with_float"] > 0.7
    assert abs(result.report["summary"]["drop_points"]) < 15
    assert st["int8"]["latency"]["invoke_us_p50"] > 0
    assert st["int8"]["latency"]["end_to_end_us_p50"] >= st["int8"]["latency"]["invoke_us_p50"]
    assert result.report["summary"]["size_ratio_teacher_to_student"] > 100
    assert set(st["pruned"]["sparsity_by_layer"]) >= {"embedding", "conv_k1", "hidden", "logits"}
    # The teacher labelled an augmented copy of every train text for distillation.
    assert st["augment"] == {"copies": 1, "texts": 6 * 40 + 20}


def test_oos_rule_is_calibrated_on_val_and_shipped(tiny_run):
    from tflite_compress.runtime.oos_rule import OOSRule

    result, logs, _ = tiny_run
    info = json.loads((result.out_dir / "model_info.json").read_text())
    rule = OOSRule.from_info(info["oos_rule"])
    assert rule.label == "oos" and rule.score == result.recipe.oos.score == "max_logit"  # the default
    st = result.report["stages"]
    o = st["int8"]["oos"]
    assert o["rule"]["threshold"] == rule.threshold == o["calibration"]["threshold"]
    # the threshold maximises val accuracy (oos as a class): never below the arg-max scheme's
    assert o["calibration"]["val"]["accuracy"] >= o["calibration"]["val_argmax"]["accuracy"]
    assert o["argmax"]["accuracy_in_scope"] == st["int8"]["test"]["accuracy_in_scope"]
    assert o["rule"]["recall_out_of_scope"] >= o["argmax"]["recall_out_of_scope"]
    assert 0.5 <= o["auroc_max_softmax"] <= 1.0 and 0.0 <= o["auroc_max_logit"] <= 1.0
    for stage in ("teacher", "float"):
        assert set(st[stage]["oos"]) >= {"argmax", "rule", "auroc_max_softmax", "auroc_max_logit", "calibration"}
        assert st[stage]["oos"]["rule"]["score"] == "max_logit"
    s = result.report["summary"]
    assert s["oos_rule"] == rule.to_info() and "int8_recall_out_of_scope_rule" in s
    from tflite_compress.pipeline import format_table

    assert "oos recall (rule)" in format_table(result.report)
    assert any("oos rule: max logit <" in line for line in logs)


@pytest.fixture(scope="module")
def cached_quick_run(tiny_run, tiny_clinc_file, tiny_recipe):
    """A second run (pruning and QAT off) on the first run's teacher cache."""
    from tflite_compress.pipeline import run_text_pipeline

    _, _, runs = tiny_run
    logs: list[str] = []
    quick = tiny_recipe.replace(stages=type(tiny_recipe.stages)(prune=False, qat=False))
    second = run_text_pipeline(load_clinc150(tiny_clinc_file), quick, runs / "again", runs / "cache",
                               log=logs.append, verbose=0)
    return second, logs, quick


def test_second_run_reuses_teacher_cache(tiny_run, cached_quick_run):
    result, _, runs = tiny_run
    second, logs, _ = cached_quick_run
    assert result.report["stages"]["teacher"]["cache_hit"] is False
    assert second.report["stages"]["teacher"]["cache_hit"] is True
    assert any("reusing cached features" in line for line in logs)
    np.testing.assert_allclose(second.report["stages"]["teacher"]["test"]["accuracy_in_scope"],
                               result.report["stages"]["teacher"]["test"]["accuracy_in_scope"])
    # Without QAT the INT8 file comes from post-training quantization, still integer-only.
    assert second.report["stages"]["int8"]["float_ops"] == []
    assert "qat" not in second.report["stages"] and "pruned" not in second.report["stages"]


def test_second_run_reads_the_distilled_student_from_the_cache(tiny_run, cached_quick_run):
    """Pruning and QAT off change nothing the float student learns from: its weights are read, not trained."""
    result, _, runs = tiny_run
    second, logs, _ = cached_quick_run
    first_float, second_float = result.report["stages"]["float"], second.report["stages"]["float"]
    assert first_float["cache_hit"] is False and second_float["cache_hit"] is True
    assert first_float["cache_key"] == second_float["cache_key"]
    entry = runs / "cache" / f"{second_float['cache_key']}.npz"  # (the cut-batches run above made another)
    assert entry.is_file() and second_float["cache_key"].startswith("student-")
    said = [line for line in logs if "read from the cache" in line]
    assert len(said) == 1 and re.fullmatch(
        rf"\[4/9\] student: \w+, {second_float['parameters']:,} parameters; distilled before, read from the cache "
        rf"\({re.escape(entry.name)}\)", said[0]), said
    assert not any("epochs (cache miss" in line for line in logs)
    assert second_float["test"] == first_float["test"]


def test_student_cache_key_follows_what_training_reads():
    """Same key for the same inputs; another key when the student, distillation, seed, targets or ids change,
    and the same when only the later stages (pruning, QAT, conversion) do."""
    import dataclasses
    import types

    from tflite_compress.config import Recipe
    from tflite_compress.pipeline import student_cache_key

    r = Recipe()
    rng = np.random.default_rng(0)
    x = {s: rng.integers(0, 50, (8, 16)).astype(np.int32) for s in ("train", "val", "test")}
    t = {s: rng.normal(size=(8, 4)).astype(np.float32) for s in ("train", "val")}

    def key(recipe=r, x=x, t=t, features=None, alpha=r.distill.alpha):
        state = types.SimpleNamespace(recipe=recipe, x=x, targets=t, teacher_features=features, alpha=alpha,
                                      tokenizer=types.SimpleNamespace(vocab=["w"] * 50), label_names=["a", "b", "oos"])
        return student_cache_key(state)

    base = key()
    assert base.startswith("student-") and key() == base
    same = [r.replace(prune=dataclasses.replace(r.prune, epochs=9)), r.replace(qat=dataclasses.replace(r.qat, epochs=9)),
            r.replace(convert=dataclasses.replace(r.convert, calibration_samples=7)), r.replace(name="other")]
    assert [key(recipe=v) for v in same] == [base] * len(same)
    other = {
        "distill.epochs": key(recipe=r.replace(distill=dataclasses.replace(r.distill, epochs=3))),
        "student.filters": key(recipe=r.replace(student=dataclasses.replace(r.student, filters=32))),
        "seed": key(recipe=r.replace(seed=1)),
        "alpha": key(alpha=0.5),
        "targets": key(t={**t, "train": t["train"] + 1e-3}),
        "ids": key(x={**x, "val": x["val"][::-1].copy()}),
        # features count only when feature distillation is on
        "features": key(recipe=r.replace(distill=dataclasses.replace(r.distill, feature_weight=1.0)),
                        features={"train": np.ones((8, 3)), "val": np.ones((8, 3))}),
    }
    assert base not in other.values() and len(set(other.values())) == len(other), other
    assert key(features={"train": np.ones((8, 3)), "val": np.ones((8, 3))}) == base


def test_damaged_cache_entries_are_recomputed_to_the_same_figures(tiny_run, cached_quick_run, tiny_clinc_file):
    """A bit-flipped features entry and a truncated logits entry: one line each, recomputed, same figures."""
    from tflite_compress.cache import decode_npz, unseal
    from tflite_compress.pipeline import run_text_pipeline

    _, _, runs = tiny_run
    second, _, quick = cached_quick_run
    cache = runs / "cache"
    [feats] = cache.glob("features-*.npz")
    [logits] = cache.glob("logits-*.npz")
    clean = {p.name: decode_npz(unseal(p.read_bytes())) for p in (feats, logits)}
    data = bytearray(feats.read_bytes())
    data[len(data) // 2] ^= 0x04  # one bit inside the features array
    feats.write_bytes(bytes(data))
    logits.write_bytes(logits.read_bytes()[:1000])  # cut short, as a full disk leaves it
    logs: list[str] = []
    third = run_text_pipeline(load_clinc150(tiny_clinc_file), quick, runs / "after-damage", cache,
                              log=logs.append, verbose=0)
    said = [line for line in logs if line.startswith("cache: ")]
    assert said == [
        f"cache: {feats}: checksum mismatch (bytes changed on disk); moved to {feats.name}.corrupt, recomputing",
        f"cache: {logits}: no checksum footer (1000 bytes: truncated, or written by an older version); "
        f"moved to {logits.name}.corrupt, recomputing"]
    assert third.report["stages"]["teacher"]["cache_hit"] is False
    for p in (feats, logits):  # recomputed and stored again, whole
        again = decode_npz(unseal(p.read_bytes()))
        for k, v in clean[p.name].items():
            np.testing.assert_allclose(again[k], v, rtol=0, atol=1e-5, err_msg=f"{p.name}:{k}")
    # The run's figures equal those of the clean run on the same recipe.
    for stage in ("teacher", "float", "int8"):
        assert third.report["stages"][stage]["test"] == second.report["stages"][stage]["test"], stage
    assert third.report["summary"]["size_bytes"] == second.report["summary"]["size_bytes"]


def test_damaged_student_entry_is_trained_again(tiny_run, cached_quick_run, tiny_clinc_file):
    """A cut-short student entry: one line, the student trains again and its entry is written whole."""
    from tflite_compress.cache import decode_npz, unseal
    from tflite_compress.pipeline import run_text_pipeline

    _, _, runs = tiny_run
    _, _, quick = cached_quick_run
    entries = sorted((runs / "cache").glob("student-*.npz"))
    assert entries
    for p in entries:
        p.write_bytes(p.read_bytes()[:500])
    logs: list[str] = []
    again = run_text_pipeline(load_clinc150(tiny_clinc_file), quick, runs / "after-student-damage", runs / "cache",
                              log=logs.append, verbose=0)
    said = [line for line in logs if line.startswith("cache: ")]
    key = again.report["stages"]["float"]["cache_key"]
    entry = runs / "cache" / f"{key}.npz"
    assert said == [f"cache: {entry}: no checksum footer (500 bytes: truncated, or written by an older version); "
                    f"moved to {entry.name}.corrupt, recomputing"]
    assert again.report["stages"]["float"]["cache_hit"] is False
    weights = decode_npz(unseal(entry.read_bytes()))
    assert len(weights) >= 6 and all(np.isfinite(w).all() for w in weights.values())


def test_eval_cli_reproduces_report_and_gates(tiny_run, tiny_clinc_file, tmp_path):
    result, _, _ = tiny_run
    model = str(result.model_path)
    runner = CliRunner()
    res = runner.invoke(main, ["eval", model, "--data", str(tiny_clinc_file), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["accuracy_in_scope"] == result.report["stages"]["int8"]["test"]["accuracy_in_scope"]
    # Both schemes, as the report has them: arg-max and the rule shipped in model_info.json.
    rep = result.report["stages"]["int8"]["oos"]
    assert out["oos"]["rule"] == rep["rule"] and out["oos"]["argmax"] == rep["argmax"]
    assert out["oos"]["auroc_max_softmax"] == rep["auroc_max_softmax"]
    text = runner.invoke(main, ["eval", model, "--data", str(tiny_clinc_file)]).stdout
    assert "recall_out_of_scope" in text and "max_logit <" in text and "auroc (max logit)" in text
    ok = runner.invoke(main, ["eval", model, "--data", str(tiny_clinc_file), "--min-accuracy", "0.01"])
    assert ok.exit_code == 0, ok.output
    # Shuffled test labels: an accuracy below 1 whatever the model learned, so the gate miss is certain.
    data = json.loads(tiny_clinc_file.read_text(encoding="utf-8"))
    labels = np.random.default_rng(0).permutation([row[1] for row in data["test"]])
    data["test"] = [[row[0], str(lab)] for row, lab in zip(data["test"], labels)]
    noisy = tmp_path / "noisy.json"
    noisy.write_text(json.dumps(data), encoding="utf-8")
    acc = json.loads(runner.invoke(main, ["eval", model, "--data", str(noisy), "--json"]).stdout)["accuracy_in_scope"]
    assert acc < 1.0
    missed = runner.invoke(main, ["eval", model, "--data", str(noisy), "--min-accuracy", f"{min(acc + 0.01, 1):.4f}"])
    assert missed.exit_code == 1
    assert "Gate missed: min_accuracy" in missed.stderr


def test_demo_cli_writes_run_and_prints_table(tmp_path, tiny_clinc_file, tiny_recipe):
    recipe = tmp_path / "recipe.json"
    quick = tiny_recipe.replace(stages=type(tiny_recipe.stages)(distill=False, prune=False, qat=True))
    recipe.write_text(json.dumps(quick.to_dict()))
    res = CliRunner().invoke(main, ["demo", "--data", str(tiny_clinc_file), "--recipe", str(recipe),
                                    "--runs-dir", str(tmp_path / "runs"), "--name", "cli"])
    assert res.exit_code == 0, res.output
    assert "INT8 .tflite" in res.stdout and "integer-only: yes" in res.stdout
    assert (tmp_path / "runs" / "cli" / "model_int8.tflite").is_file()


def test_demo_json_keeps_stdout_machine_readable(tmp_path, tiny_clinc_file, tiny_recipe):
    recipe = tmp_path / "recipe.json"
    quick = tiny_recipe.replace(stages=type(tiny_recipe.stages)(distill=False, prune=False, qat=False))
    recipe.write_text(json.dumps(quick.to_dict()))
    res = CliRunner().invoke(main, ["demo", "--data", str(tiny_clinc_file), "--recipe", str(recipe),
                                    "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)  # no Keras progress lines mixed in
    assert report["summary"]["integer_only"] is True
