"""CLI commands of the runtime harness: `eval` (its body), `bench`, `inspect`, `compare`.

Nothing here imports TensorFlow, except `eval --baseline MODEL.h5/.keras/SavedModel`, which
imports it lazily in that branch only. Every model file is untrusted: its flatbuffer is
verified, then it is loaded and invoked once in a child process (`--trust-model` skips the
child), before this process loads it.

Exit codes: 0 success, 1 a gate was missed, 2 bad input (a one-line error naming the file or option).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Sequence

import click
import numpy as np

from .cli_common import emit as _emit
from .cli_common import fail as _fail
from .cli_common import guarded
from .errors import GateError, InputError
from .runtime import RuntimeOptions

TEXT_SUFFIXES = (".csv", ".tsv", ".txt", ".jsonl", ".ndjson", ".json")
KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


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


# ---------------------------------------------------------------- eval

def _load_data(bundle, data_path: Path, text_column: str | None, label_column: str | None):
    """('arrays', x, y) for .npz, ('text', texts, labels) for text files."""
    from .data import load_text_file
    from .runtime import load_npz

    if data_path.suffix.lower() == ".npz":
        x, y = load_npz(data_path)
        return "arrays", x, y
    if data_path.suffix.lower() not in TEXT_SUFFIXES:
        raise InputError(f"--data {data_path}: unsupported format {data_path.suffix!r} "
                         "(expected .npz, .csv, .tsv, .jsonl or CLINC-style .json)")
    split = load_text_file(data_path, text_column, label_column)
    return "text", split.texts, split.labels


def _model_inputs(bundle, kind: str, x, data_path: Path) -> np.ndarray:
    if kind == "arrays":
        return np.asarray(x)
    if bundle.tokenizer is None:
        raise InputError(f"{bundle.model.name}: no model_info.json with tokenizer settings beside it; "
                         f"text data ({data_path}) needs one")
    return bundle.tokenizer.encode_batch(x)


def _keras_scores(path: Path, x: np.ndarray) -> np.ndarray:
    """Outputs of a Keras model file; imports TensorFlow (only this branch does)."""
    try:
        from ._tf import keras
    except ImportError as exc:
        raise InputError(f"--baseline {path}: a Keras model needs TensorFlow ({exc}); "
                         "pip install 'tflite-compress[train]' or pass a .tflite baseline") from None
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many kinds for a bad file
        raise InputError(f"--baseline {path}: cannot load it as a Keras model ({str(exc).splitlines()[0][:200]})") from None
    try:
        return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32).reshape(len(x), -1)
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"--baseline {path}: predict failed on the data ({str(exc).splitlines()[0][:200]})") from None


def run_eval(model: Path, data_path: Path, text_column: str | None = None, label_column: str | None = None,
             min_accuracy: float | None = None, max_drop: float | None = None, baseline: Path | None = None,
             batch_size: int = 64, options: RuntimeOptions = RuntimeOptions(), trust_model: bool = False,
             probe_timeout_s: float = 20.0) -> tuple[dict, str, bool]:
    """Score MODEL on labelled data (and BASELINE on the same rows). Returns (report, table, gates passed)."""
    from .runtime import classification_metrics, label_names_for, load_bundle

    if max_drop is not None and baseline is None:
        raise InputError("--max-drop needs --baseline OTHER (a .tflite or a Keras model file)")
    bundle = load_bundle(model, options, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    kind, x_raw, y_raw = _load_data(bundle, data_path, text_column, label_column)
    names = label_names_for(bundle)
    if kind == "text":
        if not bundle.labels:
            raise InputError(f"{model}: no labels.txt beside it; text data needs the label names")
        from .data import TextSplit

        y = TextSplit(tuple(x_raw), tuple(y_raw)).label_ids(bundle.labels, str(data_path))
    else:
        y = np.asarray(y_raw)
        if y.min() < 0 or y.max() >= len(names):
            raise InputError(f"{data_path}: class ids must lie in [0, {len(names)}); found {int(y.min())}..{int(y.max())}")
    x = _model_inputs(bundle, kind, x_raw, data_path)
    oos = bundle.oos_label if bundle.labels else None
    scores = bundle.model.predict(x, batch_size=batch_size)
    m = classification_metrics(y, scores.argmax(axis=1), names, oos)
    key = "accuracy_in_scope" if "accuracy_in_scope" in m else "accuracy"
    report: dict = {"model": str(model), "data": str(data_path), "data_kind": kind, "metric": key, **m,
                    "runtime": {"backend": bundle.model.backend, "xnnpack_applied": bundle.model.xnnpack_applied,
                                "threads": options.threads, "batch_size": batch_size if bundle.model.resizable_batch else 1}}
    passed = True
    gate: dict = {}
    if baseline is not None:
        if baseline.suffix.lower() in KERAS_SUFFIXES or baseline.is_dir():
            base_scores = _keras_scores(baseline, x)
        else:
            base = load_bundle(baseline, options, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
            if base.labels and bundle.labels and base.labels != bundle.labels:
                raise InputError(f"--baseline {baseline}: its labels.txt differs from {model}'s")
            bx = x
            if kind == "text" and base.tokenizer is not None and base.tokenizer.vocab != bundle.tokenizer.vocab:
                bx = base.tokenizer.encode_batch(x_raw)
            base_scores = base.model.predict(bx, batch_size=batch_size)
        if base_scores.shape[1:] != scores.shape[1:]:
            raise InputError(f"--baseline {baseline}: outputs {base_scores.shape[1:]} scores, {model} {scores.shape[1:]}")
        bm = classification_metrics(y, base_scores.argmax(axis=1), names, oos)
        bm.pop("most_confused", None)
        report["baseline"] = {"model": str(baseline), **bm}
        report["drop"] = bm[key] - m[key]
        report["agreement_with_baseline"] = float(np.mean(base_scores.argmax(axis=1) == scores.argmax(axis=1)))
        if max_drop is not None:
            ok = report["drop"] <= max_drop + 1e-12
            gate["max_drop"] = {"limit": max_drop, "value": report["drop"], "passed": ok}
            passed &= ok
    if min_accuracy is not None:
        ok = m[key] >= min_accuracy
        gate["min_accuracy"] = {"limit": min_accuracy, "value": m[key], "passed": ok}
        passed &= ok
    report["gate"] = ({**gate, "passed": passed} if gate else None)
    return report, _format_eval(report), passed


def _format_eval(r: dict) -> str:
    rt = r["runtime"]
    lines = [f"{r['model']}  on  {r['data']}  ({r['samples']} samples; {rt['backend']}, "
             f"XNNPACK {'applied' if rt['xnnpack_applied'] else 'not applied'}, batch {rt['batch_size']})",
             f"  {'metric':<22}{'model':>10}" + (f"{'baseline':>10}" if "baseline" in r else "")]
    keys = ["accuracy", "macro_f1"] + [k for k in ("accuracy_in_scope", "recall_out_of_scope") if k in r]
    for k in keys:
        line = f"  {k:<22}{r[k]:>10.4f}"
        if "baseline" in r:
            line += f"{r['baseline'][k]:>10.4f}"
        lines.append(line)
    if "baseline" in r:
        lines.append(f"  {'drop (' + r['metric'] + ')':<22}{r['drop']:>10.4f}")
        lines.append(f"  {'top-1 agreement':<22}{r['agreement_with_baseline']:>10.4f}")
    for c in r["most_confused"][:5]:
        lines.append(f"  confused  {c['true']} -> {c['predicted']} ({c['count']})")
    for name, g in (r["gate"] or {}).items():
        if isinstance(g, dict):
            op = ">=" if name == "min_accuracy" else "<="
            lines.append(f"  gate  {name} {g['value']:.4f} {op} {g['limit']}: {'PASS' if g['passed'] else 'FAIL'}")
    return "\n".join(lines)


def _eval(model: Path, data_path: Path, text_column, label_column, min_accuracy, max_drop, baseline,
                 batch_size: int, threads: str, xnnpack: bool, reference_kernels: bool, backend: str,
                 trust_model: bool, probe_timeout_s: float, as_json: bool) -> None:
    try:
        options = _options(_single_threads(threads), xnnpack, reference_kernels, backend)
        report, table, passed = run_eval(model, data_path, text_column, label_column, min_accuracy, max_drop,
                                         baseline, batch_size, options, trust_model, probe_timeout_s)
    except InputError as exc:
        _fail(exc)
    _emit(report, as_json, table)
    if not passed:
        missed = [f"{k} {g['value']:.4f} (limit {g['limit']})" for k, g in report["gate"].items()
                  if isinstance(g, dict) and not g["passed"]]
        click.echo(f"Gate missed: {'; '.join(missed)}", err=True)
        sys.exit(1)


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
@click.option("--batch-size", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Rows per invoke (the input is resized when the model allows it, else batch 1).")
@runtime_options
def eval_cmd(model: Path, data_path: Path, text_column, label_column, min_accuracy, max_drop, baseline, batch_size,
             threads, xnnpack, reference_kernels, backend, trust_model, probe_timeout_s, as_json) -> None:
    """Task metrics of MODEL.tflite on labelled data, in the LiteRT interpreter (no TensorFlow)."""
    _eval(model, data_path, text_column, label_column, min_accuracy, max_drop, baseline, batch_size,
                 threads, xnnpack, reference_kernels, backend, trust_model, probe_timeout_s, as_json)


# ---------------------------------------------------------------- bench

@click.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes, comma-separated (e.g. 1,8).")
@click.option("--runs", type=click.IntRange(1, 1_000_000), default=200, show_default=True, help="Timed invokes per configuration.")
@click.option("--warmup", type=click.IntRange(0, 100_000), default=20, show_default=True, help="Untimed invokes first.")
@click.option("--data", "data_path", type=click.Path(path_type=Path),
              help="Texts for the end-to-end timing (CSV/JSONL/CLINC json); default: random vocab words.")
@runtime_options
@guarded
def bench_cmd(model: Path, batches: str, runs: int, warmup: int, data_path: Path | None, threads: str, xnnpack: bool,
              reference_kernels: bool, backend: str, trust_model: bool, probe_timeout_s: float, as_json: bool) -> None:
    """Latency of MODEL.tflite: init, first invoke, p50/p90/p99/mean microseconds, throughput, peak memory.

    Times invoke() alone and, for text models (model_info.json + vocab.txt beside it), tokenize + invoke.
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
    _emit(report, as_json, format_bench(report))


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
    """
    from .runtime import compare_outputs, load_bundle, load_npz, random_inputs
    from .runtime.samples import float_input_range

    n_threads = _single_threads(threads)
    if model_b is None and not reference_kernels:
        raise InputError("compare needs MODEL_B, or --reference-kernels to compare MODEL_A with itself on reference kernels")
    opts_a = _options(n_threads, xnnpack, False, backend)
    opts_b = _options(n_threads, xnnpack, reference_kernels, backend)
    a = load_bundle(model_a, opts_a, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    b = load_bundle(model_b or model_a, opts_b, trust_model=trust_model, probe_timeout_s=probe_timeout_s)
    if a.model.input_shape[1:] != b.model.input_shape[1:]:
        raise InputError(f"{model_b}: input shape {b.model.input_shape[1:]} differs from {model_a}'s {a.model.input_shape[1:]}")
    if data_path is not None:
        if data_path.suffix.lower() == ".npz":
            x, _ = load_npz(data_path, need_labels=False)
            source = str(data_path)
        else:
            kind, texts, _ = _load_data(a, data_path, None, None)
            x = _model_inputs(a, kind, texts, data_path)
            source = str(data_path)
    else:
        vocab = len(a.tokenizer.vocab) if a.tokenizer is not None else None
        rng_range = float_input_range(a.model) or float_input_range(b.model)
        x = random_inputs(a.model, samples, seed=seed, vocab_size=vocab, float_range=rng_range)
        source = f"{samples} random inputs (seed {seed})"
    out_a = a.model.predict(x, batch_size=batch_size)
    out_b = b.model.predict(x, batch_size=batch_size)
    metrics = compare_outputs(out_a, out_b)
    passed = min_agreement is None or metrics["top1_agreement"] >= min_agreement
    label_b = str(model_b or model_a) + (" [reference kernels]" if reference_kernels else "")
    label_a = str(model_a) + (" [XNNPACK]" if a.model.xnnpack_applied else " [no XNNPACK]")
    report = {"model_a": {"model": str(model_a), "xnnpack_applied": a.model.xnnpack_applied, "reference_kernels": False},
              "model_b": {"model": str(model_b or model_a), "xnnpack_applied": b.model.xnnpack_applied,
                          "reference_kernels": reference_kernels},
              "inputs": source, **metrics,
              "gate": None if min_agreement is None else {"min_agreement": min_agreement, "passed": passed}}
    lines = [f"A  {label_a}", f"B  {label_b}", f"   on {source}",
             f"  {'top-1 agreement':<22}{metrics['top1_agreement']:>12.4f}",
             f"  {'mean abs error':<22}{metrics['mean_abs_error']:>12.6f}",
             f"  {'max abs error':<22}{metrics['max_abs_error']:>12.6f}",
             f"  {'KL(A||B) mean':<22}{metrics['kl_divergence_mean']:>12.6f}",
             f"  {'KL(A||B) max':<22}{metrics['kl_divergence_max']:>12.6f}"]
    if min_agreement is not None:
        lines.append(f"  gate  top1_agreement >= {min_agreement}: {'PASS' if passed else 'FAIL'}")
    _emit(report, as_json, "\n".join(lines))
    if not passed:
        click.echo(f"Gate missed: top-1 agreement {metrics['top1_agreement']:.4f} < --min-agreement {min_agreement}",
                   err=True)
        sys.exit(1)


COMMANDS: Sequence[click.Command] = (eval_cmd, bench_cmd, inspect_cmd, compare_cmd)


def register(group: click.Group) -> None:
    """Add `eval`, `bench`, `inspect` and `compare` to the CLI group."""
    for cmd in COMMANDS:
        group.add_command(cmd)
