"""`tflite-compress teacher-outputs`: the teacher's pass on Apache Beam (thin over `scale/beam_teacher.py`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from .cli_common import CONTEXT, emit, guarded

RUNNER_HELP = """Runner options after the command's own go to Beam unchanged, e.g.
--runner DirectRunner --direct_num_workers 2 --direct_running_mode multi_processing
(on a cluster: DataflowRunner, FlinkRunner, SparkRunner and their options; see docs/scale.md)."""


@click.command("teacher-outputs", context_settings=dict(CONTEXT, ignore_unknown_options=True))
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="CLINC-style JSON (default: calibration_data/clinc150/data_full.json), as `demo` reads it.")
@click.option("--recipe", "recipe_path", default=None,
              help="The recipe the pipeline will run (its teacher, tokenizer and augmentation settings make the key).")
@click.option("--teacher", "teacher_path", default=None,
              help="A Keras teacher file (.keras/.h5) instead of the recipe's teacher (kind keras).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True, help="Teacher cache the pipeline reads (demo: RUNS_DIR/cache).")
@click.option("--shard-rows", type=int, default=2048, show_default=True, help="Texts per shard (one work item).")
@click.option("--threads-per-worker", type=int, default=None,
              help="TensorFlow intra-op threads in each worker (default: TensorFlow's, all cores).")
@click.option("--force", is_flag=True, help="Recompute even when a verified entry exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.argument("runner_args", nargs=-1, type=click.UNPROCESSED)
@guarded
def teacher_outputs_cmd(data_path, recipe_path, teacher_path, cache_dir, shard_rows, threads_per_worker, force,
                        as_json, runner_args) -> None:
    """Compute the teacher cache on Apache Beam: sharded .npz files plus a manifest (sizes, sha256),
    under the key the pipeline looks up, so `demo` with the same data, recipe and cache finds it.

    A run that fails leaves no manifest (the next run recomputes); a missing or corrupt shard is
    an error when the cache is read.
    """
    import logging

    from .data import CLINC150_FILE, load_clinc150
    from .recipes import load_recipe
    from .scale.beam_teacher import pipeline_teacher_inputs, run_teacher_pipeline

    recipe = load_recipe(recipe_path)
    if teacher_path:
        recipe = recipe.replace(teacher=dataclasses.replace(recipe.teacher, kind="keras", model_path=str(teacher_path)))
    dataset = load_clinc150(data_path or CLINC150_FILE)
    texts, labels, ids = pipeline_teacher_inputs(dataset, recipe)
    args = list(runner_args)
    if not any(a.startswith("--default_sdk_harness_log_level") for a in args):
        args += ["--default_sdk_harness_log_level", "WARNING"]  # workers' INFO lines would drown the output
    # A failing worker's traceback is logged by the runner; the error is reported here, on one line.
    logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    res = run_teacher_pipeline(recipe.teacher, texts, labels, cache_dir, args, student_ids=ids,
                               shard_rows=shard_rows, intra_op_threads=threads_per_worker, force=force,
                               num_labels=len(dataset.label_names), log=log)
    report = {"key": res.key, "folder": str(res.folder), "texts": res.rows, "shards": res.shards,
              "seconds": round(res.seconds, 2), "texts_per_second": round(res.rows_per_second, 1),
              "cache_hit": res.cache_hit, "runner_args": list(runner_args)}
    human = (f"teacher cache {res.key}: {res.rows} texts in {res.shards} shards -> {res.folder}/"
             + (" (already there, verified)" if res.cache_hit
                else f"\n{res.seconds:.1f} s, {res.rows_per_second:.0f} texts/s including worker start-up"))
    emit(report, as_json, human)


teacher_outputs_cmd.help = (teacher_outputs_cmd.help or "") + "\n\n" + RUNNER_HELP




@click.command("train-student", context_settings=CONTEXT)
@click.option("--strategy", type=click.Choice(["none", "mirrored", "multiworker"]), default="none", show_default=True,
              help="tf.distribute strategy; multiworker reads the cluster from TF_CONFIG (one process per worker).")
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="CLINC-style JSON (default: calibration_data/clinc150/data_full.json).")
@click.option("--recipe", "recipe_path", default=None, help="A built-in recipe name or a recipe .json path.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"),
              show_default=True, help="Teacher cache (e.g. written by teacher-outputs on Beam).")
@click.option("--timeout", "timeout_seconds", type=int, default=120, show_default=True,
              help="Seconds a multiworker run waits for its peers before failing.")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder, written by the chief only (model_int8.tflite, vocab, labels, report.json).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def train_student_cmd(strategy, data_path, recipe_path, cache_dir, timeout_seconds, out_dir, as_json) -> None:
    """Distill, prune and QAT the recipe's student under a tf.distribute strategy, then convert to
    INT8 and score it in the LiteRT interpreter (the pipeline's training stages, on N workers).

    Run the same command on every worker with its own TF_CONFIG (docs/scale.md).
    """
    from .scale.distribute import make_strategy, run_training

    make_strategy(strategy, timeout_seconds)  # before any other TensorFlow op
    from .data import CLINC150_FILE, load_clinc150
    from .recipes import load_recipe

    recipe = load_recipe(recipe_path)
    dataset = load_clinc150(data_path or CLINC150_FILE)
    log = (lambda m: None) if as_json else (lambda m: click.echo(m, err=True))
    report = run_training(dataset, recipe, cache_dir, strategy, out_dir, timeout_seconds, log=log)
    t = report["int8"]["test"]
    emit(report, as_json, f"{strategy} x{report['replicas']}: INT8 test accuracy {100 * t['accuracy']:.2f}% "
                          f"(float {100 * report['float_test_accuracy']:.2f}%), "
                          f"sparsity {report['sparsity'] or 0:.1%}, {report['int8']['size_bytes']:,} bytes"
                          + (f"\nwritten: {out_dir}/" if out_dir and report["chief"] else ""))


def register(group: click.Group) -> None:
    group.add_command(teacher_outputs_cmd)
    group.add_command(train_student_cmd)
