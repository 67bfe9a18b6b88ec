"""The full CLINC150 demo and its gates (minutes on 2 cores): `make test-slow` runs these."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tflite_compress.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("slow_runs")
    # The repository's teacher cache, when a `make demo` filled it, saves the MiniLM features.
    cache = Path(os.environ.get("TFLC_SLOW_CACHE", ROOT / "runs" / "cache"))
    if cache.is_dir():
        (runs / "cache").symlink_to(cache.resolve(), target_is_directory=True)
    res = CliRunner().invoke(main, ["demo", "--runs-dir", str(runs), "--json"])
    assert res.exit_code == 0, res.output
    return runs / "clinc150", json.loads(res.stdout)


def test_demo_meets_its_gates(demo_run):
    out, report = demo_run
    s = report["summary"]
    assert s["int8_accuracy_in_scope"] >= 0.930
    assert s["integer_only"] is True and report["stages"]["int8"]["float_ops"] == []
    assert s["size_bytes"] <= 256 * 1024
    assert s["size_bytes"] == (out / "model_int8.tflite").stat().st_size


def test_eval_gate_on_the_demo_file(demo_run):
    out, report = demo_run
    data = ROOT / "calibration_data" / "clinc150" / "data_full.json"
    ok = CliRunner().invoke(main, ["eval", str(out / "model_int8.tflite"), "--data", str(data), "--json",
                                   "--min-accuracy", "0.93", "--max-size", "256KB"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["accuracy_in_scope"] == report["stages"]["int8"]["test"]["accuracy_in_scope"]
