"""Writes that survive faults: atomic files, whole run folders, locks, and write errors named.

- `atomic_write_*`: a temp file in the target folder (named with the writer's pid), then
  `os.replace`: a file is whole or absent.
- `staged_dir(out_dir)`: a temp folder `.NAME.tmp-PID-XXXX` beside `out_dir`, put in place only
  when the block succeeds. It holds a lock per run name (`.NAME.lock`: a second run of that name
  refuses, naming the holder's pid), removes temp folders left by dead processes (SIGKILL, power
  loss) and turns a failed write (disk full, file too large, read-only, no permission) into one
  `RunError` naming the path; the previous `out_dir` stays as it was.
- `file_lock(path)`: an exclusive `flock` lock whose file is removed on release.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import GateError, InputError, RunError

# errno values that mean "this write cannot be done here" (not a bug, not bad input).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT})
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[^.]+\.tmp$")


# ---------------------------------------------------------------- write errors


def write_failure(exc: BaseException) -> str | None:
    """The reason (`os.strerror`) when `exc` comes from a failed write, else None.

    Looks through the exception's causes, and at messages of libraries (TensorFlow's file
    writes) that carry the system's error text rather than an `OSError`.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (InputError, GateError)):
            return None
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            return os.strerror(exc.errno)
        text = str(exc)
        for code in WRITE_ERRNOS:
            if os.strerror(code) in text:
                return os.strerror(code)
        exc = exc.__cause__ or exc.__context__
    return None


def _failed_path(exc: BaseException) -> str | None:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.filename:
            return str(exc.filename)
        exc = exc.__cause__ or exc.__context__
    return None


def _named(exc: OSError, path: Path) -> OSError:
    """`exc` with `path` as its filename (a failed `write()` carries none)."""
    if exc.filename or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


# ---------------------------------------------------------------- atomic files


def sha256_file(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write_via(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> None:
    """`write(tmp)` fills a temp file beside `path` (`.NAME.PID-XXXX` + `suffix`, kept for writers that
    pick their format by it, e.g. `.h5`, `.npz`), then a rename: `path` is written whole or not at all."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _named(exc, path.parent) from None
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _named(exc, path) from None
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (a temp file `.NAME.PID-XXXX.tmp`, then a rename)."""
    def write(tmp: str) -> None:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
            f.write(data)

    atomic_write_via(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# ---------------------------------------------------------------- processes and locks


def pid_alive(pid: int) -> bool:
    """True when a process `pid` exists (ours included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Locked(RunError):
    """Another live process holds the lock (its pid in `holder`)."""

    def __init__(self, message: str, holder: int | None):
        super().__init__(message)
        self.holder = holder


def _acquire(path: Path, blocking: bool) -> int | None:
    """An fd holding an exclusive flock on `path` (created if needed), or None when busy and not blocking."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else the holder removed the file as we waited: lock the new one
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        os.close(fd)


def lock_holder(path: str | os.PathLike) -> int | None:
    """The pid written in a lock file (None when absent or unreadable)."""
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # while still holding it: a waiter re-checks the inode and locks anew
    os.close(fd)


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, wait: bool = True,
              on_wait: Callable[[int | None], None] | None = None, busy: str = "locked") -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block; the lock file is removed on release.

    When another process holds it: `wait` blocks (calling `on_wait(holder_pid)` first), else
    `Locked` is raised with `busy` and the holder's pid. A lock of a killed process is free
    (the kernel drops it); its file is reused and removed.
    """
    path = Path(path)
    try:
        fd = _acquire(path, blocking=False)
        if fd is None:
            holder = lock_holder(path)
            if not wait:
                raise Locked(f"{busy} (pid {holder if holder is not None else '?'}, lock {path})", holder)
            if on_wait is not None:
                on_wait(holder)
            fd = _acquire(path, blocking=True)
    except OSError as exc:
        raise _named(exc, path) from None
    try:
        yield
    finally:
        _release(path, fd)


def remove_stale_lock(path: Path) -> bool:
    """Remove a lock file nobody holds (left by a killed process); True when removed."""
    fd = _acquire(path, blocking=False)
    if fd is None:
        return False
    _release(path, fd)
    return True


def remove_stale_temp_files(directory: Path) -> list[Path]:
    """Remove `atomic_write_*` temp files of dead processes in `directory`; the removed paths."""
    removed = []
    for p in directory.glob(".*.tmp"):
        m = _TEMP_FILE.match(p.name)
        if m and not pid_alive(int(m["pid"])):
            with contextlib.suppress(OSError):  # gone already, or a read-only folder: leave it
                p.unlink()
                removed.append(p)
    return removed


# ---------------------------------------------------------------- run folders


@contextlib.contextmanager
def temp_files_in(directory: str | os.PathLike) -> Iterator[Path]:
    """Send Python's `tempfile` (and what uses it: the TFLite converter's SavedModel) into
    `directory/.scratch` for the block, then remove it.

    Inside a run's temp folder, scratch files share its fate: a failed write there is the run's
    write error, and a SIGKILL leaves nothing in /tmp (the next run removes the temp folder).
    """
    scratch = Path(directory) / ".scratch"
    scratch.mkdir(exist_ok=True)
    old = tempfile.tempdir
    tempfile.tempdir = str(scratch)
    try:
        yield scratch
    finally:
        tempfile.tempdir = old
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the block (delivered after it): two renames stay a pair."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _stale_dirs(out_dir: Path) -> Iterator[tuple[Path, str, int]]:
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(tmp|old)-(\d+)(-.*)?$")
    for p in out_dir.parent.iterdir():
        m = pattern.match(p.name)
        if m:
            yield p, m[1], int(m[2])


def recover_stale(out_dir: Path, log: Callable[[str], None] | None = None) -> list[str]:
    """Tidy what a killed run of `out_dir` left (call with the run's lock held); what was done.

    A temp folder `.NAME.tmp-PID-*` of a dead pid is removed. A previous run `.NAME.old-PID`
    (a kill between the two renames of `replace_dir`) is put back when `out_dir` is missing,
    else removed.
    """
    done = []
    for p, kind, pid in sorted(_stale_dirs(out_dir)):
        if pid != os.getpid() and pid_alive(pid):
            continue
        if kind == "old" and not out_dir.exists():
            os.replace(p, out_dir)
            done.append(f"restored {out_dir} from {p.name} (a run was killed while replacing it)")
        else:
            shutil.rmtree(p, ignore_errors=True)
            done.append(f"removed {p} (left by pid {pid}, no longer running)")
    for line in done:
        if log is not None:
            log(line)
    return done


@contextlib.contextmanager
def staged_dir(out_dir: str | os.PathLike, log: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Yield a temp folder beside `out_dir`; when the block ends without error it replaces `out_dir`.

    Anything that stops the block (an error, Ctrl-C, SIGTERM) removes the temp folder and leaves
    an existing `out_dir` as it was: a run folder is whole, or it is the previous one. While the
    block runs, the run name is locked (`.NAME.lock`): a second run of the same name raises
    `Locked` (exit 3) naming the holder's pid. A write that fails (ENOSPC, EFBIG, EROFS, EACCES)
    becomes a `RunError` naming the path.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_error(exc, out_dir, None) from None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(file_lock(out_dir.parent / f".{out_dir.name}.lock", wait=False,
                                          busy=f"{out_dir} is being written by another run"))
        except Locked as exc:
            raise Locked(f"{exc}; wait for it to finish or choose another run name", exc.holder) from None
        except OSError as exc:
            raise _write_error(exc, out_dir, None) from None
        recover_stale(out_dir, log)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-{os.getpid()}-", dir=out_dir.parent))
        except OSError as exc:
            raise _write_error(exc, out_dir, None) from None
        try:
            yield tmp
            replace_dir(tmp, out_dir)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, Exception) and write_failure(exc):
                raise _write_error(exc, out_dir, tmp) from exc
            raise


def _write_error(exc: BaseException, out_dir: Path, tmp: Path | None) -> RunError:
    reason = write_failure(exc) or str(exc)
    where = _failed_path(exc) or str(out_dir)
    if tmp is not None:
        where = where.replace(str(tmp), str(out_dir))
    # EACCES/EPERM also come from reads: "write" only for a path of the run (or no path at all).
    ours = Path(where).resolve().is_relative_to(out_dir.parent.resolve())
    verb = "write" if ours or reason in (os.strerror(errno.ENOSPC), os.strerror(errno.EFBIG)) else "access"
    return RunError(f"cannot {verb} {where}: {reason}; nothing was written, "
                    f"{out_dir} is {'as it was' if out_dir.exists() else 'not created'}")


def replace_dir(tmp: Path, out_dir: Path) -> None:
    """Put `tmp` at `out_dir`; an existing `out_dir` is replaced only once `tmp` is whole.

    SIGINT/SIGTERM wait until both renames are done; a SIGKILL between them leaves the previous
    folder as `.NAME.old-PID`, which the next run of that name puts back (`recover_stale`).
    """
    old = None
    with _signals_deferred():
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            if old is not None:
                os.replace(old, out_dir)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
