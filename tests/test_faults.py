"""Faults on real runs (subprocesses of the CLI on tiny data): SIGINT, SIGTERM and SIGKILL at
three stages, a second run of a name while the first runs, and a file-size limit. Each leaves the previous run
folder and the cache as they were, and nothing stray once the next run has run.

The children run at the same time, each on its own copy of a finished run, to keep the wall time
of this module to about one tiny run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tflite_compress.cli import main
from tflite_compress.config import Stages
from tflite_compress.data import load_clinc150

ROOT = Path(__file__).resolve().parent.parent
STAGES = 9
FILE_SIZE_LIMIT = 4 * 1024  # bytes: below the tiny INT8 file (~14 KB), the run's first write (its cache entry is read, not written)
# Python ignores SIGXFSZ: a write past the limit fails with EFBIG.
LIMIT_THEN_EXEC = ("import os, resource, sys; n = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included) -> its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Child:
    """`tflite-compress demo` in a subprocess; its stderr lines collected as they come."""

    def __init__(self, args: list[str], file_size_limit: int | None = None):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                   TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, "-m", "tflite_compress.cli", *args]
        if file_size_limit is not None:  # as `ulimit -f`, set in the child, which then execs the CLI (same pid)
            cmd = [sys.executable, "-c", LIMIT_THEN_EXEC, str(file_size_limit), *cmd[1:]]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.done = False
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.done = True
            self.cond.notify_all()

    def wait_for(self, prefix: str, timeout: float = 900) -> None:
        """Block until a stderr line starts with `prefix` (a stage's `[n/N]` progress line)."""
        with self.cond:
            self.cond.wait_for(lambda: self.done or any(s.startswith(prefix) for s in self.lines), timeout)
            assert any(s.startswith(prefix) for s in self.lines), "\n".join(self.lines[-30:])

    def finish(self, timeout: float = 900) -> tuple[int, list[str]]:
        rc = self.proc.wait(timeout)
        self.reader.join(timeout)
        return rc, [s for s in self.lines if s.strip()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_clinc_file, tiny_recipe):
    """A complete run `x` and its cache, made with precomputed teacher logits (no teacher to load)."""
    base = tmp_path_factory.mktemp("faults")
    ds = load_clinc150(tiny_clinc_file)
    y = ds.train.label_ids(ds.label_names, "train split")
    np.save(base / "teacher_logits.npy", 4 * np.eye(len(ds.label_names), dtype=np.float32)[y])
    recipe = tiny_recipe.replace(
        teacher=dataclasses.replace(tiny_recipe.teacher, kind="logits", model_path=str(base / "teacher_logits.npy")),
        stages=Stages(prune=False, qat=False))
    (base / "recipe.json").write_text(json.dumps(recipe.to_dict()))
    # For the runs stopped at the tokenizer and student stages: a student that trains for minutes,
    # so that the signal always finds the run there (a cached vocabulary makes the tiny run finish
    # in seconds, sometimes before the test got round to signalling it).
    slow = recipe.replace(distill=dataclasses.replace(recipe.distill, epochs=2000))
    (base / "recipe_slow.json").write_text(json.dumps(slow.to_dict()))

    def args(runs: Path, slow: bool = False) -> list[str]:
        return ["demo", "--data", str(tiny_clinc_file), "--recipe", str(base / f"recipe{'_slow' if slow else ''}.json"),
                "--runs-dir", str(runs), "--name", "x"]

    runs = base / "runs"
    res = CliRunner().invoke(main, args(runs))
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in runs.iterdir()) == ["cache", "x"]
    # the teacher's entry, the distilled student's and the learned vocabulary's
    assert sorted(p.name.split("-")[0] for p in (runs / "cache").iterdir()) == ["npy", "student", "vocab"]
    return base, runs, args


def test_interrupts_kills_concurrent_runs_and_write_limits(finished_run):
    """One test: the children run side by side (one tiny run's wall time, not four)."""
    base, runs, args = finished_run
    before = snapshot(runs)
    before_run = {k: v for k, v in before.items() if k.startswith(("x/", "cache/"))}
    copies = {}
    for case in ("sigint", "sigterm", "sigkill", "fsize"):
        copies[case] = base / case / "runs"
        shutil.copytree(runs, copies[case])

    children = {case: Child(args(copies[case], slow=case in ("sigint", "sigterm")),
                            FILE_SIZE_LIMIT if case == "fsize" else None) for case in copies}
    # A second run of the same name while the first writes: one line naming the first's pid, exit 3.
    children["sigterm"].wait_for("[1/9]")
    second = CliRunner().invoke(main, args(copies["sigterm"], slow=True))
    assert second.exit_code == 3, second.output
    pid = children["sigterm"].proc.pid
    assert second.stderr.strip().splitlines() == [
        (f"Error: {copies['sigterm'] / 'x'} is being written by another run (pid {pid}, "
         f"lock {copies['sigterm'] / '.x.lock'}); wait for it to finish or choose another run name")]

    # Both at the student stage: by its line TensorFlow is imported. (With the vocabulary cached,
    # "[2/9]" comes before that import, and a SIGINT landing inside it once ended with exit 1 and a
    # traceback instead of the one line: a known gap, not fixed yet.)
    stop_at = {"sigint": ("[4/9]", signal.SIGINT), "sigterm": ("[4/9]", signal.SIGTERM),
               "sigkill": ("[7/9]", signal.SIGKILL)}
    for case, (prefix, sig) in stop_at.items():
        children[case].wait_for(prefix)
        children[case].proc.send_signal(sig)

    results = {case: child.finish() for case, child in children.items()}

    # SIGINT and SIGTERM (training the student): one line, 130/143, and
    # the folder exactly as before: the previous run, the cache, nothing else (so the refused
    # second run of "sigterm" mixed nothing in either).
    for case, code, name in (("sigint", 130, "SIGINT"), ("sigterm", 143, "SIGTERM")):
        rc, lines = results[case]
        assert rc == code, "\n".join(lines[-60:])
        assert lines[-1] == f"Interrupted by {name}: stopped; temp files removed, earlier outputs and cache kept"
        assert sum(s.startswith("Interrupted") for s in lines) == 1
        assert snapshot(copies[case]) == before, case

    # SIGKILL while converting: the previous run and the cache are intact; the dead run's temp
    # folder and lock file are left, and the next run (here with --no-cache) removes them.
    rc, lines = results["sigkill"]
    assert rc == -signal.SIGKILL
    after_kill = snapshot(copies["sigkill"])
    assert {k: v for k, v in after_kill.items() if not k.startswith(".")} == before_run
    stale = [p.name for p in copies["sigkill"].iterdir() if p.name.startswith(".x.tmp-")]
    assert stale and all(p.startswith(f".x.tmp-{children['sigkill'].proc.pid}-") for p in stale)
    nxt = CliRunner().invoke(main, args(copies["sigkill"]) + ["--no-cache", "--json"])
    assert nxt.exit_code == 0, nxt.output
    assert json.loads(nxt.stdout)["stages"]["teacher"]["cache_hit"] is False  # --no-cache: the entry is there, unread
    assert "cache_hit" not in json.loads(nxt.stdout)["stages"]["float"]  # and the student trains, uncached
    assert f"removed {copies['sigkill'] / stale[0]} (left by pid {children['sigkill'].proc.pid}, no longer running)" \
        in nxt.stderr
    assert sorted(p.name for p in copies["sigkill"].iterdir()) == ["cache", "x"]
    assert snapshot(copies["sigkill"] / "cache") == snapshot(runs / "cache")
    assert sorted(snapshot(copies["sigkill"] / "x")) == sorted(snapshot(runs / "x"))

    # A file-size limit: one line naming the path, exit 3, the previous run and cache as they were.
    rc, lines = results["fsize"]
    assert rc == 3, lines[-20:]
    assert lines[-1].startswith(f"Error: cannot write {copies['fsize'] / 'x'}/"), lines[-5:]
    assert "File too large" in lines[-1] and lines[-1].endswith(f"{copies['fsize'] / 'x'} is as it was")
    assert snapshot(copies["fsize"]) == before
