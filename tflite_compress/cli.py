"""`tflite-compress`: a thin click CLI over the library.

Exit codes: 0 success, 1 a validation gate was missed, 2 bad input (a one-line error naming
the file or option).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import __version__
from .errors import GateError, InputError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class UsageFailure(click.ClickException):
    exit_code = 2


def _fail(exc: Exception) -> None:
    if isinstance(exc, GateError):
        click.echo(f"Gate missed: {exc}", err=True)
        sys.exit(1)
    raise UsageFailure(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)


def _emit(obj: dict, as_json: bool, human: str) -> None:
    click.echo(json.dumps(obj, indent=2) if as_json else human)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="tflite-compress")
def main() -> None:
    """Turn Keras models into small, fast, validated INT8 .tflite files for phones."""


@main.command()
@click.option("--name", default="clinc150", show_default=True, help="Run name: outputs go to RUNS_DIR/NAME.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@click.option("--recipe", "recipe_path", type=click.Path(path_type=Path), help="Recipe JSON (default: the built-in one).")
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="CLINC-style JSON (default: calibration_data/clinc150/data_full.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def demo(name: str, runs_dir: Path, recipe_path: Path | None, data_path: Path | None, as_json: bool) -> None:
    """Compress the bundled default: CLINC150 intents, MiniLM teacher, CNN student, INT8."""
    from .config import Recipe
    from .data import CLINC150_FILE, load_clinc150

    try:
        recipe = Recipe.load(recipe_path) if recipe_path else Recipe()
        dataset = load_clinc150(data_path or CLINC150_FILE)
        from .pipeline import format_table, run_text_pipeline

        result = run_text_pipeline(dataset, recipe, runs_dir / name, runs_dir / "cache")
    except (InputError, GateError) as exc:
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - conversion errors and the like
        from .convert import ConversionError

        if isinstance(exc, ConversionError):
            raise click.ClickException(str(exc)) from None
        raise
    _emit(result.report, as_json, format_table(result.report) + f"\n\nwritten: {result.out_dir}/")


@main.command("eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Labelled data: CSV/TSV/JSONL (text + label columns) or CLINC-style JSON (its test split).")
@click.option("--text-column", default=None, help="Text column (default: text, utterance, sentence or query).")
@click.option("--label-column", default=None, help="Label column (default: label, intent, category or class).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Gate: fail (exit 1) below this accuracy (in-scope accuracy when an oos label exists).")
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print metrics as JSON.")
def eval_cmd(model: Path, data_path: Path, text_column, label_column, min_accuracy, threads, as_json) -> None:
    """Task metrics of MODEL.tflite on labelled data, in the LiteRT interpreter (no TensorFlow)."""
    from .data import load_text_file
    from .runtime import RuntimeOptions, evaluate_text, load_bundle

    try:
        bundle = load_bundle(model, RuntimeOptions(threads=threads))
        split = load_text_file(data_path, text_column, label_column)
        ev = evaluate_text(bundle, split.texts, split.labels, str(data_path))
    except InputError as exc:
        _fail(exc)
    m = ev["metrics"]
    key = "accuracy_in_scope" if "accuracy_in_scope" in m else "accuracy"
    result = {"model": str(model), "data": str(data_path), "metric": key, **m,
              "gate": None if min_accuracy is None else {"min_accuracy": min_accuracy, "passed": m[key] >= min_accuracy}}
    lines = [f"{model}  on  {data_path}  ({m['samples']} samples)", f"  accuracy      {m['accuracy']:.4f}",
             f"  macro-F1      {m['macro_f1']:.4f}"]
    if "accuracy_in_scope" in m:
        lines += [f"  in-scope acc  {m['accuracy_in_scope']:.4f}", f"  oos recall    {m['recall_out_of_scope']:.4f}"]
    for c in m["most_confused"][:3]:
        lines.append(f"  confused      {c['true']} -> {c['predicted']} ({c['count']})")
    if min_accuracy is not None:
        lines.append(f"  gate          {key} >= {min_accuracy}: {'PASS' if m[key] >= min_accuracy else 'FAIL'}")
    _emit(result, as_json, "\n".join(lines))
    if min_accuracy is not None and m[key] < min_accuracy:
        click.echo(f"Gate missed: {key} {m[key]:.4f} < --min-accuracy {min_accuracy}", err=True)
        sys.exit(1)


from .commands_android import register as _register_android; _register_android(main)  # noqa: E402, E702


if __name__ == "__main__":
    main()
