"""Task metrics, size, sparsity and latency of a `.tflite` file, measured in the interpreter.

numpy only: this is what runs on a device or a small CI box.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..tokenizer import TokenizerConfig, WordPieceTokenizer
from .interpreter import RuntimeOptions, TFLiteModel, load_model, ops_with_types, tensor_type_name, time_invokes_us

INTEGER_TYPES = ("int8", "int32", "bool")  # bool: comparisons on ids (masks)


@dataclasses.dataclass
class ModelBundle:
    """A `.tflite` file with what sits beside it: vocab.txt, labels.txt, model_info.json."""

    model: TFLiteModel
    labels: list[str]
    info: dict
    tokenizer: WordPieceTokenizer | None

    @property
    def oos_label(self) -> str | None:
        return self.info.get("oos_label")


def load_bundle(model_path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(), trust_model: bool = True,
                probe_timeout_s: float | None = None) -> ModelBundle:
    """The model and its sidecar files. With `trust_model=False` the file is probed in a child process first."""
    model_path = Path(model_path)
    if trust_model:
        model = TFLiteModel(model_path, options)
    else:
        model = load_model(model_path, options, trust_model=False, probe_timeout_s=probe_timeout_s)
    folder = model_path.parent
    info_path = folder / "model_info.json"
    info: dict = {}
    if info_path.is_file():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise InputError(f"{info_path}: not valid JSON ({exc.msg})") from None
        except UnicodeDecodeError:
            raise InputError(f"{info_path}: not UTF-8 text") from None
        if not isinstance(info, dict):
            raise InputError(f"{info_path}: expected a JSON object")
    labels_path = folder / info.get("labels_file", "labels.txt")
    labels: list[str] = []
    if labels_path.is_file():
        try:
            labels = labels_path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise InputError(f"{labels_path}: not UTF-8 text") from None
        n_out = model.output_shape[-1]
        if len(labels) != n_out:
            raise InputError(f"{labels_path}: {len(labels)} labels, but the model outputs {n_out} scores")
    tokenizer = None
    tok_info = info.get("tokenizer")
    if tok_info:
        if not isinstance(tok_info, dict) or "sequence_length" not in tok_info:
            raise InputError(f"{info_path}: 'tokenizer' must be an object with a sequence_length")
        try:
            config = _tokenizer_config(tok_info)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{info_path}: bad tokenizer settings ({exc})") from None
        tokenizer = WordPieceTokenizer.from_file(folder / str(tok_info.get("vocab_file", "vocab.txt")), config)
        if model.input_shape[-1] != config.sequence_length:
            raise InputError(f"{info_path}: sequence_length {config.sequence_length} does not match the model input {model.input_shape}")
    return ModelBundle(model, labels, info, tokenizer)


def _tokenizer_config(tok_info: dict) -> TokenizerConfig:
    return TokenizerConfig(
        sequence_length=int(tok_info["sequence_length"]),
        lowercase=bool(tok_info.get("lowercase", True)),
        strip_accents=bool(tok_info.get("strip_accents", True)),
        suffix_indicator=str(tok_info.get("suffix_indicator", "##")),
        max_chars_per_word=int(tok_info.get("max_chars_per_word", 100)),
        )


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, label_names: Sequence[str], oos_label: str | None = None,
    top_confusions: int = 5,
) -> dict:
    """Accuracy, macro-F1 and, with an out-of-scope label, in-scope accuracy and oos recall."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = len(label_names)
    out: dict = {"samples": int(len(y_true)), "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0}
    f1s = []
    for c in range(n):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    if oos_label is not None and oos_label in label_names:
        oos = list(label_names).index(oos_label)
        ins = y_true != oos
        out["accuracy_in_scope"] = float(np.mean(y_pred[ins] == y_true[ins])) if ins.any() else 0.0
        out["recall_out_of_scope"] = float(np.mean(y_pred[~ins] == oos)) if (~ins).any() else 0.0
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(y_true[y_true != y_pred], y_pred[y_true != y_pred]):
        pairs[(int(t), int(p))] = pairs.get((int(t), int(p)), 0) + 1
    worst = sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[:top_confusions]
    out["most_confused"] = [
        {"true": label_names[t], "predicted": label_names[p], "count": c} for (t, p), c in worst
    ]
    return out


def file_stats(content: bytes) -> dict:
    return {"size_bytes": len(content), "gzip_bytes": len(gzip.compress(content, compresslevel=9))}


def weight_sparsity(model: TFLiteModel, min_elements: int = 64) -> dict:
    """Share of exact zeros (after quantization) in each constant weight tensor of the file."""
    ref = TFLiteModel(model.content, dataclasses.replace(model.options, xnnpack=False, reference_kernels=False))
    interp = ref.interpreter
    ops = interp._get_ops_details()
    produced = {i for op in ops for i in op["outputs"]}
    # Constants are op inputs that no op produces and that are not graph inputs; scratch
    # tensors (im2col buffers and the like) are in the tensor list but feed no op.
    consumed = {i for op in ops for i in op["inputs"]}
    inputs = {d["index"] for d in interp.get_input_details()}
    per_tensor = {}
    zeros = total = 0
    for t in interp.get_tensor_details():
        if t["index"] not in consumed or t["index"] in produced or t["index"] in inputs or len(t["shape"]) < 2:
            continue
        if tensor_type_name(t["dtype"]) not in ("int8", "float32", "float16"):
            continue
        try:
            arr = interp.get_tensor(t["index"])
        except ValueError:
            continue
        if arr.size < min_elements:
            continue
        zp = t["quantization"][1] if t["quantization"] else 0
        z = int(np.sum(arr == zp))
        per_tensor[t["name"]] = {"shape": [int(d) for d in arr.shape], "sparsity": z / arr.size}
        zeros += z
        total += arr.size
    return {"overall": zeros / total if total else 0.0, "weights": total, "tensors": per_tensor}


def float_tensors(ops: list[dict]) -> list[dict]:
    """Ops whose outputs (the tensors between ops) are not int8/int32: float islands."""
    return [op for op in ops if any(t not in INTEGER_TYPES for t in op["outputs"])]


def latency_us(model: TFLiteModel, rows: np.ndarray, runs: int = 200, warmup: int = 20,
               texts: Sequence[str] | None = None, tokenizer: WordPieceTokenizer | None = None) -> dict:
    """p50/p95 microseconds of `invoke()` alone at batch 1, and of tokenize + invoke."""
    x = model.quantize_input(rows[:1])
    model.invoke_raw(x)
    interp, index = model.interpreter, model.input["index"]
    samples = [model.quantize_input(rows[i % len(rows): i % len(rows) + 1]) for i in range(min(len(rows), 64))]
    times = time_invokes_us(model, samples, runs, warmup)
    out = {"invoke_us_p50": float(np.percentile(times, 50)), "invoke_us_p95": float(np.percentile(times, 95)), "runs": runs}
    if texts is not None and tokenizer is not None:
        e2e = np.empty(runs)
        out_index = model.output["index"]
        for i in range(runs):
            t0 = time.perf_counter_ns()
            ids = tokenizer.encode(texts[i % len(texts)])[None, :]
            interp.set_tensor(index, ids)
            interp.invoke()
            int(np.argmax(interp.get_tensor(out_index)))
            e2e[i] = (time.perf_counter_ns() - t0) / 1e3
        out["end_to_end_us_p50"] = float(np.percentile(e2e, 50))
        out["end_to_end_us_p95"] = float(np.percentile(e2e, 95))
    return out


def evaluate_text(bundle: ModelBundle, texts: Sequence[str], labels: Sequence[str], source: str = "data") -> dict:
    """Tokenize with the model's own vocab and settings, run, and score against `labels`."""
    if bundle.tokenizer is None:
        raise InputError(f"{bundle.model.name}: no model_info.json with tokenizer settings beside it; text data needs one")
    if not bundle.labels:
        raise InputError(f"{bundle.model.name}: no labels.txt beside it")
    from ..data import TextSplit

    y = TextSplit(tuple(texts), tuple(labels)).label_ids(bundle.labels, source)
    x = bundle.tokenizer.encode_batch(texts)
    scores = bundle.model.predict(x)
    pred = scores.argmax(axis=1)
    metrics = classification_metrics(y, pred, bundle.labels, bundle.oos_label)
    return {"metrics": metrics, "predictions": pred, "scores": scores}


def label_names_for(bundle: ModelBundle) -> list[str]:
    """The model's labels (labels.txt), or class ids "0".."n-1" when it has none."""
    return list(bundle.labels) if bundle.labels else [str(i) for i in range(bundle.model.output_shape[-1])]


def evaluate_arrays(bundle: ModelBundle, x: np.ndarray, y: np.ndarray, source: str = "data",
                    batch_size: int = 64) -> dict:
    """Run `x` (rows of model input) in batches and score against integer class ids `y`."""
    names = label_names_for(bundle)
    if len(y) and (y.min() < 0 or y.max() >= len(names)):
        raise InputError(f"{source}: class ids must lie in [0, {len(names)}); found {int(y.min())}..{int(y.max())}")
    scores = bundle.model.predict(x, batch_size=batch_size)
    pred = scores.argmax(axis=1)
    oos = bundle.oos_label if bundle.labels else None
    return {"metrics": classification_metrics(y, pred, names, oos), "predictions": pred, "scores": scores}


def inspect_model(model: TFLiteModel) -> dict:
    """Input/output specs, ops with their dtypes and counts, float islands, sizes (and the `describe` keys)."""
    from .inspection import describe

    ops = ops_with_types(model)
    counts: dict[str, int] = {}
    for op in ops:
        counts[op["op"]] = counts.get(op["op"], 0) + 1
    return {
        "input": {"name": model.input["name"], "shape": list(model.input_shape), "dtype": tensor_type_name(model.input["dtype"]),
                  "quantization": {"scale": float(model.input["quantization"][0]), "zero_point": int(model.input["quantization"][1])}},
        "output": {"name": model.output["name"], "shape": list(model.output_shape), "dtype": tensor_type_name(model.output["dtype"]),
                   "quantization": {"scale": float(model.output["quantization"][0]), "zero_point": int(model.output["quantization"][1])}},
        "ops": ops,
        "op_counts": counts,
        "float_ops": float_tensors(ops),
        **{k: v for k, v in describe(model.flat, model.content).items() if k not in ("ops", "op_counts", "float_ops")},
        **file_stats(model.content),
    }
