"""`tflite-compress compress`: the demo's stages on your own model, data and teacher (thin over `compress.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli_common import guarded




def _human(result) -> str:
    from .pipeline import format_table

    report = result.report
    lines = [format_table(report)]
    c = report.get("compress", {})
    s = report["summary"]
    if "drop_points_vs_input" in s:
        lines.append(f"drop vs the input model: {s['drop_points_vs_input']:.2f} points "
                     f"({100 * s['input_' + s['metric']]:.2f}% -> {100 * s['int8_' + s['metric']]:.2f}%)")
    from .compress import skipped_lines

    lines += skipped_lines(c.get("skipped", {}))
    for note in c.get("notes", []):
        lines.append(f"note: {note}")
    lines.append(f"\nwritten: {result.out_dir}/ (model_int8.tflite, recipe.json, report.json, ...)")
    return "\n".join(lines)


@click.command("compress")
@click.argument("model", required=False)
@click.option("--train", "train", required=True, type=click.Path(path_type=Path),
              help="Training data: CSV/TSV/JSONL (text + label columns) or .npz (x inputs, y class ids).")
@click.option("--eval", "eval_path", type=click.Path(path_type=Path),
              help="Evaluation data, same format (default: a stratified 20% holdout of --train).")
@click.option("--calibration", type=click.Path(path_type=Path),
              help="Calibration inputs for INT8 (texts or .npz x; default: a stratified sample of --train).")
@click.option("--calibration-samples", type=int, default=None,
              help="How many calibration samples (default: the recipe's convert.calibration_samples).")
@click.option("--teacher", default=None,
              help="minilm (default for text without MODEL), none, a .keras/.h5/SavedModel, a .tflite, "
                   "a .npy of train logits, or a BERT preset folder.")
@click.option("--recipe", "recipe", default=None,
              help="A built-in recipe name (int8-pruned-50 (default), int8-default, int8-pruned-75, int8-oos, "
                   "int8-finetuned, qat-only, ptq-only) or a recipe .json path.")
@click.option("--vocab", type=click.Path(path_type=Path),
              help="vocab.txt the MODEL file was trained with (text models; one token a line, [PAD] and [UNK] first).")
@click.option("--labels", "labels", type=click.Path(path_type=Path),
              help="labels.txt in the MODEL's output order (default: sorted train labels, or class ids).")
@click.option("--text-column", default=None, help="Text column (default: text, utterance, sentence or query).")
@click.option("--label-column", default=None, help="Label column (default: label, intent, category or class).")
@click.option("--oos-label", default=None,
              help="The out-of-scope label (default: oos when the data has it): its rule (a threshold on "
                   "the largest logit, or the recipe's oos.score, chosen on the eval data) is stored in "
                   "model_info.json.")
@click.option("--target-oos-recall", type=float, default=None,
              help="Choose the rule's threshold as the lowest reaching this out-of-scope recall on the "
                   "validation rows (default: the one maximising accuracy with oos as a class).")
@click.option("--unsafe", is_flag=True, help="Allow models with Lambda layers and pickled arrays (they run stored code).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Cache of teacher outputs and distilled students (default: ~/.cache/tflite-compress).")
@click.option("--target", type=click.Choice(["npu", "cpu"]), default=None,
              help="Quantization plan (overrides the recipe's convert.target): npu = full integer; "
                   "cpu = the fastest plan measured for XNNPACK on phone CPUs.")
@click.option("--no-cache", is_flag=True,
              help="Compute the teacher's outputs and train the student afresh; read and write no cache.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (written whole, or not at all).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@guarded
def compress_cmd(model, train, eval_path, calibration, calibration_samples, teacher, recipe, vocab, labels,
                 text_column, label_column, oos_label, target_oos_recall, unsafe, cache_dir, target, no_cache, out_dir,
                 as_json) -> None:
    """Compress MODEL (a model file, or a built-in student: cnn, bag) on your data into an INT8 .tflite.

    Without MODEL, text data gets the built-in CNN student and the pretrained MiniLM teacher.
    """
    from .compress import CompressOptions, compress

    opts = CompressOptions(train=train, out_dir=out_dir, model=model, eval=eval_path, calibration=calibration,
                           calibration_samples=calibration_samples, teacher=teacher, recipe=recipe, vocab=vocab,
                           labels=labels, text_column=text_column, label_column=label_column, unsafe=unsafe,
                           cache_dir=cache_dir, no_cache=no_cache, target=target, oos_label=oos_label,
                           target_oos_recall=target_oos_recall)
    result = compress(opts, verbose=0 if as_json else None)
    click.echo(json.dumps(result.report, indent=2) if as_json else _human(result))


def register(group: click.Group) -> None:
    group.add_command(compress_cmd)
