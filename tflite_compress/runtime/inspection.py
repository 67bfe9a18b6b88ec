"""What is inside a `.tflite`: signatures, tensors, ops, float islands, custom ops, sizes, sparsity.

Read from the verified flatbuffer, so a model the interpreter cannot run (Flex or custom ops)
is still described. No TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputError
from .flatbuffer import FlatModel, Tensor, parse_model
from .interpreter import RuntimeOptions, TFLiteModel, _read_file

INTEGER_TYPES = ("int8", "int32", "bool")  # bool: comparisons on ids (masks)


def _quant(t: Tensor) -> dict | None:
    q = t.quantization
    if not q.scale:
        return None
    if len(q.scale) == 1:
        return {"scale": q.scale[0], "zero_point": q.zero_point[0] if q.zero_point else 0}
    return {"per_channel": len(q.scale), "quantized_dimension": q.quantized_dimension,
            "scale_min": min(q.scale), "scale_max": max(q.scale),
            "zero_point": sorted(set(q.zero_point))[:4]}


def _tensor_info(t: Tensor) -> dict:
    return {"name": t.name, "index": t.index, "dtype": t.dtype, "shape": list(t.shape),
            "shape_signature": list(t.shape_signature) if t.shape_signature else None, "quantization": _quant(t)}


def tensor_sparsity(flat: FlatModel, content: bytes, t: Tensor) -> float | None:
    """Share of a constant's entries equal to its zero point (0 for floats), or None if not an array."""
    arr = flat.constant_array(content, t)
    if arr is None or arr.size == 0 or arr.dtype.kind not in "iuf":
        return None
    zero = np.zeros(1, arr.dtype)
    zp = t.quantization.zero_point
    if len(zp) == 1:
        zero = np.asarray(zp[0]).astype(arr.dtype)
    elif len(zp) > 1 and arr.ndim and len(zp) == arr.shape[t.quantization.quantized_dimension]:
        shape = [1] * arr.ndim
        shape[t.quantization.quantized_dimension] = len(zp)
        zero = np.asarray(zp).astype(arr.dtype).reshape(shape)
    return float(np.mean(arr == zero))


def describe(flat: FlatModel, content: bytes) -> dict:
    """Everything `inspect` reports that the flatbuffer alone can tell."""
    import gzip

    main = flat.subgraphs[0]
    ops = []
    counts: dict[str, int] = {}
    custom: dict[str, dict] = {}
    for g in flat.subgraphs:
        for op in g.operators:
            code = flat.operator_codes[op.opcode_index]
            counts[code.name] = counts.get(code.name, 0) + 1
            if code.is_custom:
                entry = custom.setdefault(code.name, {"op": code.name, "flex": code.is_flex, "count": 0})
                entry["count"] += 1
    for op in main.operators:
        ops.append({"op": flat.op_name(op),
                    "inputs": [main.tensors[i].dtype for i in op.inputs if i >= 0],
                    "outputs": [main.tensors[i].dtype for i in op.outputs if i >= 0]})
    non_integer = []
    by_size = []
    zeros = weights = 0
    for t in main.tensors:
        size = flat.buffers[t.buffer].size_bytes
        constant = size > 0
        if t.dtype not in INTEGER_TYPES:
            non_integer.append({"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "constant": constant})
        if constant:
            sp = tensor_sparsity(flat, content, t)
            by_size.append({"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "size_bytes": size,
                            "sparsity": sp})
            if sp is not None and len(t.shape) >= 2:
                n = int(np.prod(t.shape))
                zeros += round(sp * n)
                weights += n
    by_size.sort(key=lambda d: (-d["size_bytes"], d["name"]))
    return {
        "schema_version": flat.version,
        "description": flat.description,
        "size_bytes": len(content),
        "gzip_bytes": len(gzip.compress(content, compresslevel=9)),
        "subgraphs": len(flat.subgraphs),
        "signatures": [{"key": s.key, "subgraph": s.subgraph_index, "inputs": s.inputs, "outputs": s.outputs}
                       for s in flat.signatures],
        "inputs": [_tensor_info(main.tensors[i]) for i in main.inputs],
        "outputs": [_tensor_info(main.tensors[i]) for i in main.outputs],
        "op_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        "ops": ops,
        "float_ops": [op for op in ops if any(t not in INTEGER_TYPES for t in op["outputs"])],
        "non_integer_tensors": non_integer,
        "custom_ops": sorted(custom.values(), key=lambda d: d["op"]),
        "tensors_by_size": by_size,
        "weight_sparsity": zeros / weights if weights else 0.0,
        "metadata": list(flat.metadata),
    }


def inspect_file(path: str | os.PathLike, options: RuntimeOptions = RuntimeOptions(), trust_model: bool = False,
                 probe_timeout_s: float | None = None) -> dict:
    """Describe a `.tflite` file; a model the interpreter cannot load for its custom/Flex ops is still described.

    Raises:
        InputError: a missing or corrupt file, a child probe that crashed or timed out, or a load error
            that custom ops do not explain.
    """
    from ._probe import DEFAULT_TIMEOUT_S, probe_model

    content = _read_file(path)
    flat = parse_model(content, str(path))
    report = {"model": str(path), **describe(flat, content)}
    error = None
    if not trust_model:
        probe = probe_model(content, str(path), options.threads, options.xnnpack, options.reference_kernels,
                            probe_timeout_s or DEFAULT_TIMEOUT_S, backend=options.backend)
        error = None if probe.ok else probe.error
    model = None
    if error is None:
        try:
            model = TFLiteModel(content, options)
        except InputError as exc:
            error = str(exc).split(": the interpreter cannot load it ", 1)[-1].strip("()")
    if error is not None and not report["custom_ops"]:
        raise InputError(f"{path}: the interpreter cannot load it ({error})")
    report["interpreter"] = {
        "loadable": model is not None,
        "error": error,
        "backend": model.backend if model else None,
        "xnnpack_applied": model.xnnpack_applied if model else False,
        "threads": options.threads,
        "reference_kernels": options.reference_kernels,
    }
    return report


def format_inspect(r: dict) -> str:
    """A readable table of an `inspect_file` report."""
    def q(d: dict | None) -> str:
        if not d:
            return "-"
        if "per_channel" in d:
            return f"per-channel x{d['per_channel']} (axis {d['quantized_dimension']})"
        return f"scale={d['scale']:.6g} zp={d['zero_point']}"

    it = r["interpreter"]
    lines = [f"{r['model']}", f"  size          {r['size_bytes']:,} bytes raw, {r['gzip_bytes']:,} bytes gzip",
             f"  interpreter   {'loads' if it['loadable'] else 'CANNOT LOAD: ' + str(it['error'])}"
             + (f" ({it['backend']}, XNNPACK {'applied' if it['xnnpack_applied'] else 'not applied'})" if it['loadable'] else ""),
             f"  subgraphs     {r['subgraphs']}   signatures: {', '.join(s['key'] for s in r['signatures']) or '-'}",
             "", f"  {'io':<7}{'name':<40}{'dtype':<9}{'shape':<16}quantization"]
    for kind in ("inputs", "outputs"):
        for t in r[kind]:
            shape = str(t["shape_signature"] or t["shape"])
            lines.append(f"  {kind[:-1]:<7}{t['name'][:39]:<40}{t['dtype']:<9}{shape:<16}{q(t['quantization'])}")
    lines += ["", f"  {'op':<32}count"]
    lines += [f"  {name[:31]:<32}{n}" for name, n in r["op_counts"].items()]
    if r["custom_ops"]:
        lines += ["", "  custom/Flex ops: " + ", ".join(f"{c['op']} x{c['count']}" + (" (Flex)" if c["flex"] else "")
                                                    for c in r["custom_ops"])]
    lines += ["", f"  float islands (ops with non-int8/int32 outputs): {len(r['float_ops'])}"
              + (": " + ", ".join(sorted({o['op'] for o in r['float_ops']})) if r["float_ops"] else "")]
    nonint = r["non_integer_tensors"]
    lines.append(f"  tensors not int8/int32: {len(nonint)}")
    lines += [f"    {t['dtype']:<9}{str(t['shape']):<16}{t['name'][:60]}{' (constant)' if t['constant'] else ''}"
              for t in nonint[:20]]
    if len(nonint) > 20:
        lines.append(f"    ... {len(nonint) - 20} more (--json lists all)")
    lines += ["", f"  {'largest tensors':<48}{'dtype':<9}{'shape':<16}{'bytes':>10}  sparsity"]
    for t in r["tensors_by_size"][:15]:
        sp = "-" if t["sparsity"] is None else f"{t['sparsity']:.1%}"
        lines.append(f"  {t['name'][:47]:<48}{t['dtype']:<9}{str(t['shape']):<16}{t['size_bytes']:>10,}  {sp}")
    lines.append(f"  weight sparsity (constants of rank >= 2): {r['weight_sparsity']:.1%}")
    return "\n".join(lines)
