"""The child-process probe fails cleanly: one line and exit 2/3, or `--trust-model` to load in-process.

Each way a child can fail is made real here where this machine allows it (a file that is not an
executable, a missing Python, a real seccomp filter, a real MemoryError under the child's cap); the
out-of-memory killer is simulated by a SIGKILL. The model is the committed Android demo asset, so
nothing trains.
"""

from __future__ import annotations

import json
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from tflite_compress.cli import main
from tflite_compress.errors import InputError, RunError
from tflite_compress.runtime import _probe
from tflite_compress.runtime._probe import PYTHON_ENV, probe_model

ASSETS = Path(__file__).resolve().parent.parent / "android_demo" / "app" / "src" / "main" / "assets"
MODEL = ASSETS / "model_int8.tflite"

# A real seccomp filter that kills the process (SIGSYS) at its next system call, then a write.
SECCOMP_CHILD = textwrap.dedent("""
    import ctypes, struct, sys
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(38, 1, 0, 0, 0) == 0  # PR_SET_NO_NEW_PRIVS
    insn = struct.pack("HBBI", 0x06, 0, 0, 0x80000000)  # BPF_RET|BPF_K, SECCOMP_RET_KILL_PROCESS
    buf = ctypes.create_string_buffer(insn)
    prog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(buf))
    pbuf = ctypes.create_string_buffer(prog)
    if libc.prctl(22, 2, ctypes.c_void_p(ctypes.addressof(pbuf)), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
        sys.exit(77)
    sys.stdout.write("unreachable\\n"); sys.stdout.flush()
""")


def one_line_exit(result, code: int, *words: str) -> str:
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture()
def content() -> bytes:
    return MODEL.read_bytes()


def test_probe_runs_the_real_child(content):
    assert probe_model(content, "m.tflite").ok


def test_exec_format_error_is_a_run_error(content, tmp_path):
    fake = tmp_path / "python-aarch64"
    fake.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00" + b"\0" * 44)  # an aarch64 ELF header
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    with pytest.raises(RunError, match=r"m.tflite: cannot start the probe's Python .*python-aarch64 "
                                       r"\(Exec format error\).*--trust-model"):
        probe_model(content, "m.tflite", command=[str(fake), "-c", "pass"])


def test_missing_interpreter_is_a_run_error(content):
    with pytest.raises(RunError, match=r"cannot start the probe's Python /nonexistent/python3 \(No such file"):
        probe_model(content, "m.tflite", command=["/nonexistent/python3", "-c", "pass"])
    with pytest.raises(RunError, match="sys.executable is empty"):
        probe_model(content, "m.tflite", command=[""])


def test_child_that_cannot_import_the_harness_is_a_run_error(content):
    cmd = [sys.executable, "-I", "-c", "import tflite_compress_not_here"]
    with pytest.raises(RunError, match="cannot import the harness .*ModuleNotFoundError"):
        probe_model(content, "m.tflite", command=cmd)


def test_out_of_memory(content):
    # A real MemoryError under the child's address-space cap: the model asked too much (exit 2).
    with pytest.raises(InputError, match=r"ran out of memory loading it \(over the child's 16 GiB cap: MemoryError"):
        probe_model(content, "m.tflite", command=[sys.executable, "-c", "bytearray(1 << 45)"])
    # The kernel's out-of-memory killer sends SIGKILL: the machine is short, not the file (exit 3).
    oom_kill = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    with pytest.raises(RunError, match=r"killed \(SIGKILL; on Linux usually the out-of-memory killer"):
        probe_model(content, "m.tflite", command=oom_kill)


def test_seccomp_sandbox_is_a_run_error(content, tmp_path):
    script = tmp_path / "seccomp_child.py"
    script.write_text(SECCOMP_CHILD, encoding="utf-8")
    try:
        probe_model(content, "m.tflite", command=[sys.executable, str(script)])
    except RunError as exc:
        assert "stopped by a seccomp sandbox (SIGSYS" in str(exc) and "--trust-model" in str(exc)
    except InputError as exc:  # the filter could not be installed here: exit 77, no report
        if "code 77" not in str(exc):
            raise
        pytest.skip("this kernel or container refuses seccomp filters")
    else:
        pytest.fail("the seccomp child did not die")
    # A sandbox that refuses fork/exec outright (EPERM) is a RunError too.
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    old = _probe.subprocess.run
    _probe.subprocess.run = refuse
    try:
        with pytest.raises(RunError, match=r"cannot start the probe's Python .*\(Operation not permitted\)"):
            probe_model(content, "m.tflite")
    finally:
        _probe.subprocess.run = old


def test_cli_one_line_exit_3_and_trust_model_fallback(monkeypatch, tmp_path):
    data = tmp_path / "golden.jsonl"
    data.write_text(json.dumps({"text": "what's the spanish word for pasta", "label": "translate"}) + "\n", encoding="utf-8")
    monkeypatch.setenv(PYTHON_ENV, "/nonexistent/python3")
    runner = CliRunner()
    for cmd in (["eval", str(MODEL), "--data", str(data)], ["inspect", str(MODEL)], ["bench", str(MODEL), "--runs", "2"]):
        line = one_line_exit(runner.invoke(main, cmd), 3, "cannot start the probe's Python /nonexistent/python3",
                             "--trust-model")
        assert "Traceback" not in line
    ok = runner.invoke(main, ["eval", str(MODEL), "--data", str(data), "--trust-model", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["accuracy"] == 1.0
    # The variable also makes a working Python the probe's: here, this one.
    monkeypatch.setenv(PYTHON_ENV, sys.executable)
    assert runner.invoke(main, ["eval", str(MODEL), "--data", str(data)]).exit_code == 0
