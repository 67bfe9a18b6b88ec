"""Load and run `.tflite` files with the LiteRT interpreter: numpy only, no TensorFlow.

Backends, in order of preference: `ai-edge-litert` (default), `tflite_runtime` (when
importable), and TensorFlow's own interpreter (only when TensorFlow is already imported, or
asked for by name).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError, RunError
from .flatbuffer import FlatModel, parse_model

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
INTEGER_TYPES = ("int8", "int32", "bool")  # bool: comparisons on ids (masks)
OP_DETAIL_KEYS = ("index", "op_name", "inputs", "outputs")


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How the interpreter runs: threads, XNNPACK (LiteRT's default delegate) or reference kernels."""

    threads: int = 1
    xnnpack: bool = True
    reference_kernels: bool = False
    backend: str = "auto"


def _interpreter_module(backend: str):
    if backend in ("auto", "ai_edge_litert"):
        try:
            from ai_edge_litert import interpreter as mod

            return "ai_edge_litert", mod
        except ImportError:
            if backend != "auto":
                raise InputError("backend ai_edge_litert is not installed (pip install ai-edge-litert)") from None
    if backend in ("auto", "tflite_runtime"):
        try:
            from tflite_runtime import interpreter as mod  # type: ignore[import-not-found]

            return "tflite_runtime", mod
        except ImportError:
            if backend != "auto":
                raise InputError("backend tflite_runtime is not installed") from None
    if backend == "tensorflow" or (backend == "auto" and "tensorflow" in sys.modules):
        import tensorflow as tf  # only when asked, or already loaded by the caller

        return "tensorflow", tf.lite
    if backend not in BACKENDS and backend != "auto":
        raise InputError(f"--backend {backend!r} is not one of: auto, {', '.join(BACKENDS)}")
    raise InputError("no TFLite interpreter found: pip install ai-edge-litert")


def backend_version(backend: str) -> str | None:
    """The installed version of a backend's package (e.g. '2.3.0' for ai_edge_litert), None if unknown."""
    from importlib import metadata

    dist = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime", "tensorflow": "tensorflow"}
    try:
        return metadata.version(dist.get(backend, backend))
    except metadata.PackageNotFoundError:
        return None


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """Read a `.tflite` file and check that it is a TFLite flatbuffer before any use."""
    data = _read_file(path)
    check_flatbuffer(data, str(path))
    return data


def _read_file(path: str | os.PathLike) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file not found")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror})") from None


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 300 characters), for one-line errors."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def check_flatbuffer(data: bytes, name: str) -> FlatModel:
    """Verify the flatbuffer structure (bounds, alignment, cross references); `InputError` if corrupt."""
    return parse_model(data, name)


def make_interpreter(content: bytes, options: RuntimeOptions, disable_delegate_fusion: bool = False,
                     preserve_all_tensors: bool = False):
    """(backend name, a new interpreter over `content`) with the options' threads and kernels; not allocated.

    `disable_delegate_fusion`: every op a delegate takes becomes its own DELEGATE node (the
    delegation report reads per-op decisions from them); `preserve_all_tensors`: keep every
    intermediate tensor readable after `invoke()`.
    """
    backend, mod = _interpreter_module(options.backend)
    kwargs: dict = {"model_content": content, "num_threads": options.threads}
    if disable_delegate_fusion:
        kwargs["experimental_disable_delegate_node_fusion"] = True
    if preserve_all_tensors:
        kwargs["experimental_preserve_all_tensors"] = True
    resolver = getattr(mod, "OpResolverType", None) or getattr(getattr(mod, "experimental", None), "OpResolverType", None)
    if resolver is not None:
        if options.reference_kernels:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_REF
        elif not options.xnnpack:
            kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif options.reference_kernels or not options.xnnpack:
        raise InputError(f"backend {backend} cannot switch kernels (no OpResolverType); drop --reference-kernels/--no-xnnpack")
    return backend, mod.Interpreter(**kwargs)


class TFLiteModel:
    """A loaded `.tflite` model: tensors described, inputs quantized and outputs dequantized."""

    def __init__(self, model: str | os.PathLike | bytes, options: RuntimeOptions = RuntimeOptions()):
        if isinstance(model, (bytes, bytearray)):
            self.name = "<bytes>"
            self.content = bytes(model)
        else:
            self.name = str(model)
            self.content = _read_file(model)
        self.flat = check_flatbuffer(self.content, self.name)
        self.options = options
        try:
            self.backend, self.interpreter = make_interpreter(self.content, options)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InputError(f"{self.name}: the interpreter cannot load it ({first_line(exc)})") from None
        self.xnnpack_applied = self.options.xnnpack and not self.options.reference_kernels and self._has_delegate()
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise InputError(f"{self.name}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self.input = inputs[0]
        self.output = outputs[0]
        self._batch = int(self.input["shape"][0]) if len(self.input["shape"]) else 1

    def _has_delegate(self) -> bool:
        # XNNPACK replaces the nodes it takes with one delegate node named "DELEGATE".
        try:
            ops = op_details(self.interpreter)
        except (RunError, InputError):  # no node listing (backend), or names it cannot decode
            return self.options.xnnpack
        return any("DELEGATE" in str(op.get("op_name", "")) for op in ops)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.input["shape"])

    @property
    def resizable_batch(self) -> bool:
        """True if the input's first dimension is dynamic (-1 in its shape signature)."""
        sig = self.input.get("shape_signature")
        return sig is not None and len(sig) > 0 and int(sig[0]) == -1

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.output["shape"])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if np.issubdtype(dtype, np.integer) and np.issubdtype(np.asarray(x).dtype, np.floating):
            scale, zero = self.input["quantization"]
            if scale:
                info = np.iinfo(dtype)
                return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        return np.asarray(x).astype(dtype)

    def dequantize_output(self, q: np.ndarray) -> np.ndarray:
        scale, zero = self.output["quantization"]
        if np.issubdtype(q.dtype, np.integer) and scale:
            return (q.astype(np.float32) - zero) * np.float32(scale)
        return q.astype(np.float32)

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = list(self.input_shape)
            shape[0] = batch
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self._batch = batch

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        """Run one batch already in the input's dtype; returns the raw (quantized) output.

        Variable tensors are zeroed first: a fused UNIDIRECTIONAL_SEQUENCE_LSTM keeps its hidden and
        cell state in them and would otherwise start each row from the state the last row left
        (a no-op for models without them). On a phone: `Interpreter.resetVariableTensors()`.
        """
        self._resize(len(x))
        self.interpreter.reset_all_variables()
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Dequantized outputs for all rows of `x`, in batches (batch 1 if the model is fixed)."""
        x = np.asarray(x)
        expected = self.input_shape[1:]
        if tuple(x.shape[1:]) != expected:
            raise InputError(f"{self.name}: input rows have shape {tuple(x.shape[1:])}, the model expects {expected}")
        sig = self.input.get("shape_signature")
        if sig is None or len(sig) == 0 or int(sig[0]) != -1:
            batch_size = self.input_shape[0]  # a fixed batch (e.g. recurrent models, converted at batch 1)
        outs = []
        for start in range(0, len(x), batch_size):
            chunk = self.quantize_input(x[start:start + batch_size])
            try:
                outs.append(self.dequantize_output(self.invoke_raw(chunk)).copy())
            except (ValueError, RuntimeError) as exc:
                if batch_size == 1:
                    raise InputError(f"{self.name}: invoke failed ({first_line(exc)})") from None
                return self.predict(x, batch_size=1)  # a model that will not resize: batch 1
        if not outs:
            return np.zeros((0,) + self.output_shape[1:], np.float32)
        return np.concatenate(outs, axis=0)


def load_model(path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(), trust_model: bool = False,
               probe_timeout_s: float | None = None) -> TFLiteModel:
    """Open a `.tflite` that may be hostile: verify its flatbuffer, probe it in a child, then load it here.

    Args:
        path: the model file.
        options: interpreter options (the child probes with the same ones).
        trust_model: skip the child probe (the flatbuffer is still verified).
        probe_timeout_s: time limit of the child (default `_probe.DEFAULT_TIMEOUT_S`).

    Raises:
        InputError: missing, corrupt or unloadable file; a child that crashed or timed out.
    """
    from ._probe import DEFAULT_TIMEOUT_S, probe_model

    content = read_model_bytes(path)
    if not trust_model:
        result = probe_model(content, str(path), options.threads, options.xnnpack, options.reference_kernels,
                             probe_timeout_s or DEFAULT_TIMEOUT_S, backend=options.backend)
        if not result.ok:
            raise InputError(f"{path}: the interpreter cannot load it ({result.error})")
    model = TFLiteModel(content, options)
    model.name = str(path)
    return model


def invoke_times_us(interp, runs: int, warmup: int, feed: Callable[[int], None] | None = None) -> np.ndarray:
    """Microseconds of each of `runs` timed `interp.invoke()` calls, after `warmup` untimed ones.

    `feed(i)`, when given, sets the inputs of call i before it; only `invoke()` is inside the timer.
    """
    for i in range(warmup):
        if feed is not None:
            feed(i)
        interp.invoke()
    times = np.empty(runs)
    for i in range(runs):
        if feed is not None:
            feed(i)
        t0 = time.perf_counter_ns()
        interp.invoke()
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    return times


def time_invokes_us(model: "TFLiteModel", inputs: Sequence[np.ndarray], runs: int, warmup: int) -> np.ndarray:
    """`invoke_times_us` on a model's interpreter, its input tensor set from `inputs` (ready-made,
    the model's dtype and current shape) cycled through."""
    interp, index = model.interpreter, model.input["index"]
    return invoke_times_us(interp, runs, warmup, lambda i: interp.set_tensor(index, inputs[i % len(inputs)]))


def time_end_to_end_us(model: "TFLiteModel", tokenizer, text_batches: Sequence[Sequence[str]], runs: int) -> np.ndarray:
    """Microseconds of each of `runs` tokenize + invoke + argmax passes, cycling through `text_batches`
    (the model's input must already have the batches' size)."""
    interp, index, out_index = model.interpreter, model.input["index"], model.output["index"]
    times = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        interp.set_tensor(index, tokenizer.encode_batch(text_batches[i % len(text_batches)]))
        interp.invoke()
        interp.get_tensor(out_index).argmax(axis=-1)
        times[i] = (time.perf_counter_ns() - t0) / 1e3
    return times


def op_details(interpreter) -> list[dict]:
    """The interpreter's nodes, in execution order: `index`, `op_name`, `inputs`, `outputs` (tensor ids).

    The one place that calls LiteRT's private `Interpreter._get_ops_details()` (it shows what
    XNNPACK took as `DELEGATE` nodes); if a LiteRT release changes it, this raises `RunError`
    naming what changed, and a test fails loudly.
    """
    get = getattr(interpreter, "_get_ops_details", None)
    if get is None:
        raise RunError(f"{type(interpreter).__module__}.Interpreter has no _get_ops_details(): "
                       "this LiteRT release changed its private node listing")
    try:
        raw = get()
    except UnicodeDecodeError as exc:  # a damaged file: names that are not UTF-8
        raise InputError(f"an op or tensor name of the model is not UTF-8 ({exc.reason})") from None
    out = []
    for op in raw:
        missing = [k for k in OP_DETAIL_KEYS if k not in op]
        if missing:
            raise RunError(f"LiteRT's _get_ops_details() entries lack {', '.join(missing)} (got {sorted(op)})")
        out.append({"index": int(op["index"]), "op_name": str(op["op_name"]),
                    "inputs": [int(i) for i in op["inputs"]], "outputs": [int(i) for i in op["outputs"]]})
    return out


def float_tensors(ops: list[dict]) -> list[dict]:
    """Ops whose outputs (the tensors between ops) are not int8/int32: float islands."""
    return [op for op in ops if any(t not in INTEGER_TYPES for t in op["outputs"])]


def tensor_type_name(dtype) -> str:
    return np.dtype(dtype).name


def ops_with_types(model: TFLiteModel) -> list[dict]:
    """Each op of the main graph with the dtypes of its input and output tensors."""
    # A model without XNNPACK shows its real nodes; use one for this listing.
    interp = model.interpreter
    if model.xnnpack_applied:
        interp = TFLiteModel(model.content, dataclasses.replace(model.options, xnnpack=False)).interpreter
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    out = []
    for op in op_details(interp):
        def types(idxs: Sequence[int]) -> list[str]:
            return [tensor_type_name(tensors[i]["dtype"]) for i in idxs if i >= 0 and i in tensors]
        out.append({"op": op["op_name"], "inputs": types(op["inputs"]), "outputs": types(op["outputs"])})
    return out
