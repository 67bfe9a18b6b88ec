"""Student training on tf.distribute: two MultiWorkerMirroredStrategy workers on loopback.

Both workers run `tflite-compress train-student --strategy multiworker` (distill -> prune -> QAT
-> INT8) as subprocesses with their own TF_CONFIG on free ports; the single-process run of the
same recipe is the reference. The test starts and stops everything it needs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tflite_compress.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.distributed
WORKER_TIMEOUT_S = 900


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def start_worker(args: list[str], config: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ, TF_CONFIG=config, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "tflite_compress.cli", "train-student", *args],
                            stdout=subprocess.PIPE, stderr=open(log, "w"), env=env, text=True)


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    out = []
    try:
        for p in procs:
            stdout, _ = p.communicate(timeout=WORKER_TIMEOUT_S)
            out.append((p.returncode, stdout))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return out


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    from conftest import tiny_clinc

    import tflite_compress._tf  # noqa: F401 - TF_USE_LEGACY_KERAS before keras imports TensorFlow
    # isort: split
    import keras

    tmp = tmp_path_factory.mktemp("distribute")
    data = tmp / "clinc.json"
    data.write_text(json.dumps(tiny_clinc()))
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((16,), dtype="int32"), keras.layers.Embedding(400, 8),
                                keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(7)])
    teacher.save(tmp / "teacher.keras")
    recipe = {"name": "tiny-distributed",
              "tokenizer": {"vocabulary_size": 400, "sequence_length": 16, "min_frequency": 2},
              "teacher": {"kind": "keras", "model_path": str(tmp / "teacher.keras")},
              "student": {"embedding_dim": 16, "filters": 16, "kernel_sizes": [1, 2], "hidden_units": 32, "dropout": 0.0},
              "distill": {"epochs": 6, "batch_size": 32, "learning_rate": 0.005, "augment_copies": 0},
              "prune": {"epochs": 3, "learning_rate": 0.001}, "qat": {"epochs": 2, "learning_rate": 0.0005},
              "convert": {"calibration_samples": 100}}
    (tmp / "recipe.json").write_text(json.dumps(recipe))
    common = ["--data", str(data), "--recipe", str(tmp / "recipe.json"), "--cache-dir", str(tmp / "cache"), "--json"]
    # The single-process reference first (it also fills the teacher cache the workers then read).
    single = finish([start_worker([*common, "--out", str(tmp / "single")], "", tmp / "single.log")])[0]
    ports = free_ports(2)
    two = finish([start_worker([*common, "--strategy", "multiworker", "--out", str(tmp / "two")],
                               tf_config(ports, i), tmp / f"worker{i}.log") for i in range(2)])
    return {"tmp": tmp, "single": single, "two": two}


def _report(result, log: Path) -> dict:
    code, stdout = result
    assert code == 0, log.read_text()[-3000:]
    return json.loads(stdout)


def test_two_workers_train_a_valid_int8_file_within_one_point(job):
    from tflite_compress.convert import check_integer_only
    from tflite_compress.runtime import TFLiteModel

    tmp = job["tmp"]
    single = _report(job["single"], tmp / "single.log")
    workers = [_report(r, tmp / f"worker{i}.log") for i, r in enumerate(job["two"])]
    assert single["replicas"] == 1 and [w["replicas"] for w in workers] == [2, 2]
    assert [w["chief"] for w in workers] == [True, False]
    content = (tmp / "two" / "model_int8.tflite").read_bytes()  # written by the chief only
    check_integer_only(content)
    model = TFLiteModel(content)
    assert model.input["dtype"] == np.int32 and model.output["dtype"] == np.int8
    acc1 = single["int8"]["test"]["accuracy"]
    acc2 = workers[0]["int8"]["test"]["accuracy"]
    assert acc1 > 0.4, single  # the tiny student learned something (7 classes)
    assert abs(acc2 - acc1) <= 0.01, (acc1, acc2)
    assert workers[1]["int8"]["test"]["accuracy"] == acc2  # both workers hold the same model
    for w in workers:
        assert w["sparsity"] >= 0.48  # the pruning target (50%) held under the strategy


def test_qat_quantizer_ranges_under_multiworker(job):
    """tfmot's QAT ranges (moving-average min/max, non-trainable) are updated per replica from
    each replica's half of the batch; `assign_moving_average` reduces the update with MEAN across
    replicas, so what we find: the ranges are identical on both workers (not per-replica
    divergent) and close to the single-process ones (within 5%; they differ by the mean of
    per-replica extremes vs the extremes of the whole batch)."""
    tmp = job["tmp"]
    single = _report(job["single"], tmp / "single.log")["quantizer_ranges"]
    w0, w1 = (_report(r, tmp / f"worker{i}.log")["quantizer_ranges"] for i, r in enumerate(job["two"]))
    assert single and set(w0) == set(single)
    assert w0 == w1
    activations = [k for k in single if not k.endswith(("/kernel", "/embeddings"))]
    assert activations, single
    for name in single:
        for a, b in zip(single[name], w0[name]):
            assert abs(a - b) <= 0.05 * max(abs(a), abs(b), 1e-3), (name, single[name], w0[name])


def test_unreachable_worker_is_a_one_line_error(tmp_path):
    """Worker 0 of a two-worker cluster whose peer never starts: exit 3, one line, within the timeout."""
    ports = free_ports(2)
    p = start_worker(["--strategy", "multiworker", "--timeout", "5", "--data", str(tmp_path / "unused.json")],
                     tf_config(ports, 0), tmp_path / "w.log")
    (code, _), = finish([p])
    err = (tmp_path / "w.log").read_text()
    assert code == 3, err[-2000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "did not come up within 5 s" in lines[0], err[-2000:]


def test_strategy_options_are_checked(monkeypatch):
    from tflite_compress.scale.distribute import DistributeConfig
    from tflite_compress.scale.distribute import tf_config as read_tf_config

    with pytest.raises(InputError, match="strategy 'ring' is not one of"):
        DistributeConfig("ring")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(InputError, match="needs TF_CONFIG"):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}')
    with pytest.raises(InputError, match="task worker:3 is not in the cluster"):
        read_tf_config()
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(InputError, match="TF_CONFIG: expected"):
        read_tf_config()
