"""The teacher's pass as an Apache Beam pipeline: shards of texts in, the teacher cache out.

    texts per split -> shards of `shard_rows` -> Reshuffle -> TeacherShardFn (teacher loaded once
    per worker, in `setup`) -> one .npz per shard -> all shard entries -> manifest (last)

It writes the entry `teacher.teacher_outputs` reads, under the same key, in the sharded form
of `scale.shards`: the pipeline that follows finds it as a cache hit. What runs on the workers
is the in-process code itself (`MiniLMTeacher.features`, `KerasModelTeacher.predict`), so the
values match the in-process cache up to float rounding of the batching.

Runners: anything Beam accepts after `--runner` (DirectRunner here; DataflowRunner, FlinkRunner,
SparkRunner with their own options, see docs/scale.md). The cache folder must be a path every
worker and the launcher can read and write (a shared mount on a cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..config import TeacherConfig
from ..errors import InputError, RunError
from ..teacher import FeatureCache, teacher_cache_key
from . import shards as _shards
from .inputs import pipeline_teacher_inputs  # noqa: F401 - part of this module's API

BEAM_INSTALL = "pip install 'tflite-compress[scale]' (apache-beam==2.77.*)"


def _beam():
    if _apache_beam is None:
        raise InputError(f"teacher-outputs on Beam needs apache-beam; install it with: {BEAM_INSTALL}")
    return _apache_beam


@dataclasses.dataclass(frozen=True)
class BeamResult:
    key: str
    folder: Path
    rows: int
    shards: int
    seconds: float
    cache_hit: bool

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def pipeline_options(args: Sequence[str]):
    """Beam `PipelineOptions` from runner flags, checked: an unknown flag, a bad value or an
    unknown runner is an `InputError` with one line (Beam's own parser prints its whole usage)."""
    _beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(args)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            options = PipelineOptions(args)
            parsed = options.get_all_options(retain_unknown_options=True)
    except SystemExit:
        lines = [ln for ln in err.getvalue().splitlines() if "error:" in ln]
        msg = lines[-1].split("error:", 1)[1].strip() if lines else " ".join(args)
        raise InputError(f"runner options: {msg}") from None
    unknown = sorted(set(parsed) - set(PipelineOptions([]).get_all_options()))
    if unknown:
        raise InputError(f"runner options: unknown option --{unknown[0]} (Beam pipeline options such as "
                         "--runner, --direct_num_workers, --direct_running_mode are expected)")
    from apache_beam.runners.runner import create_runner

    runner = parsed.get("runner") or "DirectRunner"
    try:
        create_runner(runner)
    except (ValueError, ImportError) as exc:
        raise InputError(f"runner options: --runner {runner}: {str(exc).split('. ')[0]}") from None
    return options


try:  # the [scale] extra; without it the module imports and `_beam()` says what to install
    import apache_beam as _apache_beam
    _DoFn = _apache_beam.DoFn
except ImportError:  # pragma: no cover - depends on the install
    _apache_beam = None
    _DoFn = object


class TeacherShardFn(_DoFn):
    """Loads the teacher once per worker (`setup`); each element is one shard, written as it comes."""

    def __init__(self, config: TeacherConfig, folder: str, intra_op_threads: int | None = None,
                 num_labels: int | None = None):
        self.config = config
        self.folder = folder
        self.threads = intra_op_threads
        self.num_labels = num_labels

    def setup(self):
        if self.threads:
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(self.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from .. import teacher as t

        if self.config.kind == "keras":
            self.teacher = t.KerasModelTeacher(self.config.model_path)
        elif self.config.kind == "minilm":
            self.teacher = t.MiniLMTeacher(self.config)
        else:
            self.teacher = t.PresetTeacher(self.config, t.preset_dir(self.config.model_path))

    def process(self, element):
        index, split, start, payload = element
        t0 = time.perf_counter()
        if self.config.kind == "keras":
            from ..teacher import as_logits

            logits, feats = self.teacher.predict(np.asarray(payload))
            if self.num_labels and (logits.ndim != 2 or logits.shape[1] != self.num_labels):
                raise InputError(f"{self.config.model_path}: teacher outputs shape {logits.shape[1:]}, "
                                 f"expected ({self.num_labels},) logits")
            arrays = {f"logits_{split}": as_logits(logits, Path(self.config.model_path).name, lambda m: None),
                      f"features_{split}": np.asarray(feats)}
        else:
            arrays = {split: self.teacher.features(list(payload), verbose=0).astype(np.float32)}
        seconds = time.perf_counter() - t0
        entry = _shards.write_shard(self.folder, index, start, arrays)
        entry["seconds"] = round(seconds, 4)  # the teacher's compute for this shard (throughput per worker)
        entry["parameters"] = int(self.teacher.parameters)
        entry["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        yield entry


class _Finish:
    """The last step: every shard entry -> the manifest (a picklable callable for `beam.Map`)."""

    def __init__(self, folder: str, key: str, expected: dict[str, int]):
        self.folder, self.key, self.expected = folder, key, expected

    def __call__(self, entries):
        params = {e.pop("parameters") for e in entries}
        _shards.write_manifest(self.folder, self.key, entries, self.expected,
                               {"parameters": max(params) if params else 0})
        return len(entries)


def _cause(exc: BaseException) -> str:
    """The worker's own error line out of the runner's wrapped traceback."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception)\b.*: ", ln)]
    line = (errors or lines or [type(exc).__name__])[-1]
    return line[:300]


def shard_elements(splits: dict[str, Sequence], shard_rows: int) -> list[tuple[int, str, int, object]]:
    """(index, split, start, rows) for every shard, splits in their given order."""
    if shard_rows < 1:
        raise InputError(f"--shard-rows {shard_rows}: expected a positive number of texts per shard")
    out = []
    for split, rows in splits.items():
        if len(rows) == 0:
            raise InputError(f"split {split!r} is empty: nothing for the teacher to encode")
        for start in range(0, len(rows), shard_rows):
            chunk = rows[start:start + shard_rows]
            out.append((len(out), split, start, tuple(chunk) if isinstance(chunk, (list, tuple)) else np.asarray(chunk)))
    return out


def run_teacher_pipeline(config: TeacherConfig, splits: dict[str, Sequence[str]], train_labels: np.ndarray,
                         cache_dir: str | os.PathLike, runner_args: Sequence[str] = (),
                         student_ids: dict[str, np.ndarray] | None = None, shard_rows: int = 2048,
                         intra_op_threads: int | None = None, force: bool = False, num_labels: int | None = None,
                         log: Callable[[str], None] = print) -> BeamResult:
    """Write the teacher-cache entry `teacher_outputs` would compute for these inputs, on Beam.

    `splits`, `train_labels` and `student_ids` are what the pipeline passes to `teacher_outputs`
    (`pipeline_teacher_inputs` builds them for a dataset and recipe), so the key is the same.
    An existing entry is reused (verified) unless `force`.
    """
    if config.kind not in ("minilm", "preset", "keras"):
        raise InputError(f"teacher kind {config.kind!r}: only minilm, preset and keras teachers run on Beam")
    if config.fine_tune:
        raise InputError("teacher.fine_tune: a fine-tuned teacher is trained in one process; "
                         "run teacher-outputs with a frozen teacher")
    options = pipeline_options(runner_args)
    beam = _beam()
    key = teacher_cache_key(config, splits, train_labels, student_ids)
    cache = FeatureCache(cache_dir)
    folder = cache.shards_dir(key)
    rows_by_split = {s: len(v) for s, v in splits.items()}
    if config.kind == "keras":
        payload = {s: np.asarray(student_ids[s]) for s in splits}
        expected = {f"{kind}_{s}": n for s, n in rows_by_split.items() for kind in ("logits", "features")}
    else:
        payload = dict(splits)
        expected = dict(rows_by_split)
    total = sum(rows_by_split.values())
    if not force and (folder / _shards.MANIFEST).is_file():
        _shards.load_shards(folder, key)  # verified, or InputError
        log(f"teacher-outputs: {folder} exists and verifies; nothing to do (--force recomputes)")
        return BeamResult(key, folder, total, len(_shards.read_manifest(folder)["shards"]), 0.0, True)

    elements = shard_elements(payload, shard_rows)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (folder / _shards.MANIFEST).unlink()  # --force: no manifest until the new shards are whole
    log(f"teacher-outputs: {total} texts in {len(elements)} shards -> {folder}")

    fn = TeacherShardFn(config, str(folder), intra_op_threads, num_labels)
    t0 = time.perf_counter()
    try:
        with beam.Pipeline(options=options) as p:
            _ = (p | "shards" >> beam.Create(elements) | "spread" >> beam.Reshuffle()
                 | "teacher" >> beam.ParDo(fn) | "all" >> beam.combiners.ToList()
                 | "manifest" >> beam.Map(_Finish(str(folder), key, expected)))
    except (InputError, RunError):
        raise
    except Exception as exc:  # noqa: BLE001 - a worker's failure reaches here wrapped by the runner
        raise RunError(f"teacher-outputs: the Beam pipeline failed, no manifest written ({_cause(exc)})") from None
    seconds = time.perf_counter() - t0
    if not (folder / _shards.MANIFEST).is_file():
        raise RunError(f"teacher-outputs: the pipeline ended without writing {folder / _shards.MANIFEST}")
    return BeamResult(key, folder, total, len(elements), seconds, False)
