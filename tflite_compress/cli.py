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
@click.option("--calibration", "calibration_path", type=click.Path(path_type=Path),
              help="Calibration folder (laid out as calibration_data/) or text file (default: calibration_data/).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def demo(name: str, runs_dir: Path, recipe_path: Path | None, data_path: Path | None,
         calibration_path: Path | None, as_json: bool) -> None:
    """Compress the bundled default: CLINC150 intents, MiniLM teacher, CNN student, INT8."""
    from .config import Recipe
    from .data import CALIBRATION_DIR, CLINC150_FILE, calibration_texts, load_clinc150

    try:
        recipe = Recipe.load(recipe_path) if recipe_path else Recipe()
        dataset = load_clinc150(data_path or CLINC150_FILE)
        cal = calibration_texts(calibration_path or CALIBRATION_DIR, recipe.convert.calibration_samples, recipe.seed)
        from .pipeline import format_table, run_text_pipeline

        result = run_text_pipeline(dataset, recipe, runs_dir / name, runs_dir / "cache", calibration_texts=cal)
    except (InputError, GateError) as exc:
        _fail(exc)
    except Exception as exc:  # noqa: BLE001 - conversion errors and the like
        from .convert import ConversionError

        if isinstance(exc, ConversionError):
            raise click.ClickException(str(exc)) from None
        raise
    _emit(result.report, as_json, format_table(result.report) + f"\n\nwritten: {result.out_dir}/")


from .commands_runtime import eval_command, runtime_options  # noqa: E402


@main.command("eval")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(path_type=Path),
              help="Labelled data: CSV/TSV/JSONL (text + label columns), CLINC-style JSON (its test split), "
                   "or .npz with x (inputs) and y (integer class ids).")
@click.option("--text-column", default=None, help="Text column (default: text, utterance, sentence or query).")
@click.option("--label-column", default=None, help="Label column (default: label, intent, category or class).")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Gate: fail (exit 1) below this accuracy (in-scope accuracy when an oos label exists).")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=None,
              help="Gate: fail (exit 1) if the metric is more than this below --baseline's.")
@click.option("--baseline", type=click.Path(path_type=Path), default=None,
              help="Another .tflite, or a Keras model file (.h5/.keras/SavedModel; needs TensorFlow), run on the same rows.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Rows per invoke (the input is resized when the model allows it, else batch 1).")
@runtime_options
def eval_cmd(model: Path, data_path: Path, text_column, label_column, min_accuracy, max_drop, baseline, batch_size,
             threads, xnnpack, reference_kernels, backend, trust_model, probe_timeout_s, as_json) -> None:
    """Task metrics of MODEL.tflite on labelled data, in the LiteRT interpreter (no TensorFlow)."""
    eval_command(model, data_path, text_column, label_column, min_accuracy, max_drop, baseline, batch_size,
                 threads, xnnpack, reference_kernels, backend, trust_model, probe_timeout_s, as_json)


from .commands_android import register as _register_android; _register_android(main)  # noqa: E402, E702
from .commands_runtime import register as _register_runtime; _register_runtime(main)  # noqa: E402, E702
from .commands_compress import register as _register_compress; _register_compress(main)  # noqa: E402, E702


if __name__ == "__main__":
    main()
