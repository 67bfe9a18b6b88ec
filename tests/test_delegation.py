"""Delegation report, per-op profile and the cpu/npu conversion plans, on tiny transformer students.

The report's op list is checked against an independent reading (the flatbuffer's operators), and the
ops it says XNNPACK left out against what the XNNPACK delegate is known to refuse.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tflite_compress import convert
from tflite_compress.config import ConvertConfig, StudentConfig
from tflite_compress.errors import InputError
from tflite_compress.runtime import TFLiteModel, parse_model
from tflite_compress.runtime.delegation import delegation_report, profile_ops
from tflite_compress.runtime.interpreter import RuntimeOptions

VOCAB, LENGTH, LABELS = 60, 8, 3
TINY = dict(family="transformer", embedding_dim=16, num_heads=2, ff_units=32, transformer_layers=1, hidden_units=16,
            dropout=0.0)
BEFORE = StudentConfig(**TINY)
AFTER = StudentConfig(**TINY, ffn_activation="relu", norm="tanh", static_shapes=True)


def _task(n: int, seed: int):
    """Label = which of the marker tokens 1, 2, 3 the row holds (the others are ids 4..VOCAB-1)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(4, VOCAB, (n, LENGTH)).astype(np.int32)
    y = rng.integers(0, LABELS, n)
    x[np.arange(n), rng.integers(0, LENGTH, n)] = y + 1
    return x, y


@pytest.fixture(scope="module")
def students():
    from tflite_compress._tf import keras
    from tflite_compress.students import build_student

    x, y = _task(800, 0)
    out = {}
    for name, cfg in (("before", BEFORE), ("after", AFTER)):
        m = build_student(cfg, VOCAB, LENGTH, LABELS, seed=0)
        m.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(x, y, epochs=6, batch_size=32, verbose=0)
        out[name] = m
    return out


@pytest.fixture(scope="module")
def int8_files(students):
    cal, _ = _task(64, 1)
    return {name: convert.to_int8(m, cal, ConvertConfig(calibration_samples=64)) for name, m in students.items()}


def _flat_ops(content: bytes) -> list[str]:
    flat = parse_model(content, "t")
    return [flat.op_name(op) for op in flat.subgraphs[0].operators]


def test_report_lists_every_flatbuffer_op_and_what_left_xnnpack(students, int8_files):
    before, after = (delegation_report(int8_files[k]) for k in ("before", "after"))
    for name, r in (("before", before), ("after", after)):
        assert [o["op"] for o in r["ops"]] == _flat_ops(int8_files[name])  # same ops, same order
        assert r["ops_delegated"] == sum(o["delegated"] for o in r["ops"]) > 0
        assert r["partitions"] >= 1
        for o in r["ops"]:
            assert (o["kernel"] == "XNNPACK") == o["delegated"]
            assert (o["reason"] is None) == o["delegated"]
    # Before: LayerNormalization's RSQRT/SQUARED_DIFFERENCE and GELU leave XNNPACK in int8, with shape arithmetic.
    assert {"RSQRT", "SQUARED_DIFFERENCE", "GELU", "SOFTMAX"} <= set(before["outside"])
    assert {"SHAPE", "PACK", "REDUCE_PROD"} & set(before["outside"])
    # After: only the embedding GATHER, SOFTMAX and asymmetric BATCH_MATMULs are left, each with its reason.
    assert set(after["outside"]) <= {"GATHER", "SOFTMAX", "BATCH_MATMUL"}
    assert after["partitions"] < before["partitions"]
    flat = parse_model(int8_files["after"], "t")
    g = flat.subgraphs[0]
    for o in after["ops"]:
        if o["op"] == "BATCH_MATMUL":  # XNNPACK takes it iff the right-hand zero point is 0
            rhs = g.tensors[g.operators[o["index"]].inputs[1]]
            assert o["delegated"] == all(z == 0 for z in rhs.quantization.zero_point), o
        if not o["delegated"]:
            assert "did not take it" not in o["reason"], o
    # Float file of the static-shape student: one partition, only the embedding lookup outside.
    fr = delegation_report(convert.to_float(students["after"]))
    assert fr["outside"] == {"GATHER": 1} and fr["partitions"] == 1
    # Without XNNPACK nothing is delegated.
    off = delegation_report(int8_files["after"], RuntimeOptions(xnnpack=False))
    assert off["ops_delegated"] == 0 and off["partitions"] == 0


def test_profile_times_each_op_on_its_kernel(int8_files):
    content = int8_files["after"]
    x, _ = _task(8, 2)
    p = profile_ops(content, RuntimeOptions(), x, runs=5, warmup=1)
    assert p["batch"] == 8 and len(p["ops"]) == len(_flat_ops(content))
    assert all(r["us"] is not None and r["us"] > 0 for r in p["ops"]), [r for r in p["ops"] if not r["us"]]
    assert all(("reference_us" in r) == (not r["delegated"]) for r in p["ops"])
    assert p["ops_sum_us"] == pytest.approx(sum(r["us"] for r in p["ops"]))
    assert sum(e["count"] for e in p["by_op"]) == len(p["ops"])


def test_cpu_and_npu_plans_give_valid_files_checked_in_the_interpreter(students):
    m = students["after"]
    cal, _ = _task(64, 1)
    x, y = _task(300, 3)
    float_acc = np.mean(TFLiteModel(convert.to_float(m)).predict(x).argmax(1) == y)
    assert float_acc > 0.8  # the task is learnt, so accuracy below means something
    npu = convert.convert(m, cal, ConvertConfig(target="npu", calibration_samples=64))
    convert.check_integer_only(npu.content)
    cpu = convert.convert(m, cal, ConvertConfig(target="cpu", calibration_samples=64, cpu_min_agreement=0.9))
    plan = cpu.plan
    assert plan["target"] == "cpu" and plan["chosen"] in [c["plan"] for c in plan["candidates"]]
    chosen = next(c for c in plan["candidates"] if c["plan"] == plan["chosen"])
    assert chosen["agreement_with_float"] >= 0.9
    assert chosen["latency_us_p50"] == min(c["latency_us_p50"] for c in plan["candidates"]
                                           if c["agreement_with_float"] >= 0.9)
    assert {c["plan"] for c in plan["candidates"]} >= {"int8", "dynamic_range"}
    json.dumps(plan)
    for result in (npu, cpu):
        acc = np.mean(TFLiteModel(result.content).predict(x).argmax(1) == y)
        assert acc >= float_acc - 0.05, (result.plan["chosen"], acc, float_acc)


@pytest.mark.parametrize("kwargs, match", [
    ({"target": "gpu"}, "target: expected one of npu, cpu; got 'gpu'"),
    ({"cpu_min_agreement": 1.5}, r"cpu_min_agreement: expected a number in \[0, 1\]; got 1.5")])
def test_bad_convert_config_is_named(kwargs, match):
    with pytest.raises(InputError, match=match):
        ConvertConfig(**kwargs)


def test_bad_student_kernel_options_are_named():
    with pytest.raises(InputError, match="ffn_activation: expected one of gelu, relu, relu2; got 'swish'"):
        StudentConfig(family="transformer", ffn_activation="swish")
    with pytest.raises(InputError, match="norm: expected one of layer, tanh; got 'rms'"):
        StudentConfig(family="transformer", norm="rms")


def test_inspect_and_bench_profile_cli(int8_files, tmp_path):
    from click.testing import CliRunner

    from tflite_compress.cli import main

    path = tmp_path / "after.tflite"
    path.write_bytes(int8_files["after"])
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(path), "--json", "--trust-model"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert [o["op"] for o in report["delegation"]["ops"]] == _flat_ops(int8_files["after"])
    res = runner.invoke(main, ["inspect", str(path), "--trust-model"])
    assert "ops outside XNNPACK" in res.output and "partitions" in res.output
    res = runner.invoke(main, ["bench", str(path), "--profile", "--runs", "3", "--warmup", "1", "--batch", "1,8",
                               "--json", "--trust-model"])
    assert res.exit_code == 0, res.output
    profile = json.loads(res.output)["profile"]
    assert [p["batch"] for p in profile] == [1, 8]
    assert profile[0]["partitions"] == report["delegation"]["partitions"]


def test_symmetric_matmul_operands_keep_attention_in_xnnpack(int8_files):
    content = int8_files["after"]
    sym, changed = convert.symmetric_matmul_operands(content)
    before, after = delegation_report(content), delegation_report(sym)
    flat = parse_model(sym, "t")
    g = flat.subgraphs[0]
    for o in after["ops"]:
        if o["op"] == "BATCH_MATMUL":
            assert g.tensors[g.operators[o["index"]].inputs[1]].quantization.zero_point == (0,)
            assert o["delegated"], o
    assert bool(changed) == ("BATCH_MATMUL" in before["outside"])
    assert after["ops_delegated"] >= before["ops_delegated"]
    x, y = _task(300, 3)
    a, b = TFLiteModel(content).predict(x), TFLiteModel(sym).predict(x)
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.97
