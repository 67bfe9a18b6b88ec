"""Which ops of a `.tflite` XNNPACK takes, which kernel runs the others, and what each op costs.

`delegation_report` reads the delegate's decision from the interpreter itself: with LiteRT's node
fusion off, every op XNNPACK takes becomes its own `DELEGATE` node (matched to the op by its
output tensors), and with fusion on (how the model really runs) the `DELEGATE` nodes are the
partitions. The `reason` given for an op left out is a reading of the XNNPACK delegate's rules
(TRAPS.md, "Integer kernels on phones' CPUs") against the op's tensor types: a hint; the
`delegated` flag itself is measured.

`profile_ops` times each op alone: a one-op model cut from the file (same tensors, same
quantization), fed the values that op sees in a real run, run with the same options, so an op
XNNPACK takes runs in XNNPACK and the others on their builtin kernel (and, for those, also on the
reference kernel, to show which one the builtin resolver really runs). No TensorFlow.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import numpy as np

from ..errors import InputError, RunError
from .flatbuffer import FlatModel, parse_model
from .interpreter import RuntimeOptions, invoke_times_us, make_interpreter, op_details

DELEGATE_NODE = "DELEGATE"
# XNNPACK takes these in float32 only (int8 versions stay on TFLite's builtin kernels).
XNNPACK_FLOAT_ONLY = frozenset({"SOFTMAX", "GELU", "RSQRT", "SQRT", "EXP", "SQUARED_DIFFERENCE", "DIV",
                                "MAXIMUM", "MINIMUM", "LOG", "POW", "SUM", "REDUCE_MAX"})
SHAPE_OPS = frozenset({"SHAPE", "REDUCE_PROD", "PACK", "STRIDED_SLICE", "GATHER", "CONCATENATION", "FILL",
                       "BROADCAST_TO", "CAST"})
QUANTIZED_TYPES = ("int8", "uint8", "int16")


def _reason(flat: FlatModel, op, name: str) -> str:
    """Why XNNPACK probably left this op out (its delegate's rules against the op's tensors)."""
    g = flat.subgraphs[0]
    ins = [g.tensors[i] for i in op.inputs if i >= 0]
    outs = [g.tensors[i] for i in op.outputs if i >= 0]
    out_types = {t.dtype for t in outs}
    quantized = bool(out_types & set(QUANTIZED_TYPES))
    if name == "GATHER" and ins and flat.buffers[ins[0].buffer].size_bytes > 0:
        return "embedding lookup: XNNPACK has no GATHER; it runs on the builtin kernel"
    if out_types <= {"int32", "int64"} and name in SHAPE_OPS:
        return "shape arithmetic (int32) from a reshape with a dynamic size; static shapes remove it"
    if name in XNNPACK_FLOAT_ONLY and quantized:
        return f"XNNPACK takes {name} in float32 only"
    if name == "BATCH_MATMUL" and quantized and len(ins) > 1:
        zp = ins[1].quantization.zero_point
        if any(z != 0 for z in zp):
            return (f"int8 BATCH_MATMUL whose right-hand input has zero point {zp[0]}: "
                    "XNNPACK needs 0 (symmetric); it runs on TFLite's BATCH_MATMUL kernel")
    if name in XNNPACK_FLOAT_ONLY and "float16" in out_types:
        return f"XNNPACK takes {name} in float32 only"
    if name.startswith("CUSTOM") or flat.operator_codes[op.opcode_index].is_custom:
        return "custom op: no XNNPACK kernel"
    return "XNNPACK did not take it (an op, type or parameter its delegate does not support)"


def _delegated_ops(content: bytes, options: RuntimeOptions, n_ops: int) -> set[int]:
    """Indices of the ops XNNPACK takes: one DELEGATE node per op with node fusion off."""
    try:
        _, interp = make_interpreter(content, options, disable_delegate_fusion=True)
        interp.allocate_tensors()
    except TypeError:  # tflite_runtime / tf.lite interpreters of older releases lack the switch
        raise RunError(f"backend {options.backend} cannot turn delegate node fusion off; "
                       "per-op delegation needs ai-edge-litert") from None
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"the interpreter cannot load the model ({str(exc).strip().splitlines()[0][:200]})") from None
    nodes = op_details(interp)
    by_output: dict[int, int] = {}
    for node in nodes[:n_ops]:
        for t in node["outputs"]:
            by_output[t] = node["index"]
    taken: set[int] = set()
    for node in nodes[n_ops:]:
        if DELEGATE_NODE not in node["op_name"]:
            continue
        hits = {by_output[t] for t in node["outputs"] if t in by_output}
        if len(hits) != 1:
            raise RunError(f"a single-op DELEGATE node matches {len(hits)} ops by its outputs; "
                           "LiteRT's node-fusion switch changed")
        taken |= hits
    return taken


def delegation_report(content: bytes, options: RuntimeOptions = RuntimeOptions(), flat: FlatModel | None = None) -> dict:
    """Per op of the main graph: XNNPACK or the builtin kernel (with a reason), and the partition count.

    Returns a dict: `xnnpack` (requested and applied), `partitions` (DELEGATE nodes as the model
    runs), `ops_total`, `ops_delegated`, `ops` (index, op, output dtypes, delegated, kernel, reason)
    and `outside` ({op: count} of the ops left out).
    """
    flat = flat or parse_model(content, "<model>")
    g = flat.subgraphs[0]
    n_ops = len(g.operators)
    use_xnnpack = options.xnnpack and not options.reference_kernels
    taken: set[int] = set()
    partitions = 0
    if use_xnnpack:
        taken = _delegated_ops(content, options, n_ops)
        _, interp = make_interpreter(content, options)  # any inputs (a signature_model has several)
        interp.allocate_tensors()
        partitions = sum(DELEGATE_NODE in n["op_name"] for n in op_details(interp)[n_ops:])
    kernel_off = "reference" if options.reference_kernels else "builtin"
    ops = []
    for i, op in enumerate(g.operators):
        name = flat.op_name(op)
        delegated = i in taken
        ops.append({"index": i, "op": name, "outputs": [g.tensors[t].dtype for t in op.outputs if t >= 0],
                    "delegated": delegated, "kernel": "XNNPACK" if delegated else kernel_off,
                    "reason": None if delegated or not use_xnnpack else _reason(flat, op, name)})
    outside = Counter(o["op"] for o in ops if not o["delegated"])
    return {"xnnpack": use_xnnpack, "partitions": partitions, "ops_total": n_ops, "ops_delegated": len(taken),
            "ops": ops, "outside": dict(sorted(outside.items(), key=lambda kv: (-kv[1], kv[0])))}


def delegation_summary(report: dict) -> str:
    """'108/131 ops in XNNPACK, 13 partitions' (one line for tables)."""
    if not report["xnnpack"]:
        return f"XNNPACK off: {report['ops_total']} ops on {report['ops'][0]['kernel'] if report['ops'] else 'builtin'} kernels"
    return f"{report['ops_delegated']}/{report['ops_total']} ops in XNNPACK, {report['partitions']} partitions"


def format_delegation(report: dict) -> list[str]:
    """Lines for `inspect`: the summary, then every op left outside the delegate with its reason."""
    lines = [f"  delegation    {delegation_summary(report)}"]
    if not report["xnnpack"]:
        return lines
    left = [o for o in report["ops"] if not o["delegated"]]
    if not left:
        return lines + ["  every op runs in XNNPACK"]
    lines.append(f"  ops outside XNNPACK ({len(left)}; kernel: TFLite builtin):")
    by_reason: dict[tuple[str, str], list[int]] = {}
    for o in left:
        by_reason.setdefault((o["op"], o["reason"]), []).append(o["index"])
    for (name, reason), idx in sorted(by_reason.items(), key=lambda kv: kv[1][0]):
        shown = ",".join(f"#{i}" for i in idx[:8]) + (f",... ({len(idx)})" if len(idx) > 8 else "")
        lines.append(f"    {name:<20}{shown:<28}{reason}")
    return lines


# ---------------------------------------------------------------- per-op profile

def _inputs(x) -> list[np.ndarray]:
    return [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]


def _set_inputs(interp, xs: list[np.ndarray]) -> None:
    """Set the model's inputs from `xs` (in the order of `get_input_details`), resizing where the shape differs."""
    details = interp.get_input_details()
    if len(details) != len(xs):
        raise InputError(f"the model has {len(details)} inputs; {len(xs)} given")
    if any(tuple(a.shape) != tuple(d["shape"]) for d, a in zip(details, xs)):
        for d, a in zip(details, xs):
            interp.resize_tensor_input(d["index"], list(a.shape))
    interp.allocate_tensors()
    for d, a in zip(interp.get_input_details(), xs):
        interp.set_tensor(d["index"], a)


def _tensor_values(content: bytes, options: RuntimeOptions, x) -> tuple[dict[int, np.ndarray], object]:
    """Every tensor's value in one run on `x` (one array, or one per input; builtin kernels, all tensors kept)."""
    plain = dataclasses.replace(options, xnnpack=False, reference_kernels=False)
    _, interp = make_interpreter(content, plain, preserve_all_tensors=True)
    interp.allocate_tensors()
    _set_inputs(interp, _inputs(x))
    interp.invoke()
    values = {}
    for t in interp.get_tensor_details():
        try:
            values[t["index"]] = np.array(interp.get_tensor(t["index"]))
        except ValueError:  # tensors without data (optional, or freed)
            pass
    return values, interp


def signature_model(content: bytes, key: str) -> bytes:
    """The file with signature `key`'s subgraph as its only subgraph (its main graph), without signature
    defs: what `delegation_report` and `profile_ops` read, for a multi-signature file (an LM's `decode`)."""
    try:
        from ai_edge_litert.tools import flatbuffer_utils as fbu
    except ImportError:
        raise InputError("profiling a signature needs ai-edge-litert (its flatbuffer tools): pip install ai-edge-litert") from None
    model = fbu.read_model_from_bytearray(bytearray(content))
    keys = {(sd.signatureKey.decode() if isinstance(sd.signatureKey, bytes) else sd.signatureKey): sd.subgraphIndex
            for sd in (model.signatureDefs or [])}
    if key not in keys:
        raise InputError(f"no signature {key!r} in the model (found: {', '.join(sorted(keys)) or 'none'})")
    sub = model.subgraphs[keys[key]]
    m = copy.copy(model)
    m.subgraphs = [sub]
    m.signatureDefs = []
    return bytes(fbu.convert_object_to_bytearray(m))


def _one_op_models(content: bytes):
    """(ModelT of the file, builder of a one-op model's bytes) via LiteRT's flatbuffer object API."""
    try:
        from ai_edge_litert.tools import flatbuffer_utils as fbu
    except ImportError:
        raise InputError("--profile needs ai-edge-litert (its flatbuffer tools): pip install ai-edge-litert") from None
    model = fbu.read_model_from_bytearray(bytearray(content))
    sub = model.subgraphs[0]
    operators = list(sub.operators)

    def constant(t: int) -> bool:
        data = model.buffers[sub.tensors[t].buffer].data
        return data is not None and len(data) > 0

    def build(i: int) -> tuple[bytes, list[int]]:
        op = operators[i]
        feeds = [int(t) for t in op.inputs if t >= 0 and not constant(int(t))]
        feeds = list(dict.fromkeys(feeds))
        m = copy.copy(model)
        s = copy.copy(sub)
        s.operators = [op]
        s.inputs = np.asarray(feeds, np.int32)
        s.outputs = np.asarray([int(t) for t in op.outputs if t >= 0], np.int32)
        m.subgraphs = [s] + list(model.subgraphs[1:])
        m.signatureDefs = []
        return bytes(fbu.convert_object_to_bytearray(m)), feeds

    return operators, build


def _time_us(interp, runs: int, warmup: int) -> float:
    return float(np.median(invoke_times_us(interp, runs, warmup)))


def _op_interpreter(op_content: bytes, feeds: list[int], values: dict[int, np.ndarray], options: RuntimeOptions):
    _, interp = make_interpreter(op_content, options)
    _set_inputs(interp, [values[t] for t in feeds])
    return interp


def profile_ops(content: bytes, options: RuntimeOptions, x, runs: int = 100, warmup: int = 10,
                delegation: dict | None = None) -> dict:
    """Median microseconds of each op run alone, with the kernel it runs on, beside the whole model's.

    `x` is one input batch (the model's dtype), or a list with one array per input (in the order of
    `get_input_details`; e.g. a `signature_model`'s). Ops outside XNNPACK are also timed on the
    reference kernels (`reference_us`), which shows whether the builtin resolver runs an
    optimized kernel for them or the reference one.
    """
    delegation = delegation or delegation_report(content, options)
    values, _ = _tensor_values(content, options, x)
    operators, build = _one_op_models(content)
    ref = dataclasses.replace(options, xnnpack=False, reference_kernels=True)
    rows = []
    for o in delegation["ops"]:
        op_content, feeds = build(o["index"])
        missing = [t for t in feeds if t not in values]
        if missing:
            raise RunError(f"op #{o['index']} {o['op']}: no value for its input tensor(s) {missing} after a run")
        try:
            interp = _op_interpreter(op_content, feeds, values, options)
            row = {**o, "us": _time_us(interp, runs, warmup)}
            if not o["delegated"]:
                row["reference_us"] = _time_us(_op_interpreter(op_content, feeds, values, ref), runs, warmup)
        except (ValueError, RuntimeError) as exc:
            row = {**o, "us": None, "error": str(exc).strip().splitlines()[0][:200]}
        rows.append(row)
    xs = _inputs(x)
    _, whole = make_interpreter(content, options)
    _set_inputs(whole, xs)
    model_us = _time_us(whole, runs, warmup)
    timed = [r["us"] for r in rows if r["us"] is not None]
    outside = [r["us"] for r in rows if r["us"] is not None and not r["delegated"]]
    by_op: dict[str, dict] = {}
    for r in rows:
        key = f"{r['op']} ({r['kernel']})"
        entry = by_op.setdefault(key, {"op": r["op"], "kernel": r["kernel"], "count": 0, "us": 0.0})
        entry["count"] += 1
        entry["us"] += r["us"] or 0.0
    return {"batch": int(xs[0].shape[0]) if len(xs) == 1 else 1, "runs": runs, "model_us_p50": model_us,
            "ops_sum_us": float(sum(timed)),
            "outside_xnnpack_us": float(sum(outside)), "partitions": delegation["partitions"],
            "ops_delegated": delegation["ops_delegated"], "ops_total": delegation["ops_total"], "ops": rows,
            "by_op": sorted(by_op.values(), key=lambda d: -d["us"])}


def format_profile(p: dict) -> str:
    """Time per op kind (summed) and the slowest single ops, beside the whole model's p50."""
    lines = [f"  per-op profile at batch {p['batch']} (each op alone, median of {p['runs']} invokes): "
             f"ops sum {p['ops_sum_us']:.1f} us, whole model p50 {p['model_us_p50']:.1f} us; "
             f"outside XNNPACK {p['outside_xnnpack_us']:.1f} us; "
             f"{p['ops_delegated']}/{p['ops_total']} ops in XNNPACK, {p['partitions']} partitions",
             f"    {'op':<24}{'kernel':<11}{'count':>6}{'us':>10}{'share':>8}"]
    total = p["ops_sum_us"] or 1.0
    for e in p["by_op"]:
        lines.append(f"    {e['op'][:23]:<24}{e['kernel']:<11}{e['count']:>6}{e['us']:>10.1f}{e['us'] / total:>8.1%}")
    slow = sorted((r for r in p["ops"] if r["us"] is not None), key=lambda r: -r["us"])[:8]
    lines.append("    slowest ops: " + ", ".join(
        f"#{r['index']} {r['op']} {r['us']:.1f} us" + (f" (reference {r['reference_us']:.1f})" if "reference_us" in r else "")
        for r in slow))
    errors = [r for r in p["ops"] if r["us"] is None]
    if errors:
        lines.append(f"    {len(errors)} op(s) could not run alone: " + "; ".join(f"#{r['index']} {r['op']}: {r['error']}" for r in errors[:3]))
    return "\n".join(lines)
