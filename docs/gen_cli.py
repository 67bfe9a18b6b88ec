"""Write docs/cli.md from the real `--help` of every command (`--check`: fail if stale).

    .venv/bin/python docs/gen_cli.py          # rewrite docs/cli.md
    .venv/bin/python docs/gen_cli.py --check  # exit 1 when docs/cli.md differs
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.testing import CliRunner

from tflite_compress.cli import main
from tflite_compress.cli_common import EXIT_CODES_HELP

OUT = Path(__file__).resolve().parent / "cli.md"


def render() -> str:
    runner = CliRunner()
    parts = [
        "# CLI reference",
        "",
        "Generated from the real `--help` by `docs/gen_cli.py`; a test fails when it is stale.",
        EXIT_CODES_HELP,
        "",
        "```text",
        runner.invoke(main, ["--help"], prog_name="tflite-compress", terminal_width=100).output.rstrip(),
        "```",
    ]
    commands = []
    for name in sorted(main.commands):
        commands.append([name])
        sub = main.commands[name]
        if isinstance(sub, click.Group):  # e.g. `cache list`, `cache clear`
            commands += [[name, s] for s in sorted(sub.commands)]
    for words in commands:
        out = runner.invoke(main, [*words, "--help"], prog_name="tflite-compress", terminal_width=100).output
        parts += ["", f"## `tflite-compress {' '.join(words)}`", "", "```text", out.rstrip(), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python docs/gen_cli.py", file=sys.stderr)
            sys.exit(1)
    else:
        OUT.write_text(text)
