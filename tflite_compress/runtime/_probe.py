"""Load an untrusted `.tflite` in a child process first: a crash or hang there is not ours.

`probe_model` runs `python -m tflite_compress.runtime._probe MODEL ...` with a time limit and a
memory cap. The child builds the interpreter with the options the caller will use, allocates
tensors and invokes once on zero inputs, then prints one JSON line. A child that dies by a
signal or overruns the limit means the file is hostile or corrupt: `InputError`.
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

from ..errors import InputError

DEFAULT_TIMEOUT_S = 20.0
TF_IMPORT_ALLOWANCE_S = 120.0  # --backend tensorflow: the child imports TensorFlow first (20 s on a busy box)
CHILD_MEMORY_BYTES = 16 << 30  # address-space cap of the child: a hostile shape cannot swap the box


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the child saw: loaded (and invoked) or a Python-level error message."""

    ok: bool
    error: str | None = None
    stage: str | None = None
    elapsed_ms: float = 0.0


def _child_command(threads: int, xnnpack: bool, reference_kernels: bool, backend: str) -> list[str]:
    return [sys.executable, "-m", "tflite_compress.runtime._probe", "-", "--threads", str(threads),
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
    """Load + allocate + invoke a model once in a child process; raise `InputError` if the child crashes or hangs.

    Args:
        content: the `.tflite` bytes (already verified with `flatbuffer.parse_model`), sent on the child's stdin,
            so the child sees exactly the bytes the caller will load.
        name: the file name, for messages.
        threads, xnnpack, reference_kernels, backend: the interpreter options the caller will use.
        timeout_s: wall-clock limit of the child.
        command: replaces the child's command line (tests use it to simulate crashes and hangs).

    Returns:
        `ProbeResult(ok=False, error=...)` when the interpreter reported an ordinary error.
    """
    import time

    cmd = list(command) if command is not None else _child_command(threads, xnnpack, reference_kernels, backend)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "tensorflow" and command is None:
        timeout_s += TF_IMPORT_ALLOWANCE_S
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout_s, env=env, input=content,
                              preexec_fn=_limit_child if os.name == "posix" else None)
    except subprocess.TimeoutExpired:
        raise InputError(f"{name}: interpreter timed out loading it (over {timeout_s:g} s in a child process)") from None
    elapsed_ms = (time.perf_counter() - t0) * 1e3
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        raise InputError(f"{name}: interpreter crashed loading it ({sig} in a child process)")
    lines = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("{")]
    try:
        report = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        report = None
    if not isinstance(report, dict):
        raise InputError(f"{name}: interpreter crashed loading it (child exited with code {proc.returncode}, no report)")
    if report.get("ok"):
        return ProbeResult(True, elapsed_ms=elapsed_ms)
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
    stage = "read"
    try:
        import numpy as np

        from .interpreter import RuntimeOptions, make_interpreter

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
