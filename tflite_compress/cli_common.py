"""What every CLI command shares: exit codes and output.

Exit codes: 0 success, 1 a validation gate was missed (GateError), 2 bad input (InputError):
a one-line error naming the file or option.
"""

from __future__ import annotations

import json
import sys

import click
import numpy as np

from .errors import GateError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UsageFailure(click.ClickException):
    exit_code = 2


def fail(exc: Exception) -> None:
    """Raise the CLI's form of a library error: exit 1 for a missed gate, else exit 2."""
    if isinstance(exc, GateError):
        click.echo(f"Gate missed: {exc}", err=True)
        sys.exit(1)
    raise UsageFailure(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def emit(obj: dict, as_json: bool, human: str) -> None:
    """Print `obj` as JSON with --json, else the human table."""
    click.echo(json.dumps(obj, indent=2, default=_json_default) if as_json else human)
