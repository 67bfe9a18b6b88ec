"""What every CLI command shares: exit codes and output.

Exit codes (one table, `errors.EXIT_CODES`): 0 success; 1 a gate was missed (GateError);
2 bad input (InputError: a one-line error naming the file, option or recipe key);
3 valid input, but a stage could not do what was asked (RunError: conversion failed, pruning
short of its target, a float op left in an integer-only file, a failed write); 130/143
interrupted by SIGINT/SIGTERM (one line; temp files removed, earlier outputs kept).
"""

from __future__ import annotations

import contextlib
import functools
import json
import signal
import sys
import threading
from typing import Callable, Iterator

import click
import numpy as np

from .errors import EXIT_CODES, GateError, Interrupted, TFLiteCompressError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
EXIT_CODES_HELP = "Exit codes: " + "; ".join(f"{code} {what}" for code, what in EXIT_CODES.items()) + "."


class CommandFailure(click.ClickException):
    """A library error at the CLI boundary: one line on stderr, the error's exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def fail(exc: TFLiteCompressError) -> None:
    """Raise the CLI's form of a library error: exit 1 gate, 2 bad input, 3 a stage could not finish."""
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, GateError):
        click.echo(f"Gate missed: {line}", err=True)
        sys.exit(1)
    raise CommandFailure(line, getattr(exc, "exit_code", 3))


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` for the block, so every `finally` and `staged_dir` cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, prev in previous.items():
            signal.signal(sig, prev)


def guarded(func: Callable) -> Callable:
    """Map the suite's errors and SIGINT/SIGTERM to their exit codes (the one place that does)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with _signals_raise():
                return func(*args, **kwargs)
        except TFLiteCompressError as exc:
            fail(exc)
        except Interrupted as exc:
            click.echo(f"Interrupted by {exc}: stopped; temp files removed, earlier outputs and cache kept", err=True)
            sys.exit(exc.exit_code)

    return wrapper


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def emit(obj: dict, as_json: bool, human: str) -> None:
    """Print `obj` as JSON with --json, else the human table."""
    click.echo(json.dumps(obj, indent=2, default=_json_default) if as_json else human)
