"""Load an untrusted `.tflite` in a child process first: a crash or hang there is not ours.

`probe_model` runs `python -m tflite_compress.runtime._probe MODEL ...` with a time limit and a
memory cap. The child builds the interpreter with the options the caller will use, allocates
tensors and invokes once on zero inputs, then prints one JSON line. A child that dies by a
signal or overruns the limit means the file is hostile or corrupt: `InputError`.

When the child cannot run at all, that is this machine, not the file: `RunError` (exit 3) in one
line that names the Python it tried and the way out (`--trust-model` loads the model in this
process, without the probe). The child's Python is `sys.executable`, or
`$TFLITE_COMPRESS_PROBE_PYTHON` when set (an emulator wrapper, for one).

| child                                           | error                                        |
|-------------------------------------------------|----------------------------------------------|
| cannot start (exec format, missing, EPERM, ...) | RunError "cannot start the probe's Python"   |
| killed by SIGSYS (a seccomp sandbox)            | RunError "stopped by a seccomp sandbox"      |
| killed by SIGKILL (the out-of-memory killer)    | RunError "killed (SIGKILL)... out of memory" |
| cannot import the harness / numpy / LiteRT      | RunError "cannot import ..."                 |
| MemoryError / bad_alloc under its memory cap    | InputError "ran out of memory loading it"    |
| other signal, timeout, exit without a report    | InputError "crashed" / "timed out"           |
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from ..errors import InputError, RunError

DEFAULT_TIMEOUT_S = 20.0
TF_IMPORT_ALLOWANCE_S = 120.0  # --backend tensorflow: the child imports TensorFlow first (20 s on a busy box)
CHILD_MEMORY_BYTES = 16 << 30  # address-space cap of the child: a hostile shape cannot swap the box
PYTHON_ENV = "TFLITE_COMPRESS_PROBE_PYTHON"
FALLBACK_HINT = "pass --trust-model to load it in this process without the probe"


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the child saw: loaded (and invoked) or a Python-level error message."""

    ok: bool
    error: str | None = None
    stage: str | None = None
    elapsed_ms: float = 0.0


def probe_python() -> str:
    """The Python the child runs: `$TFLITE_COMPRESS_PROBE_PYTHON`, else `sys.executable` ('' if unknown)."""
    return os.environ.get(PYTHON_ENV) or sys.executable or ""


def _child_command(threads: int, xnnpack: bool, reference_kernels: bool, backend: str) -> list[str]:
    return [probe_python(), "-m", "tflite_compress.runtime._probe", "-", "--threads", str(threads),
            "--xnnpack", str(int(xnnpack)), "--reference-kernels", str(int(reference_kernels)), "--backend", backend]


def _limit_child() -> None:  # runs in the child before exec
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_BYTES, CHILD_MEMORY_BYTES))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def probe_model(content: bytes, name: str, threads: int = 1, xnnpack: bool = True, reference_kernels: bool = False,
                timeout_s: float = DEFAULT_TIMEOUT_S, command: Sequence[str] | None = None,
                backend: str = "auto") -> ProbeResult:
    """Load + allocate + invoke a model once in a child process; `InputError` if it crashes or hangs on the file.

    Args:
        content: the `.tflite` bytes (already verified with `flatbuffer.parse_model`), sent on the child's stdin,
            so the child sees exactly the bytes the caller will load.
        name: the file name, for messages.
        threads, xnnpack, reference_kernels, backend: the interpreter options the caller will use.
        timeout_s: wall-clock limit of the child.
        command: replaces the child's command line (tests use it to simulate crashes and hangs).

    Returns:
        `ProbeResult(ok=False, error=...)` when the interpreter reported an ordinary error.

    Raises:
        InputError: the child crashed, hung or ran out of memory on the file (exit 2).
        RunError: the child could not run here (see the module's table; exit 3).
    """
    import time

    cmd = list(command) if command is not None else _child_command(threads, xnnpack, reference_kernels, backend)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "tensorflow" and command is None:
        timeout_s += TF_IMPORT_ALLOWANCE_S
    t0 = time.perf_counter()
    if not cmd or not cmd[0]:
        raise RunError(f"{name}: cannot start the probe's Python (sys.executable is empty; set {PYTHON_ENV}), "
                       f"or {FALLBACK_HINT}")
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, env=env, input=content,
                              preexec_fn=_limit_child if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        raise InputError(f"{name}: interpreter timed out loading it (over {timeout_s:g} s in a child process)") from None
    except OSError as exc:  # exec format error, missing file, EPERM from a sandbox, no memory to fork
        why = exc.strerror or type(exc).__name__
        raise RunError(f"{name}: cannot start the probe's Python {cmd[0]} ({why}); set {PYTHON_ENV} to a Python "
                       f"that runs here, or {FALLBACK_HINT}") from None
    elapsed_ms = (time.perf_counter() - t0) * 1e3
    stderr = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    last = stderr[-1].strip()[:200] if stderr else ""
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        if sig == "SIGSYS":
            raise RunError(f"{name}: the probe's child process was stopped by a seccomp sandbox (SIGSYS: a system "
                           f"call was refused); {FALLBACK_HINT}")
        if sig == "SIGKILL":
            raise RunError(f"{name}: the probe's child process was killed (SIGKILL; on Linux usually the "
                           f"out-of-memory killer: this machine ran out of memory); free memory, or {FALLBACK_HINT}")
        raise InputError(f"{name}: interpreter crashed loading it ({sig} in a child process)")
    lines = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        if any(word in last for word in ("ModuleNotFoundError", "ImportError")):
            raise RunError(f"{name}: the probe's Python {cmd[0]} cannot import the harness ({last}); install "
                           f"tflite-compress there, set {PYTHON_ENV}, or {FALLBACK_HINT}")
        if any(word in last for word in ("MemoryError", "bad_alloc", "Cannot allocate memory")):
            raise InputError(f"{name}: the interpreter ran out of memory loading it (over the child's "
                             f"{CHILD_MEMORY_BYTES >> 30} GiB cap: {last})")
        raise InputError(f"{name}: interpreter crashed loading it (child exited with code {proc.returncode}, no report"
                         + (f"; {last}" if last else "") + ")")
    if report.get("ok"):
        return ProbeResult(True, elapsed_ms=elapsed_ms)
    if report.get("stage") == "import":
        raise RunError(f"{name}: the probe's Python {cmd[0]} cannot import the harness ({report.get('error')}); "
                       f"install tflite-compress there, set {PYTHON_ENV}, or {FALLBACK_HINT}")
    return ProbeResult(False, str(report.get("error") or "unknown error"), report.get("stage"), elapsed_ms)


def _child(argv: Sequence[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tflite_compress.runtime._probe")
    parser.add_argument("model", help="a .tflite file, or - to read it from stdin")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--xnnpack", type=int, default=1)
    parser.add_argument("--reference-kernels", type=int, default=0)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args(argv)
    stage = "import"
    try:
        import numpy as np

        from .interpreter import RuntimeOptions, make_interpreter

        stage = "read"
        content = sys.stdin.buffer.read() if args.model == "-" else Path(args.model).read_bytes()
        stage = "load"
        options = RuntimeOptions(threads=args.threads, xnnpack=bool(args.xnnpack),
                                 reference_kernels=bool(args.reference_kernels), backend=args.backend)
        _, interp = make_interpreter(content, options)
        stage = "allocate"
        interp.allocate_tensors()
        stage = "invoke"
        for d in interp.get_input_details():
            if np.dtype(d["dtype"]).kind in "biufc":
                interp.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        interp.invoke()
        for d in interp.get_output_details():
            interp.get_tensor(d["index"])
    except Exception as exc:  # noqa: BLE001 - any Python-level error is reported, not raised
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
        print(json.dumps({"ok": False, "stage": stage, "error": msg}), flush=True)
        return 0
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
