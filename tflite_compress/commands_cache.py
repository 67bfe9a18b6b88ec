"""`tflite-compress cache list|clear`: what the cache holds (teacher outputs, distilled students),
and emptying it safely.

`compress` caches under ~/.cache/tflite-compress (or $XDG_CACHE_HOME/tflite-compress) unless
given `--cache-dir`; `demo` under RUNS_DIR/cache. Entries a running process is computing are
left alone by `clear`.
"""

from __future__ import annotations

from pathlib import Path

import click

from .cache import default_cache_dir
from .cli_common import CONTEXT, emit, guarded

CACHE_DIR_HELP = "The cache folder (default: ~/.cache/tflite-compress, as compress uses; demo uses RUNS_DIR/cache)."


def _store(cache_dir: Path | None):
    from .teacher import FeatureCache

    return FeatureCache(cache_dir or default_cache_dir(), log=lambda line: click.echo(line, err=True)).store


@click.group("cache", context_settings=CONTEXT)
def cache_group() -> None:
    """The cache of teacher outputs and distilled students: list its entries (checked), or clear it."""


@cache_group.command("list")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=CACHE_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
@guarded
def list_cmd(cache_dir: Path | None, as_json: bool) -> None:
    """List the cache entries, each checked against its checksum (ok, corrupt, moved aside)."""
    store = _store(cache_dir)
    entries = store.entries()
    rows = [{"key": e.key, "path": str(e.path), "size_bytes": e.size_bytes, "status": e.status} for e in entries]
    total = sum(e.size_bytes for e in entries)
    human = "\n".join([f"{e.key}  {e.size_bytes / 1e6:.2f} MB  {e.status}" for e in entries]
                      + [f"{len(entries)} entries, {total / 1e6:.2f} MB in {store.directory}"])
    emit({"cache_dir": str(store.directory), "entries": rows, "total_bytes": total}, as_json, human)


@cache_group.command("clear")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help=CACHE_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
@guarded
def clear_cmd(cache_dir: Path | None, as_json: bool) -> None:
    """Remove every cache entry (and moved-aside corrupt ones); entries a running process computes are kept."""
    store = _store(cache_dir)
    removed, busy = store.clear()
    total = sum(e.size_bytes for e in removed)
    human = f"removed {len(removed)} entries ({total / 1e6:.2f} MB) from {store.directory}"
    if busy:
        human += f"; kept {len(busy)} that a running process is computing: {', '.join(busy)}"
    emit({"cache_dir": str(store.directory), "removed": [e.key for e in removed], "removed_bytes": total,
          "kept_busy": busy}, as_json, human)


def register(group: click.Group) -> None:
    """Add `cache list` and `cache clear` to the CLI group."""
    group.add_command(cache_group)
