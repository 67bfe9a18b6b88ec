"""The LM pipeline end to end on a tiny Chit-Chat slice and tiny models: teacher, student on the
data, distillation, pruning, export (float, dynamic-range int8, full int8), evaluation in the
interpreter; then the cache parity, the harness commands and their errors on the written files."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress.cli import main
from tflite_compress.lm.config import (DecoderConfig, LMDistillConfig, LMEvalConfig, LMExportConfig, LMPruneConfig, LMRecipe,
                                       LMTokenizerConfig, TrainConfig)
from tflite_compress.lm.pipeline import ROWS

TINY = LMRecipe(
    name="tiny-lm",
    tokenizer=LMTokenizerConfig(vocabulary_size=200, min_frequency=2, max_train_texts=600),
    teacher=DecoderConfig(layers=2, dim=32, heads=2, ff_dim=64, context=16),
    teacher_train=TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, max_train_tokens=4000),
    student=DecoderConfig(layers=1, dim=16, heads=2, ff_dim=32, context=16),
    student_train=TrainConfig(epochs=1, batch_size=16, learning_rate=3e-3, max_train_tokens=4000),
    distill=LMDistillConfig(alpha=0.5, temperature=2.0, top_k=16),
    prune=LMPruneConfig(target_sparsity=0.4, epochs=1, learning_rate=1e-3, max_train_tokens=2000),
    export=LMExportConfig(calibration_windows=4),
    eval=LMEvalConfig(max_eval_tokens=300, generation_examples=4, max_new_tokens=4),
)


@pytest.fixture(scope="module")
def tiny_corpus():
    from tflite_compress.lm.corpus import load_chitchat

    return load_chitchat(max_conversations=120)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_corpus):
    from tflite_compress.lm.pipeline import run_lm_pipeline

    root = tmp_path_factory.mktemp("lm")
    result = run_lm_pipeline(tiny_corpus, TINY, root / "run", root / "cache")
    return result, root


def test_run_folder_and_report(run):
    result, root = run
    out = result.out_dir
    for name in ("model.tflite", "vocab.txt", "model_info.json", "recipe.json", "report.json", "LICENCE-corpus.txt"):
        assert (out / name).is_file(), name
    assert LMRecipe.from_dict(json.loads((out / "recipe.json").read_text())) == TINY
    info = json.loads((out / "model_info.json").read_text())
    assert set(info["signatures"]) == {"prefill", "decode", "extend", "score"} and info["context"] == 16
    report = json.loads((out / "report.json").read_text())
    rows = report["stages"]["evaluate"]["rows"]
    assert set(rows) == set(ROWS)
    for row in rows.values():
        assert np.isfinite(row["perplexity"]) and 1 < row["perplexity"] < 200  # vocabulary 200: uniform is 200
        assert 0 <= row["top1"] <= row["top5"] <= 1 and row["speed_decode_tokens_per_s"] > 0
    assert rows["teacher"]["parameters"] > 3 * rows["distilled"]["parameters"]
    assert report["stages"]["pruned"]["sparsity"] >= 0.38
    assert report["stages"]["teacher"]["cache_hit"] is False and list((root / "cache").glob("lm-teacher-*.h5"))
    # sparse KD: the teacher's top-16 logits of the distillation windows, cached beside the teacher
    with np.load(next((root / "cache").glob("lm-teacher-*.top16-T2.npz"))) as top:
        assert top["ids"].shape == top["logits"].shape == (report["stages"]["distilled"]["train_windows"], 16, 16)
        lp = top["logits"].astype(np.float32)  # log-probabilities at T, sorted, summing to <= 1
        assert (np.diff(lp, axis=-1) <= 0).all() and (np.exp(lp).sum(-1) <= 1.01).all()
    # dynamic-range int8 stores int8 weights: smaller than the float file of the same model
    assert rows["int8_dynamic"]["size_bytes"] < rows["pruned"]["size_bytes"]
    assert report["stages"]["evaluate"]["references"]["bigram"]["perplexity"] > 1
    assert report["summary"]["dialog_prefill_token_ratio"] is None or report["summary"]["dialog_prefill_token_ratio"] >= 1


@pytest.mark.parametrize("row", ["pruned", "int8_dynamic", "int8_full"])
def test_decode_through_cache_matches_score(run, row):
    """Token by token through the cache gives score's next-token logits, in the interpreter."""
    from tflite_compress.runtime.lm import LMFile

    out = run[0].out_dir
    m = LMFile(out / f"{row}.tflite", vocab=out / "vocab.txt")
    ops = {op["op_name"] for op in m.interpreter._get_ops_details()}
    assert not any(o.startswith("Flex") or o == "CUSTOM" for o in ops)
    ids = np.random.default_rng(1).integers(3, m.vocab_size, m.context).astype(np.int32)
    full = m.score(ids)
    logits, k, v = m.prefill(ids[:3])
    steps = [logits]
    for p in range(3, m.context):
        logits, k, v = m.decode(int(ids[p]), p, k, v)
        steps.append(logits)
    steps = np.stack(steps)
    ref = full[2:]
    # float: the same arithmetic; dynamic-range: int8 weights, float activations (nearly the same);
    # full int8: each signature has its own calibrated activation ranges, so decode and score are
    # two different integer graphs and agree only approximately.
    span = float(np.abs(ref).max())
    tol = {"pruned": 1e-4, "int8_dynamic": 0.05 * span, "int8_full": 0.35 * span}[row]
    assert np.abs(steps - ref).max() <= tol
    assert (steps.argmax(-1) == ref.argmax(-1)).mean() >= {"pruned": 1.0, "int8_dynamic": 0.9, "int8_full": 0.5}[row]
    # extend (a dialog's next turn) writes the same cache as decoding one token at a time
    logits_e, k_e, _ = m.extend(ids[3:7], 3, *m.prefill(ids[:3])[1:])
    np.testing.assert_allclose(logits_e, full[6], atol=tol)


def test_cache_hit(run, tiny_corpus, tmp_path):
    """A second run loads the vocabulary, the teacher and the student on the data alone from the cache."""
    from tflite_compress.lm.pipeline import STAGES, LMState
    from tflite_compress.stages import run_stages

    state = LMState(recipe=TINY, corpus=tiny_corpus, work_dir=tmp_path, cache_dir=run[1] / "cache")
    final = run_stages(STAGES[:4], state, lambda msg: None)
    first = run[0].report["stages"]
    assert (tmp_path / "vocab.txt").read_text() == (run[0].out_dir / "vocab.txt").read_text()
    for role in ("teacher", "student_data"):
        assert final.records[role]["cache_hit"] is True
        assert final.records[role]["cache_key"] == first[role]["cache_key"]
        assert abs(final.records[role]["val_perplexity_keras"] - first[role]["val_perplexity_keras"]) < 1e-3
    # their float files are cached too: the export of a warm run copies them
    assert len(list((run[1] / "cache").glob("lm-*.kv*.tflite"))) == 2


def test_harness_commands(run, tmp_path):
    out = run[0].out_dir
    model = str(out / "model.tflite")
    cli = CliRunner()
    res = cli.invoke(main, ["eval-lm", model, "--data", "chitchat:val", "--max-tokens", "200", "--examples", "3",
                            "--max-new-tokens", "4", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["tokens"] == 192 and {"perplexity", "top1", "top5", "bleu", "rouge1", "rouge2", "rougeL"} <= set(r)
    gate = cli.invoke(main, ["eval-lm", model, "--data", "chitchat:val", "--max-tokens", "200", "--examples", "0",
                             "--max-perplexity", "1.0"])
    assert gate.exit_code == 1
    res = cli.invoke(main, ["eval-lm", model, "--data", "chitchat:val", "--max-tokens", "200", "--examples", "0",
                            "--baseline", str(out / "pruned.tflite"), "--max-increase", "0.5", "--json"])
    assert res.exit_code == 0, res.output
    assert abs(json.loads(res.stdout)["perplexity_increase"]) < 0.5
    res = cli.invoke(main, ["generate", model, "hello there", "--max-new-tokens", "5", "--no-stop", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["token_ids"]) == 5
    sampled = [json.loads(cli.invoke(main, ["generate", model, "hi", "--temperature", "1.5", "--top-k", "50",
                                            "--seed", str(s), "--no-stop", "--json"]).stdout)["token_ids"] for s in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2]
    res = cli.invoke(main, ["chat", model, "--max-new-tokens", "3"], input="hello\nhow are you\nok\n\n")
    assert res.exit_code == 0, res.output
    assert res.stdout.count("model>") == 3
    res = cli.invoke(main, ["bench-lm", model, "--steps", "4", "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["decode_tokens_per_s"] > 0
    # --profile: every op of the decode signature timed alone (the decode subgraph cut out as its own model)
    res = cli.invoke(main, ["bench-lm", model, "--steps", "4", "--profile", "--json"])
    assert res.exit_code == 0, res.output
    p = json.loads(res.stdout)["decode_profile"]
    assert p["ops_total"] == len(p["ops"]) > 10 and p["model_us_p50"] > 0
    assert all(r["us"] is not None for r in p["ops"]), [r for r in p["ops"] if r["us"] is None][:2]
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX"} <= {r["op"] for r in p["ops"]}


def test_harness_errors(run, tmp_path):
    out = run[0].out_dir
    model = str(out / "model.tflite")
    cli = CliRunner()
    res = cli.invoke(main, ["generate", model, "word " * 40])
    assert res.exit_code == 2 and "context of 16" in res.output
    bad = tmp_path / "data.csv"
    bad.write_text("a,b\n")
    res = cli.invoke(main, ["eval-lm", model, "--data", str(bad)])
    assert res.exit_code == 2 and "unknown corpus format" in res.output
    res = cli.invoke(main, ["eval-lm", model, "--max-increase", "0.1"])
    assert res.exit_code == 2 and "--baseline" in res.output
    # a classifier file (one serving signature): exit 2, naming what is missing
    from tflite_compress.lm.export import convert  # noqa: F401 - TF is loaded here anyway
    from tflite_compress._tf import keras, tf

    clf = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(tf.lite.TFLiteConverter.from_keras_model(clf).convert())
    for cmd in (["eval-lm", str(plain), "--vocab", str(out / "vocab.txt")],
                ["generate", str(plain), "hi", "--vocab", str(out / "vocab.txt")]):
        res = cli.invoke(main, cmd)
        assert res.exit_code == 2 and "no prefill, decode, score signature" in res.output, res.output


def test_demo_lm_rejects_bad_corpus_and_writes_nothing(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("one\ntwo\n", encoding="utf-8")
    res = CliRunner().invoke(main, ["demo-lm", "--corpus", str(small), "--runs-dir", str(tmp_path / "runs")])
    assert res.exit_code == 2 and "too small a corpus" in res.output
    assert not (tmp_path / "runs" / "chitchat-lm").exists()


def test_float_file_computes_the_keras_model(tmp_path):
    """The exported graph (LayerNorm scale/shift folded into the next Dense, q/k/v fused) gives the Keras
    model's logits: score over a window, and prefill + decode through the cache."""
    from tflite_compress.lm import export
    from tflite_compress.lm.models import build_decoder
    from tflite_compress.runtime.lm import LMFile

    cfg = DecoderConfig(layers=2, dim=16, heads=2, ff_dim=24, context=12)
    model = build_decoder(cfg, 40, seed=3)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial LayerNorm scales and shifts, so folding them is checked
        if "ln" in layer.name:
            layer.set_weights([rng.normal(1.0, 0.5, w.shape).astype(np.float32) if i == 0 else
                               rng.normal(0.0, 0.5, w.shape).astype(np.float32) for i, w in enumerate(layer.get_weights())])
    ids = rng.integers(3, 40, cfg.context).astype(np.int32)
    ref = model(ids[None], training=False).numpy()[0]
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[EOT]"] + [f"w{i}" for i in range(37)]) + "\n")
    path = tmp_path / "m.tflite"
    export.write(path, export.convert(model, cfg, "float"))
    m = LMFile(path)
    np.testing.assert_allclose(m.score(ids), ref, atol=1e-4)
    logits, k, v = m.prefill(ids[:5])
    np.testing.assert_allclose(logits, ref[4], atol=1e-4)
    for p in range(5, cfg.context):
        logits, k, v = m.decode(int(ids[p]), p, k, v)
        np.testing.assert_allclose(logits, ref[p], atol=1e-4)
    with pytest.raises(Exception, match="outside the model's context"):
        m.decode(3, cfg.context, k, v)
