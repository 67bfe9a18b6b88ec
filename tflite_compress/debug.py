"""Per-layer quantization error of an INT8 `.tflite`, named by Keras layer.

Two ways in:
- `layer_errors(keras_model, content, x)`: ours. Runs `x` through the Keras model (float or
  QAT) and through the INT8 file with every intermediate tensor kept, matches each Keras layer
  to the last TFLite tensor produced for it (by name and shape), dequantizes it and reports the
  error. Works for QAT and post-training files alike.
- `quantization_debugger(float_model, calibration, x)`: TFLite's own
  `tf.lite.experimental.QuantizationDebugger` (post-training quantization only: it re-converts
  the float model with numeric-verify ops), its per-tensor statistics mapped to Keras layers.

Both return rows sorted in model order; `format_errors` prints them.
"""

from __future__ import annotations

import numpy as np

from ._tf import keras, tf
from .prune import _keras_layer_of
from .runtime.interpreter import op_details


def _base_name(layer) -> str:
    inner = getattr(layer, "layer", None)
    return inner.name if inner is not None else layer.name


def _output_in(model, layer):
    """`layer`'s output in `model`'s graph: a layer of a stripped (cloned) model was called before, in the
    pruning wrapper's graph, so `layer.output` (its first call) is not connected to `model.inputs`."""
    for i in range(len(layer._inbound_nodes)):
        if f"{layer.name}_ib-{i}" in model._network_nodes:
            return layer.get_output_at(i)
    return layer.output


def _keras_outputs(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """Output of every (single-output) layer of `model` on `x`, keyed by its unwrapped name."""
    outputs = {lay: _output_in(model, lay) for lay in model.layers if not isinstance(lay, keras.layers.InputLayer)}
    layers = [lay for lay, out in outputs.items() if not isinstance(out, (list, tuple))]
    probe = keras.Model(model.inputs, [outputs[lay] for lay in layers])
    outs = probe.predict(x, verbose=0, batch_size=len(x))
    if not isinstance(outs, list):
        outs = [outs]
    return {_base_name(lay): np.asarray(o) for lay, o in zip(layers, outs)}


def _output_layer(model) -> str:
    return _base_name(model.outputs[0]._keras_history.layer)


def _interpreter(content: bytes, batch: int):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp = interp.get_input_details()[0]
    if int(inp["shape"][0]) != batch:
        interp.resize_tensor_input(inp["index"], [batch, *[int(d) for d in inp["shape"][1:]]])
    interp.allocate_tensors()
    return interp


def _stats(ref: np.ndarray, got: np.ndarray, scale: float) -> dict:
    ref = ref.astype(np.float64).ravel()
    got = got.astype(np.float64).ravel()
    err = got - ref
    denom = np.linalg.norm(ref) * np.linalg.norm(got)
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))),
        "max_abs_error": float(np.max(np.abs(err))) if err.size else 0.0,
        "scale": scale,
        "rmse_over_scale": float(np.sqrt(np.mean(err ** 2)) / scale) if scale else None,
        "relative_rmse": float(np.sqrt(np.mean(err ** 2)) / (np.sqrt(np.mean(ref ** 2)) + 1e-12)),
        "cosine": float(np.dot(ref, got) / denom) if denom else 1.0,
    }


def layer_errors(keras_model, content: bytes, x: np.ndarray) -> list[dict]:
    """Per-layer error of the INT8 file against `keras_model` on rows `x` (a few dozen suffice).

    Returns one row per matched Keras layer, in model order: layer, tflite_tensor, dtype,
    rmse, max_abs_error, scale, rmse_over_scale (error in quantization steps), relative_rmse,
    cosine. Layers with no tensor of their own in the file (fused away, e.g. Dropout or a ReLU
    folded into its Dense) are left out.
    """
    x = np.asarray(x)
    ref = _keras_outputs(keras_model, x)
    interp = _interpreter(content, len(x))
    inp = interp.get_input_details()[0]
    feed = x.astype(inp["dtype"])
    if np.issubdtype(inp["dtype"], np.integer) and np.issubdtype(x.dtype, np.floating):
        s, z = inp["quantization"]
        feed = np.clip(np.round(x / s + z), -128, 127).astype(inp["dtype"])
    interp.set_tensor(inp["index"], feed)
    interp.invoke()
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    names = set(ref)
    out_index, out_layer = interp.get_output_details()[0]["index"], _output_layer(keras_model)
    match: dict[str, dict] = {}
    for op in op_details(interp):
        for idx in op["outputs"]:
            t = tensors.get(idx)
            if t is None:
                continue
            # The graph output is named after the SavedModel signature, not the layer.
            layer = out_layer if idx == out_index else _keras_layer_of(t["name"], names)
            if layer is None or int(np.prod(t["shape"])) != ref[layer].size:
                continue
            match[layer] = t  # the last tensor produced for a layer is its output
    rows = []
    for layer in ref:
        t = match.get(layer)
        if t is None:
            continue
        q = interp.get_tensor(t["index"])
        scale, zero = t["quantization"]
        got = (q.astype(np.float32) - zero) * scale if scale else q.astype(np.float32)
        rows.append({"layer": layer, "tflite_tensor": t["name"].split(";")[0], "dtype": np.dtype(t["dtype"]).name,
                     **_stats(ref[layer], got.reshape(ref[layer].shape), float(scale))})
    return rows


def quantization_debugger(float_model, calibration: np.ndarray, x: np.ndarray | None = None) -> list[dict]:
    """TFLite's QuantizationDebugger on the post-training INT8 conversion of `float_model`.

    Returns one row per quantized op output: layer (Keras name, or None), tensor_name, op,
    and the debugger's numbers (num_elements, stddev, mean_error, max_abs_error,
    mean_squared_error, scale, zero_point, rmse_over_scale).
    """
    samples = np.asarray(calibration)
    debug = samples if x is None else np.asarray(x)
    dtype = np.float32 if np.issubdtype(samples.dtype, np.floating) else samples.dtype

    def rows_of(a):
        def gen():
            for row in a:
                yield [row[None, ...].astype(dtype)]
        return gen

    conv = tf.lite.TFLiteConverter.from_keras_model(float_model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rows_of(samples)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    debugger = tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=rows_of(debug))
    debugger.run()
    names = {_base_name(lay) for lay in float_model.layers}
    out_layer = _output_layer(float_model)
    out = []
    for tensor, stats in debugger.layer_statistics.items():
        layer = _keras_layer_of(tensor, names) or (out_layer if "StatefulPartitionedCall" in tensor else None)
        row = {"layer": layer, "tensor_name": tensor.split(";")[0]}
        row.update({k: float(v) for k, v in stats.items()})
        if row.get("scale"):
            row["rmse_over_scale"] = float(np.sqrt(row["mean_squared_error"]) / row["scale"])
        out.append(row)
    return out


def format_errors(rows: list[dict]) -> str:
    """A table of `layer_errors` rows."""
    head = ("layer", "dtype", "rmse", "rmse/scale", "rel. rmse", "cosine")
    body = [(r["layer"], r["dtype"], f"{r['rmse']:.4g}",
             "-" if r["rmse_over_scale"] is None else f"{r['rmse_over_scale']:.2f}",
             f"{r['relative_rmse']:.3f}", f"{r['cosine']:.4f}") for r in rows]
    widths = [max(len(t[c]) for t in [head, *body]) for c in range(len(head))]
    lines = ["  ".join(t[c].ljust(widths[c]) for c in range(len(head))).rstrip() for t in [head, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
