"""Cache entries that check themselves, locks, stale temp folders and write errors (no TensorFlow: fast)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tflite_compress.cache import EntryStore, decode_npz, encode_npz, seal, unseal, verify_file
from tflite_compress.errors import RunError
from tflite_compress.files import Locked, atomic_write_bytes, file_lock, recover_stale, staged_dir, write_failure


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def store(tmp_path):
    logs: list[str] = []
    s = EntryStore(tmp_path / "cache", ".npz", logs.append)
    arrays = {"train": np.arange(600, dtype=np.float32).reshape(100, 6), "parameters": np.array(7)}
    assert s.write("features-k", encode_npz(arrays))
    return s, logs, arrays


def test_entry_round_trips(store):
    s, logs, arrays = store
    back = s.read("features-k", decode_npz)
    assert set(back) == set(arrays) and np.array_equal(back["train"], arrays["train"])
    assert logs == [] and s.read("other", decode_npz) is None


@pytest.mark.parametrize("damage", ["truncate", "cut_footer", "flip_payload", "flip_footer", "old_format"])
def test_damaged_entry_is_moved_aside_with_one_line(store, damage):
    s, logs, arrays = store
    p = s.path("features-k")
    data = bytearray(p.read_bytes())
    if damage == "truncate":  # as a full disk or an interrupted copy leaves it
        data = data[: len(data) // 2]
    elif damage == "cut_footer":
        data = data[:-10]
    elif damage == "flip_payload":  # one bit inside the array data
        data[len(data) // 2] ^= 0x10
    elif damage == "flip_footer":
        data[-1] ^= 0x01
    else:  # a plain .npz written before entries were sealed
        data = bytearray(encode_npz(arrays))
    p.write_bytes(bytes(data))
    assert s.read("features-k", decode_npz) is None
    assert not p.exists() and p.with_name(p.name + ".corrupt").is_file()
    assert len(logs) == 1 and str(p) in logs[0] and "moved to features-k.npz.corrupt, recomputing" in logs[0]
    assert "\n" not in logs[0]
    # A recomputed entry is stored again and read back whole.
    assert s.write("features-k", encode_npz(arrays))
    assert np.array_equal(s.read("features-k", decode_npz)["train"], arrays["train"])


def test_sealed_but_undecodable_payload_is_corrupt(store):
    s, logs, _ = store
    atomic_write_bytes(s.path("features-k"), seal(b"not an npz"))
    assert s.read("features-k", decode_npz) is None
    assert "cannot be decoded" in logs[0]


def test_unseal_and_verify_file(tmp_path):
    assert unseal(seal(b"abc")) == b"abc"
    p = tmp_path / "shard"
    p.write_bytes(b"hello")
    import hashlib

    digest = hashlib.sha256(b"hello").hexdigest()
    assert verify_file(p, 5, digest) is None
    assert "size 5 bytes, expected 6" in verify_file(p, 6, digest)
    p.write_bytes(b"hellO")
    assert "checksum mismatch" in verify_file(p, 5, digest)


def test_no_cache_reads_and_writes_nothing(tmp_path):
    s = EntryStore(None, ".npz")
    assert not s.write("k", b"x") and s.read("k", decode_npz) is None
    with s.lock("k"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_failed_cache_write_is_one_line_and_the_run_goes_on(store, monkeypatch):
    s, logs, _ = store

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("tflite_compress.files.os.fdopen", full)
    assert s.write("logits-k", b"payload") is False
    assert logs == [f"cache: cannot write {s.path('logits-k')} (No space left on device); continuing without caching it"]
    assert sorted(p.name for p in s.directory.iterdir()) == ["features-k.npz"]  # no temp file left


def test_second_process_on_a_key_waits_then_reads_the_entry(store):
    """Two computations of one key: the second waits for the first's lock, then finds its entry."""
    s, logs, _ = store
    order: list[str] = []
    first_holds = threading.Event()

    def first():
        with s.lock("logits-k"):
            first_holds.set()
            time.sleep(0.3)
            s.write("logits-k", encode_npz({"a": np.ones(3)}))
            order.append("first wrote")

    t = threading.Thread(target=first)
    t.start()
    first_holds.wait()
    with s.lock("logits-k"):  # flock: a second open file waits, as a second process does
        order.append("second read")
        got = s.read("logits-k", decode_npz)
    t.join()
    assert order == ["first wrote", "second read"] and np.array_equal(got["a"], np.ones(3))
    assert logs == [f"cache: waiting for pid {os.getpid()}, which is computing logits-k"]
    assert not list(s.directory.glob(".*.lock"))  # lock files go with their holders


def test_clear_keeps_entries_a_live_process_computes(store):
    s, _, _ = store
    s.write("logits-k", b"x")
    s.path("logits-k").rename(s.path("logits-k").with_name("logits-k.npz.corrupt"))
    stale = s.directory / f".features-k.npz.{dead_pid()}-abc.tmp"
    stale.write_bytes(b"half")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from tflite_compress.files import file_lock\n"
        "with file_lock(sys.argv[2]):\n print('held', flush=True); time.sleep(30)"),
        str(Path(__file__).resolve().parents[1]), str(s.directory / ".features-k.lock")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        removed, busy = s.clear()
    finally:
        holder.kill()
        holder.wait()
    assert [e.key for e in removed] == ["logits-k"] and busy == ["features-k"]
    assert not stale.exists() and s.path("features-k").is_file()
    removed, busy = s.clear()  # the holder is gone: its lock is free
    assert [e.key for e in removed] == ["features-k"] and busy == []
    assert list(s.directory.iterdir()) == []


def test_staged_dir_removes_dead_runs_temp_folders_only(tmp_path):
    runs = tmp_path / "runs"
    (runs / "x").mkdir(parents=True)
    (runs / "x" / "report.json").write_text("old")
    dead = runs / f".x.tmp-{dead_pid()}-abcd"
    (dead / ".scratch").mkdir(parents=True)
    live = runs / f".x.tmp-{os.getppid()}-efgh"  # a live process's (the test runner's parent)
    live.mkdir()
    other = runs / f".y.tmp-{dead_pid()}-ijkl"  # another run name's: not ours to judge here
    other.mkdir()
    logs: list[str] = []
    with staged_dir(runs / "x", logs.append) as work:
        (work / "report.json").write_text("new")
    assert (runs / "x" / "report.json").read_text() == "new"
    assert not dead.exists() and live.exists() and other.exists()
    assert logs == [f"removed {dead} (left by pid {dead.name.split('-')[1]}, no longer running)"]
    assert sorted(p.name for p in runs.iterdir()) == sorted(["x", live.name, other.name])


def test_previous_run_put_back_after_a_kill_between_renames(tmp_path):
    runs = tmp_path / "runs"
    old = runs / f".x.old-{dead_pid()}"
    old.mkdir(parents=True)
    (old / "report.json").write_text("previous")
    done = recover_stale(runs / "x")
    assert (runs / "x" / "report.json").read_text() == "previous" and not old.exists()
    assert done and done[0].startswith(f"restored {runs / 'x'}")


def test_second_run_of_a_name_refuses_naming_the_holder(tmp_path):
    runs = tmp_path / "runs"
    with staged_dir(runs / "x") as work:
        (work / "a").write_text("first")
        with pytest.raises(Locked) as err:
            with staged_dir(runs / "x"):
                pass
        assert err.value.exit_code == 3 and err.value.holder == os.getpid()
        assert str(err.value).startswith(f"{runs / 'x'} is being written by another run (pid {os.getpid()}, lock")
    assert sorted(p.name for p in runs.iterdir()) == ["x"]
    assert (runs / "x" / "a").read_text() == "first"


def test_failed_write_inside_a_run_is_a_run_error_naming_the_path(tmp_path):
    runs = tmp_path / "runs"
    (runs / "x").mkdir(parents=True)
    (runs / "x" / "report.json").write_text("previous")

    def too_large(*a, **k):
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    with pytest.raises(RunError) as err:
        with staged_dir(runs / "x") as work:
            import unittest.mock

            with unittest.mock.patch("tflite_compress.files.os.fdopen", too_large):
                atomic_write_bytes(work / "model_int8.tflite", b"x" * 10)
    msg = str(err.value)
    assert msg.startswith(f"cannot write {runs / 'x' / 'model_int8.tflite'}: File too large;"), msg
    assert err.value.exit_code == 3
    assert (runs / "x" / "report.json").read_text() == "previous"
    assert sorted(p.name for p in runs.iterdir()) == ["x"]


def test_write_failure_reads_library_messages():
    assert write_failure(OSError(errno.EROFS, "x")) == "Read-only file system"
    assert write_failure(RuntimeError("could not write /tmp/v; No space left on device")) == "No space left on device"
    assert write_failure(ValueError("shape mismatch")) is None


def test_file_lock_refuses_when_held_without_wait(tmp_path):
    path = tmp_path / ".k.lock"
    with file_lock(path):
        with pytest.raises(Locked):
            with file_lock(path, wait=False):
                pass
    assert not path.exists()


def test_cache_list_and_clear_commands(store):
    import json

    from click.testing import CliRunner

    from tflite_compress.cli import main

    s, _, _ = store
    s.write("logits-k", b"payload")
    p = s.path("logits-k")
    p.write_bytes(p.read_bytes()[:-5])  # damaged: listed as corrupt, not moved (list only reads)
    runner = CliRunner()
    res = runner.invoke(main, ["cache", "list", "--cache-dir", str(s.directory), "--json"])
    assert res.exit_code == 0, res.output
    listed = {e["key"]: e["status"] for e in json.loads(res.stdout)["entries"]}
    assert listed == {"features-k": "ok", "logits-k": "corrupt: truncated (54 bytes, footer cut off)"}
    res = runner.invoke(main, ["cache", "clear", "--cache-dir", str(s.directory)])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith(f"removed 2 entries (0.00 MB) from {s.directory}")
    assert list(s.directory.iterdir()) == []


def test_a_denied_read_inside_a_run_is_not_called_a_write(tmp_path):
    outside = tmp_path / "elsewhere" / "teacher.keras"
    with pytest.raises(RunError) as err:
        with staged_dir(tmp_path / "runs" / "x"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(outside))
    assert str(err.value).startswith(f"cannot access {outside}: Permission denied;")
