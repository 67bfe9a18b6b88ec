"""Cache entries that check themselves: a damaged entry costs that entry, never the run.

Every entry is one file: its payload, then a footer (`MAGIC`, the payload's size, its SHA-256).
`EntryStore.read` verifies the footer and decodes the payload; a truncated, bit-flipped or
undecodable entry is moved aside to `NAME.corrupt`, one log line says which file and why, and
the caller recomputes it (a read returns None, as for a miss). Writes are atomic
(`files.atomic_write_bytes`); a write that fails (disk full, read-only) is logged and the run
goes on without caching that entry. `EntryStore.lock(key)` serialises the processes that compute
one key: the second waits, then reads what the first wrote.

    store = EntryStore(cache_dir, ".npz", log)
    with store.lock(key):
        arrays = store.read(key, decode_npz)
        if arrays is None:
            arrays = compute()
            store.write(key, encode_npz(arrays))

The teacher cache (`teacher.FeatureCache`) and the distilled students' (`pipeline.student_stage`)
are built on it; a sharded cache with a manifest can keep `seal`/`unseal` (or `verify_file`) per
shard and `EntryStore` for the manifest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import numpy as np

from .files import atomic_write_bytes, file_lock, remove_stale_lock, remove_stale_temp_files, write_failure

T = TypeVar("T")
MAGIC = b"TFLC-CACHE-1"
FOOTER_BYTES = len(MAGIC) + 8 + 32
CORRUPT_SUFFIX = ".corrupt"


def default_cache_dir() -> Path:
    """The cache `compress` uses: $XDG_CACHE_HOME/tflite-compress, else ~/.cache/tflite-compress."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tflite-compress"


class CorruptEntry(Exception):
    """A cache entry failed its check; the message says why."""


def seal(payload: bytes) -> bytes:
    """`payload` followed by its footer: MAGIC, size (8 bytes, little-endian), SHA-256."""
    return payload + MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest()


def unseal(data: bytes) -> bytes:
    """The payload of a sealed entry; `CorruptEntry` when it is truncated or altered."""
    if len(data) < FOOTER_BYTES or data[-FOOTER_BYTES:-40] != MAGIC:
        if MAGIC in data:
            raise CorruptEntry(f"truncated ({len(data)} bytes, footer cut off)")
        raise CorruptEntry(f"no checksum footer ({len(data)} bytes: truncated, or written by an older version)")
    size = int.from_bytes(data[-40:-32], "little")
    payload = data[:-FOOTER_BYTES]
    if size != len(payload):
        raise CorruptEntry(f"size {len(payload)} bytes, its footer says {size}")
    if hashlib.sha256(payload).digest() != data[-32:]:
        raise CorruptEntry("checksum mismatch (bytes changed on disk)")
    return payload


def verify_file(path: str | os.PathLike, size_bytes: int, sha256: str) -> str | None:
    """Why a file does not match a manifest's size and SHA-256 hex digest (None when it does)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if len(data) != size_bytes:
        return f"size {len(data)} bytes, expected {size_bytes}"
    if hashlib.sha256(data).hexdigest() != sha256:
        return "checksum mismatch (bytes changed on disk)"
    return None


def hash_texts(texts) -> str:
    """SHA-256 of a sequence of texts (each UTF-8, NUL-terminated): the text part of cache keys."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def hash_arrays(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of named arrays (each name, dtype, shape and bytes, in name order): the array part of cache keys."""
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def decode_npz(payload: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclasses.dataclass(frozen=True)
class EntryInfo:
    key: str
    path: Path
    size_bytes: int
    status: str  # "ok", "corrupt: <why>", "moved aside" (a .corrupt file)


class EntryStore:
    """Sealed entries `KEY<suffix>` under `directory`; `directory=None` caches nothing (`--no-cache`)."""

    def __init__(self, directory: str | os.PathLike | None, suffix: str, log: Callable[[str], None] = print):
        self.directory = None if directory is None else Path(directory)
        self.suffix = suffix
        self.log = log
        if self.directory is not None and self.directory.is_dir():
            remove_stale_temp_files(self.directory)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def path(self, key: str) -> Path:
        if self.directory is None:
            raise ValueError("the cache is off")
        return self.directory / f"{key}{self.suffix}"

    def read(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """The decoded entry, or None when absent or damaged (moved aside, one log line)."""
        if self.directory is None:
            return None
        p = self.path(key)
        try:
            data = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.quarantine(p, f"unreadable ({exc.strerror})")
            return None
        try:
            return decode(unseal(data))
        except CorruptEntry as exc:
            reason = str(exc)
        except Exception as exc:  # noqa: BLE001 - any decode error means the entry cannot be trusted
            reason = f"cannot be decoded ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]})"
        self.quarantine(p, reason)
        return None

    def write(self, key: str, payload: bytes) -> bool:
        """Store `payload` sealed; False (and one log line) when the write fails: the run goes on."""
        if self.directory is None:
            return False
        try:
            atomic_write_bytes(self.path(key), seal(payload))
            return True
        except OSError as exc:
            if not write_failure(exc):
                raise
            self.log(f"cache: cannot write {exc.filename or self.path(key)} ({exc.strerror}); "
                     "continuing without caching it")
            return False

    def quarantine(self, path: Path, reason: str) -> None:
        """Move a bad entry aside to `NAME.corrupt` (kept for a look; `cache clear` removes it)."""
        aside = path.with_name(path.name + CORRUPT_SUFFIX)
        try:
            os.replace(path, aside)
            where = f"moved to {aside.name}"
        except OSError as exc:
            where = f"could not move it aside ({exc.strerror})"
        self.log(f"cache: {path}: {reason}; {where}, recomputing")

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold `key` while computing it: another process computing it waits (one log line)."""
        if self.directory is None:
            yield
            return
        held = contextlib.ExitStack()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            held.enter_context(file_lock(
                self.directory / f".{key}.lock", wait=True,
                on_wait=lambda pid: self.log(f"cache: waiting for pid {pid}, which is computing {key}")))
        except OSError as exc:
            if not write_failure(exc):
                raise
            self.log(f"cache: cannot lock {exc.filename or self.directory} ({exc.strerror}); "
                     "computing without the cache")
        with held:
            yield

    def entries(self) -> list[EntryInfo]:
        """Every entry and moved-aside entry, verified (for `cache list`)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        out = []
        for p in sorted(self.directory.iterdir()):
            if p.name.startswith(".") or not p.is_file():
                continue
            if p.name.endswith(self.suffix + CORRUPT_SUFFIX):
                out.append(EntryInfo(p.name[: -len(self.suffix + CORRUPT_SUFFIX)], p, p.stat().st_size, "moved aside"))
            elif p.name.endswith(self.suffix):
                try:
                    unseal(p.read_bytes())
                    status = "ok"
                except CorruptEntry as exc:
                    status = f"corrupt: {exc}"
                out.append(EntryInfo(p.name[: -len(self.suffix)], p, p.stat().st_size, status))
        return out

    def clear(self) -> tuple[list[EntryInfo], list[str]]:
        """Remove every entry no live process is computing, moved-aside entries and stale temp files.

        Returns the removed entries and the keys skipped because a running process holds them.
        """
        removed, busy = [], []
        if self.directory is None or not self.directory.is_dir():
            return removed, busy
        for info in self.entries():
            lock_path = self.directory / f".{info.key}.lock"
            if lock_path.exists() and not remove_stale_lock(lock_path):
                busy.append(info.key)
                continue
            with contextlib.suppress(FileNotFoundError):
                info.path.unlink()
                removed.append(info)
        remove_stale_temp_files(self.directory)
        for lock_path in self.directory.glob(".*.lock"):
            remove_stale_lock(lock_path)
        return removed, busy
