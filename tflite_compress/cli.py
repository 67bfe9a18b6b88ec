"""`tflite-compress`: a thin click CLI over the library.

Exit codes (errors.EXIT_CODES): 0 success, 1 a gate was missed, 2 bad input, 3 a stage could
not do what was asked with valid input.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from . import __version__
from .cli_common import CONTEXT, EXIT_CODES_HELP, emit, guarded

@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="tflite-compress")
def main() -> None:
    """Turn Keras models into small, fast, validated INT8 .tflite files for phones."""


main.help = (main.help or "") + "\n\n" + EXIT_CODES_HELP


@main.command()
@click.option("--name", default="clinc150", show_default=True, help="Run name: outputs go to RUNS_DIR/NAME.")
@click.option("--runs-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@click.option("--recipe", "recipe_path", default=None,
              help="A built-in recipe name (int8-pruned-50 by default, int8-default, ptq-only, ...) or a recipe .json path.")
@click.option("--data", "data_path", type=click.Path(path_type=Path), help="CLINC-style JSON (default: calibration_data/clinc150/data_full.json).")
@click.option("--calibration", "calibration_path", type=click.Path(path_type=Path),
              help="Calibration folder (laid out as calibration_data/) or text file (default: calibration_data/).")
@click.option("--no-cache", is_flag=True,
              help="Compute the teacher's outputs and train the student afresh; read and write no cache (RUNS_DIR/cache).")
@click.option("--target", type=click.Choice(["npu", "cpu"]), default=None,
              help="Quantization plan (overrides the recipe's convert.target): npu = full integer; "
                   "cpu = the fastest plan measured for XNNPACK on phone CPUs.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def demo(name: str, runs_dir: Path, recipe_path: str | None, data_path: Path | None,
         calibration_path: Path | None, no_cache: bool, target: str | None, as_json: bool) -> None:
    """Compress the bundled default: CLINC150 intents, MiniLM teacher, CNN student, INT8."""
    from .data import CALIBRATION_DIR, CLINC150_FILE, calibration_texts, load_clinc150
    from .recipes import load_recipe, with_target

    recipe = with_target(load_recipe(recipe_path), target)
    dataset = load_clinc150(data_path or CLINC150_FILE)
    cal = calibration_texts(calibration_path or CALIBRATION_DIR, recipe.convert.calibration_samples, recipe.seed)
    from .pipeline import RunInputs, format_table, run_pipeline

    # Keras prints its progress on stdout: keep stdout for the JSON alone with --json.
    inputs = RunInputs(cache_dir=None if no_cache else runs_dir / "cache", calibration=cal, verbose=0 if as_json else None)
    result = run_pipeline(dataset, recipe, runs_dir / name, inputs)
    emit(result.report, as_json, format_table(result.report) + f"\n\nwritten: {result.out_dir}/")


# The other commands live beside their library code; each module adds its own.
for _module in ("commands_runtime", "commands_compress", "commands_android", "commands_report", "commands_cache",
                "commands_scale", "commands_lm"):
    importlib.import_module(f".{_module}", __package__).register(main)


if __name__ == "__main__":
    main()
