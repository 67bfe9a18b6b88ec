"""CLI commands of the runtime harness: `eval` (its body), `bench`, `inspect`, `compare`.

Nothing here imports TensorFlow, except `eval --baseline MODEL.h5/.keras/SavedModel`, which
imports it lazily in that branch only. Every model file is untrusted: its flatbuffer is
verified, then it is loaded and invoked once in a child process (`--trust-model` skips the
child), before this process loads it.

Exit codes: 0 success, 1 a gate was missed, 2 bad input (a one-line error naming the file or option).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import click
import numpy as np

from .cli_common import emit as _emit
from .cli_common import guarded
from .config import OOS_SCORES, OOSConfig
from .errors import InputError
from .runtime import RuntimeOptions


def _int_list(option: str, value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{option} {value!r}: expected comma-separated integers, e.g. 1,2,4") from None
    if not out or any(v < 1 or v > 4096 for v in out):
        raise InputError(f"{option} {value!r}: expected integers from 1 to 4096")
    return out


def runtime_options(func: Callable) -> Callable:
    """The interpreter and untrusted-file options every runtime command takes."""
    options = [
        click.option("--threads", default="1", show_default=True,
                     help="Interpreter threads (bench: a comma-separated list, e.g. 1,2)."),
        click.option("--xnnpack/--no-xnnpack", default=True, show_default=True,
                     help="Apply LiteRT's default XNNPACK delegate."),
        click.option("--reference-kernels", is_flag=True,
                     help="Use the reference kernels (bit-exact baseline, slow); implies --no-xnnpack."),
        click.option("--backend", type=click.Choice(["auto", "ai_edge_litert", "tflite_runtime", "tensorflow"]),
                     default="auto", show_default=True, help="Interpreter package."),
        click.option("--trust-model", is_flag=True,
                     help="Skip the child-process probe of the model (the flatbuffer is still verified)."),
        click.option("--probe-timeout", "probe_timeout_s", type=click.FloatRange(0.5, 3600), default=20.0,
                     show_default=True, help="Seconds the child-process probe may take."),
        click.option("--json", "as_json", is_flag=True, help="Print the report as JSON."),
    ]
    for opt in reversed(options):
        func = opt(func)
    return func


def _options(threads: int, xnnpack: bool, reference_kernels: bool, backend: str) -> RuntimeOptions:
    return RuntimeOptions(threads=threads, xnnpack=xnnpack and not reference_kernels,
                          reference_kernels=reference_kernels, backend=backend)


def _single_threads(value: str) -> int:
    threads = _int_list("--threads", value)
    if len(threads) != 1 or threads[0] > 64:
        raise InputError(f"--threads {value!r}: expected one integer from 1 to 64 for this command")
    return threads[0]


def _size_bytes(option: str, value: str | None) -> int | None:
    """'262144', '256K', '256KB', '1.5MB' -> bytes (KB = 1024 bytes)."""
    if value is None:
        return None
    text = value.strip().upper().removesuffix("B")
    scale = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    try:
        number = float(text[:-1] if scale > 1 else text)
    except ValueError:
        raise InputError(f"{option} {value!r}: expected a size such as 262144, 256KB or 1.5MB") from None
    if number <= 0:
        raise InputError(f"{option} {value!r}: expected a positive size")
    return int(number * scale)


@click.command("eval")
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
@click.option("--max-size", default=None,
              help="Gate: fail (exit 1) if MODEL's file is larger than this (bytes, or e.g. 256KB, 1.5MB; KB = 1024 B).")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Rows per invoke (the input is resized when the model allows it, else batch 1).")
@click.option("--predictions", "predictions_path", type=click.Path(path_type=Path), default=None,
              help="Write one JSON line per row (id, text, gold, predicted, score, runner_up, margin) to this "
                   ".jsonl file, to diff runs with `compare A.jsonl B.jsonl`.")
@runtime_options
@guarded
def eval_cmd(model: Path, data_path: Path, text_column, label_column, min_accuracy, max_drop, baseline, max_size,
             batch_size, predictions_path, threads, xnnpack, reference_kernels, backend, trust_model, probe_timeout_s, as_json) -> None:
    """Task metrics of MODEL.tflite on labelled data, in the LiteRT interpreter (no TensorFlow)."""
    from .runtime.gates import check_gates, format_eval, run_eval

    options = _options(_single_threads(threads), xnnpack, reference_kernels, backend)
    report = run_eval(model, data_path, text_column, label_column, min_accuracy, max_drop, baseline, batch_size,
                      options, trust_model, probe_timeout_s, max_size_bytes=_size_bytes("--max-size", max_size),
                      predictions_path=predictions_path)
    _emit(report, as_json, format_eval(report))
    check_gates(report)


# ---------------------------------------------------------------- bench

@click.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes, comma-separated (e.g. 1,8).")
@click.option("--runs", type=click.IntRange(1, 1_000_000), default=200, show_default=True, help="Timed invokes per configuration.")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=20, show_default=True, help="Untimed invokes first.")
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Texts for the end-to-end timing (CSV/JSONL/CLINC json); default: random vocab words.")
@click.option("--profile", is_flag=True,
              help="Also time every op alone (a one-op model cut from the file, fed the values of a real run) "
                   "on the kernel it runs on: XNNPACK or builtin (and reference), per batch size, first thread count.")
@runtime_options
@guarded
def bench_cmd(model: Path, batches: str, runs: int, warmup: int, data_path: Path | None, profile: bool, threads: str,
              xnnpack: bool, reference_kernels: bool, backend: str, trust_model: bool, probe_timeout_s: float,
              as_json: bool) -> None:
    """Latency of MODEL.tflite: init, first invoke, p50/p90/p99/mean microseconds, throughput, peak memory.

    Times invoke() alone and, for text models (model_info.json + vocab.txt beside it), tokenize + invoke.
    With --profile, also the time of each op and which kernel runs it (XNNPACK, builtin), and the
    XNNPACK partition count.
    """
    from .runtime import load_bundle
    from .runtime.bench import bench_model, format_bench

    thread_list = _int_list("--threads", threads)
    if max(thread_list) > 64:
        raise InputError(f"--threads {threads!r}: at most 64")
    batch_list = _int_list("--batch", batches)
    options = _options(thread_list[0], xnnpack, reference_kernels, backend)
    bundle = load_bundle(model, options, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    texts = None
    if bundle.tokenizer is not None:
        if data_path is not None:
            from .data import load_text_file

            texts = list(load_text_file(data_path).texts)
        else:
            rng = np.random.default_rng(0)
            words = [w for w in bundle.tokenizer.vocab[2:] if not w.startswith(bundle.tokenizer.config.suffix_indicator)]
            words = words or ["hello"]
            texts = [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(64)]
    elif data_path is not None:
        raise InputError(f"--data {data_path}: end-to-end timing needs a text model (model_info.json with tokenizer)")
    vocab = len(bundle.tokenizer.vocab) if bundle.tokenizer is not None else None
    report = bench_model(bundle.model.content, thread_list, batch_list, runs, warmup, options.xnnpack,
                         reference_kernels, backend, texts, bundle.tokenizer, vocab)
    report = {"model": str(model), "backend": bundle.model.backend, "end_to_end": texts is not None, **report}
    text = format_bench(report)
    if profile:
        from .runtime import random_inputs
        from .runtime.delegation import delegation_report, format_profile, profile_ops

        deleg = delegation_report(bundle.model.content, options)
        report["profile"] = []
        for batch in batch_list:
            if batch != bundle.model.input_shape[0] and not bundle.model.resizable_batch:
                continue
            x = bundle.model.quantize_input(random_inputs(bundle.model, batch, seed=0, vocab_size=vocab))
            p = profile_ops(bundle.model.content, options, x, runs=min(runs, 200), warmup=warmup, delegation=deleg)
            report["profile"].append(p)
            text += "\n" + format_profile(p)
    _emit(report, as_json, text)


# ---------------------------------------------------------------- inspect

@click.command("inspect")
@click.argument("model", type=click.Path(path_type=Path))
@runtime_options
@guarded
def inspect_cmd(model: Path, threads: str, xnnpack: bool, reference_kernels: bool, backend: str, trust_model: bool,
                probe_timeout_s: float, as_json: bool) -> None:
    """Inside MODEL.tflite: signatures, inputs/outputs with quantization, ops, float islands, custom/Flex ops, sizes.

    Read from the verified flatbuffer, so a model the interpreter cannot load (Flex ops) is still described.
    """
    from .runtime.inspection import format_inspect, inspect_file

    options = _options(_single_threads(threads), xnnpack, reference_kernels, backend)
    report = inspect_file(model, options, trust_model, probe_timeout_s)
    _emit(report, as_json, format_inspect(report))


# ---------------------------------------------------------------- compare

@click.command("compare")
@click.argument("model_a", type=click.Path(path_type=Path))
@click.argument("model_b", type=click.Path(path_type=Path), required=False)
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Inputs: .npz (x) or text (CSV/JSONL/CLINC json, tokenized with A's vocab). Default: random valid inputs.")
@click.option("--samples", type=click.IntRange(1, 1_000_000), default=256, show_default=True,
              help="Random inputs when no --data (token ids in [0, vocab) for int32 inputs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True)
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Gate: fail (exit 1) if top-1 agreement is below this.")
@runtime_options
@guarded
def compare_cmd(model_a: Path, model_b: Path | None, data_path: Path | None, samples: int, seed: int, batch_size: int,
                min_agreement: float | None, threads: str, xnnpack: bool, reference_kernels: bool, backend: str,
                trust_model: bool, probe_timeout_s: float, as_json: bool) -> None:
    """Run the same inputs through A and B: top-1 agreement, mean/max abs error, KL divergence.

    B defaults to A: `compare A --reference-kernels` runs A with XNNPACK against A with the reference
    kernels. With B given, --reference-kernels runs B on the reference kernels.

    A and B may instead be two predictions files (.jsonl, from `eval --predictions`) of the same rows:
    top-1 agreement per example, and each disagreement with both margins.
    """
    from .runtime.compare import (
        compare_models,
        compare_predictions,
        format_compare,
        format_compare_predictions,
    )
    from .runtime.gates import check_gates
    from .runtime.predictions import is_predictions_file

    if is_predictions_file(model_a) or is_predictions_file(model_b):
        if not (is_predictions_file(model_a) and is_predictions_file(model_b)):
            raise InputError(f"compare {model_a} {model_b or ''}: give two .tflite models or two .jsonl predictions "
                             "files, not one of each".replace("  ", " "))
        if data_path is not None or reference_kernels:
            raise InputError(f"{'--data' if data_path is not None else '--reference-kernels'}: not used when "
                             "comparing predictions files (they already hold each run's outputs)")
        report = compare_predictions(model_a, model_b, min_agreement=min_agreement)
        _emit(report, as_json, format_compare_predictions(report))
        check_gates(report)
        return
    n_threads = _single_threads(threads)
    if model_b is None and not reference_kernels:
        raise InputError("compare needs MODEL_B, or --reference-kernels to compare MODEL_A with itself on reference kernels")
    report = compare_models(model_a, model_b, _options(n_threads, xnnpack, False, backend),
                            _options(n_threads, xnnpack, reference_kernels, backend), data_path=data_path,
                            samples=samples, seed=seed, batch_size=batch_size, min_agreement=min_agreement,
                            trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    _emit(report, as_json, format_compare(report))
    check_gates(report)


# ---------------------------------------------------------------- calibrate-oos

@click.command("calibrate-oos")
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Labelled validation texts (CSV/TSV/JSONL, or CLINC-style JSON: its val + oos_val).")
@click.option("--text-column", default=None, help="Text column (default: text, utterance, sentence or query).")
@click.option("--label-column", default=None, help="Label column (default: label, intent, category or class).")
@click.option("--oos-label", default=None, help="The out-of-scope label (default: model_info.json's oos_label).")
@click.option("--target-oos-recall", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="The lowest threshold reaching this out-of-scope recall on the data "
                   "(default: the one maximising accuracy with out-of-scope as a class).")
@click.option("--score", type=click.Choice(OOS_SCORES), default=OOSConfig().score, show_default=True,
              help="What the threshold applies to: the largest logit, or the maximum softmax probability.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@guarded
def calibrate_oos_cmd(model: Path, data_path: Path, text_column, label_column, oos_label, target_oos_recall,
                      score: str, as_json: bool) -> None:
    """Choose MODEL's out-of-scope rule (a threshold on the largest logit or the max softmax) on
    labelled validation data and store it in the model_info.json beside MODEL (read by eval,
    export-android and the app)."""
    from .oos import calibrate_model_file

    r = calibrate_model_file(model, data_path, text_column, label_column, target_oos_recall, oos_label, score=score)
    v, a = r["val"], r["val_argmax"]
    _emit(r, as_json, (f"{model}: oos rule {r['oos_rule']['score']} < {r['threshold']:.4f} -> {r['oos_rule']['label']!r} "
                       f"({r['scheme']} on {r['samples']} rows of {data_path})\n"
                       f"  {'':<24}{'arg-max':>10}{'rule':>10}\n"
                       + "\n".join(f"  {k:<24}{a[k]:>10.4f}{v[k]:>10.4f}" for k in
                                   ("accuracy", "accuracy_in_scope", "recall_out_of_scope", "precision_out_of_scope"))))


COMMANDS: Sequence[click.Command] = (eval_cmd, bench_cmd, inspect_cmd, compare_cmd, calibrate_oos_cmd)


def register(group: click.Group) -> None:
    """Add `eval`, `bench`, `inspect`, `compare` and `calibrate-oos` to the CLI group."""
    for cmd in COMMANDS:
        group.add_command(cmd)
