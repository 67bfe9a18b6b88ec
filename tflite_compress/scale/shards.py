"""The sharded form of a teacher-cache entry: `<cache_dir>/<key>.shards/`.

    manifest.json            written last, only when every shard is there
    shard-00000.npz ...      rows [start, start + n) of one split's arrays

The manifest keys the entry by the same hash as the single-file form (`<key>.npz`) and lists,
per shard, its file, `size_bytes`, `sha256` and the rows it holds of each array; per array the
total rows, dtype and row shape; and the scalars (`parameters`). Reading verifies all of it and
concatenates the shards in row order, so a reader gets exactly the dict the single-file form
holds. A missing, truncated or altered shard is an `InputError` naming the file: never a
silently partial cache. A run that dies before the manifest leaves no entry (only shard files
the next run overwrites).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError, RunError
from ..files import atomic_write_bytes, atomic_write_json

MANIFEST = "manifest.json"
FORMAT = "tflite-compress-teacher-shards"
VERSION = 1


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def write_shard(folder: str | os.PathLike, index: int, start: int, arrays: dict[str, np.ndarray]) -> dict:
    """Write one shard atomically; return its manifest entry (file, size_bytes, sha256, rows)."""
    rows = {name: len(a) for name, a in arrays.items()}
    if len(set(rows.values())) > 1:
        raise RunError(f"shard {index}: arrays of different lengths {rows}")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(Path(folder) / shard_name(index), data)
    return {"file": shard_name(index), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "start": int(start), "rows": rows,
            "arrays": {n: {"dtype": str(a.dtype), "row_shape": list(a.shape[1:])} for n, a in arrays.items()}}


def write_manifest(folder: str | os.PathLike, key: str, shards: list[dict], expected_rows: dict[str, int],
                   scalars: dict[str, int]) -> dict:
    """Check that `shards` cover every array's rows exactly once, then write the manifest (last)."""
    shards = sorted(shards, key=lambda s: (s["file"]))
    arrays: dict[str, dict] = {}
    covered: dict[str, list[tuple[int, int]]] = {}
    for s in shards:
        for name, n in s["rows"].items():
            covered.setdefault(name, []).append((s["start"], n))
            arrays.setdefault(name, dict(s["arrays"][name], rows=0))["rows"] += n
    for name, rows in expected_rows.items():
        spans = sorted(covered.get(name, []))
        pos = 0
        for start, n in spans:
            if start != pos:
                raise RunError(f"{folder}: array {name!r} has rows {pos}..{start} missing or repeated across shards")
            pos += n
        if pos != rows:
            raise RunError(f"{folder}: array {name!r} has {pos} rows in its shards, expected {rows}")
    extra = sorted(set(covered) - set(expected_rows))
    if extra:
        raise RunError(f"{folder}: shards hold arrays {extra} that were not asked for")
    manifest = {"format": FORMAT, "version": VERSION, "key": key, "arrays": arrays,
                "scalars": {k: int(v) for k, v in scalars.items()},
                "shards": [{k: s[k] for k in ("file", "size_bytes", "sha256", "start", "rows", "worker", "seconds") if k in s}
                           for s in shards]}
    atomic_write_json(Path(folder) / MANIFEST, manifest)
    return manifest


def read_manifest(folder: str | os.PathLike, key: str | None = None) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable teacher-cache manifest ({exc}); delete {folder} to recompute") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise InputError(f"{path}: not a {FORMAT} v{VERSION} manifest; delete {folder} to recompute")
    if key is not None and manifest.get("key") != key:
        raise InputError(f"{path}: manifest is for key {manifest.get('key')!r}, expected {key!r}")
    return manifest


def load_shards(folder: str | os.PathLike, key: str | None = None) -> dict[str, np.ndarray]:
    """The entry's arrays (and scalars as 0-d arrays), verified against the manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder, key)
    pieces: dict[str, list[tuple[int, np.ndarray]]] = {name: [] for name in manifest["arrays"]}
    hint = f"delete {folder} or rerun teacher-outputs with --force to recompute"
    for s in manifest["shards"]:
        path = folder / s["file"]
        try:
            data = path.read_bytes()
        except OSError:
            raise InputError(f"{path}: teacher-cache shard missing ({hint})") from None
        if len(data) != s["size_bytes"] or hashlib.sha256(data).hexdigest() != s["sha256"]:
            raise InputError(f"{path}: teacher-cache shard corrupt: {len(data)} bytes, sha256 differs from "
                             f"the manifest's ({s['size_bytes']} bytes) ({hint})")
        with np.load(io.BytesIO(data)) as z:
            for name, n in s["rows"].items():
                if name not in z.files or len(z[name]) != n:
                    raise InputError(f"{path}: shard lacks {n} rows of {name!r} listed in the manifest ({hint})")
                pieces[name].append((s["start"], z[name]))
    out: dict[str, np.ndarray] = {}
    for name, meta in manifest["arrays"].items():
        parts = sorted(pieces[name], key=lambda p: p[0])
        arr = (np.concatenate([p[1] for p in parts]) if parts
               else np.zeros((0, *meta["row_shape"]), meta["dtype"]))
        if len(arr) != meta["rows"]:
            raise InputError(f"{folder}: {name!r} has {len(arr)} rows in its shards, manifest says {meta['rows']} ({hint})")
        out[name] = arr
    for name, value in manifest.get("scalars", {}).items():
        out[name] = np.array(value)
    return out
