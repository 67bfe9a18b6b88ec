"""Teacher outputs on Apache Beam: the sharded cache equals the in-process one, and is never partial.

The teacher is a tiny Keras 3 model over the student's token ids (kind "keras"): the Beam
machinery is the same for MiniLM (benchmarks/scale.py runs that one), and this keeps the test
to seconds of compute plus the workers' start-up.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("apache_beam")

from tflite_compress.errors import InputError, RunError

pytestmark = pytest.mark.distributed

TWO_WORKERS = ["--runner", "DirectRunner", "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import tiny_clinc

    import tflite_compress._tf  # noqa: F401 - TF_USE_LEGACY_KERAS before keras imports TensorFlow
    # isort: split
    import keras

    from tflite_compress.config import Recipe, TeacherConfig, TokenizerConfig
    from tflite_compress.data import load_clinc150
    from tflite_compress.scale.beam_teacher import pipeline_teacher_inputs

    tmp = tmp_path_factory.mktemp("beam")
    data = tmp / "clinc.json"
    data.write_text(json.dumps(tiny_clinc(per_intent_train=10, per_intent_eval=4, oos=5)))
    keras.utils.set_random_seed(0)
    teacher = keras.Sequential([keras.Input((16,), dtype="int32"), keras.layers.Embedding(400, 8),
                                keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(16, activation="relu"),
                                keras.layers.Dense(7)])
    teacher.save(tmp / "teacher.keras")
    recipe = Recipe(tokenizer=TokenizerConfig(vocabulary_size=400, sequence_length=16, min_frequency=2),
                    teacher=TeacherConfig(kind="keras", model_path=str(tmp / "teacher.keras")))
    dataset = load_clinc150(data)
    texts, labels, ids = pipeline_teacher_inputs(dataset, recipe)
    return {"tmp": tmp, "data": data, "recipe": recipe, "texts": texts, "labels": labels, "ids": ids,
            "num_labels": len(dataset.label_names)}


def _outputs(s, cache_dir):
    from tflite_compress.teacher import teacher_outputs

    return teacher_outputs(s["recipe"].teacher, s["texts"], s["labels"], s["num_labels"], cache_dir,
                           student_ids=s["ids"], log=lambda m: None)


@pytest.fixture(scope="module")
def beam_cache(setup):
    from tflite_compress.scale.beam_teacher import run_teacher_pipeline

    cache = setup["tmp"] / "beam_cache"
    res = run_teacher_pipeline(setup["recipe"].teacher, setup["texts"], setup["labels"], cache, TWO_WORKERS,
                               student_ids=setup["ids"], shard_rows=32, num_labels=setup["num_labels"],
                               log=lambda m: None)
    return cache, res


def test_beam_cache_equals_in_process_cache(setup, beam_cache):
    cache, res = beam_cache
    assert not res.cache_hit and res.shards >= 4
    assert not list(cache.glob("*.npz"))  # only the sharded form was written
    manifest = json.loads((res.folder / "manifest.json").read_text())
    assert len({s["worker"] for s in manifest["shards"]}) == 2, "both Beam workers should have run the teacher"

    ref = _outputs(setup, setup["tmp"] / "in_process_cache")
    got = _outputs(setup, cache)
    assert not ref.cache_hit and got.cache_hit and got.cache_key == ref.cache_key == res.key
    assert list(got.logits) == list(ref.logits) == ["train", "val", "test", "augmented"]
    assert list(got.features) == list(ref.features)
    assert got.parameters == ref.parameters
    for kind in ("logits", "features"):
        for split, want in getattr(ref, kind).items():
            have = getattr(got, kind)[split]
            assert have.shape == want.shape and have.dtype == want.dtype
            assert float(np.max(np.abs(have - want))) <= 1e-5, (kind, split)


def test_missing_or_corrupt_shard_is_an_error_not_a_partial_cache(setup, beam_cache):
    cache, res = beam_cache
    broken = setup["tmp"] / "broken"
    shutil.copytree(cache, broken)
    folder = broken / res.folder.name
    shard = folder / "shard-00001.npz"
    good = shard.read_bytes()
    data = bytearray(good)
    data[200] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match="shard-00001.npz: teacher-cache shard corrupt"):
        _outputs(setup, broken)
    shard.write_bytes(good)
    assert _outputs(setup, broken).cache_hit
    (folder / "shard-00002.npz").unlink()
    with pytest.raises(InputError, match="shard-00002.npz: teacher-cache shard missing"):
        _outputs(setup, broken)


def test_cli_reports_a_corrupt_shard_on_one_line(setup, beam_cache):
    from click.testing import CliRunner

    from tflite_compress.cli import main

    cache, res = beam_cache
    broken = setup["tmp"] / "broken_cli"
    shutil.copytree(cache, broken)
    (broken / res.folder.name / "shard-00000.npz").write_bytes(b"truncated")
    r = CliRunner().invoke(main, ["teacher-outputs", "--data", str(setup["data"]), "--cache-dir", str(broken),
                                  "--recipe", str(_recipe_file(setup)), *TWO_WORKERS])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "shard-00000.npz: teacher-cache shard corrupt" in lines[0], r.stderr


def _recipe_file(setup):
    path = setup["tmp"] / "recipe.json"
    path.write_text(json.dumps(setup["recipe"].to_dict()))
    return path


def test_a_run_that_dies_half_way_leaves_no_manifest(setup, monkeypatch):
    """A worker failing on one shard: RunError, shards but no manifest, and the pipeline then recomputes."""
    from tflite_compress.scale import beam_teacher, shards

    real = shards.write_shard

    def failing(folder, index, start, arrays):
        if index == 3:
            raise OSError("disk full (simulated)")
        return real(folder, index, start, arrays)

    monkeypatch.setattr(shards, "write_shard", failing)
    cache = setup["tmp"] / "died"
    with pytest.raises(RunError, match="no manifest written.*disk full"):
        beam_teacher.run_teacher_pipeline(setup["recipe"].teacher, setup["texts"], setup["labels"], cache,
                                          ["--runner", "DirectRunner", "--direct_running_mode", "in_memory"],
                                          student_ids=setup["ids"], shard_rows=32, log=lambda m: None)
    folders = list(cache.glob("*.shards"))
    assert folders and not (folders[0] / "manifest.json").exists()
    assert not _outputs(setup, cache).cache_hit  # recomputed in process, not read half


@pytest.mark.parametrize("args, needle", [
    (["--runner", "NoSuchRunner"], "NoSuchRunner"),
    (["--direct_running_mode", "bogus"], "--direct_running_mode"),
    (["--direct_num_workers", "two"], "--direct_num_workers"),
    (["--no_such_option", "1"], "--no_such_option"),
])
def test_bad_runner_option_is_one_line_exit_2(setup, args, needle):
    from click.testing import CliRunner

    from tflite_compress.cli import main

    r = CliRunner().invoke(main, ["teacher-outputs", "--data", str(setup["data"]), "--cache-dir",
                                  str(setup["tmp"] / "unused"), *args])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "runner options" in lines[0], r.stderr
    assert not (setup["tmp"] / "unused").exists()


def test_manifest_rows_must_cover_every_array(tmp_path):
    from tflite_compress.scale import shards

    a = shards.write_shard(tmp_path, 0, 0, {"train": np.zeros((3, 2), np.float32)})
    with pytest.raises(RunError, match="'train' has 3 rows in its shards, expected 5"):
        shards.write_manifest(tmp_path, "k", [a], {"train": 5}, {})
    assert not (tmp_path / shards.MANIFEST).exists()
    b = shards.write_shard(tmp_path, 1, 3, {"train": np.ones((2, 2), np.float32)})
    shards.write_manifest(tmp_path, "k", [b, a], {"train": 5}, {"parameters": 7})
    out = shards.load_shards(tmp_path, "k")
    assert out["train"].tolist() == [[0, 0]] * 3 + [[1, 1]] * 2 and int(out["parameters"]) == 7
    with pytest.raises(InputError, match="manifest is for key 'k'"):
        shards.load_shards(tmp_path, "other")
