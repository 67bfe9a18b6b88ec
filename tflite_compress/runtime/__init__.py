"""The on-device runtime harness: load, run and measure `.tflite` files with numpy alone.

Importing this package never imports TensorFlow (a test checks it in a fresh process).
"""

from .evaluate import (
    ModelBundle,
    classification_metrics,
    evaluate_text,
    file_stats,
    float_tensors,
    inspect_model,
    latency_us,
    load_bundle,
    weight_sparsity,
)
from .bench import bench_model, memory_bytes
from .compare import compare_outputs
from .evaluate import evaluate_arrays, label_names_for
from .flatbuffer import FlatModel, parse_model
from .inspection import describe, inspect_file
from .interpreter import RuntimeOptions, TFLiteModel, load_model, ops_with_types
from .samples import load_npz, random_inputs

__all__ = [
    "FlatModel", "ModelBundle", "RuntimeOptions", "TFLiteModel", "bench_model", "classification_metrics",
    "compare_outputs", "describe", "evaluate_arrays", "evaluate_text", "file_stats", "float_tensors",
    "inspect_file", "inspect_model", "label_names_for", "latency_us", "load_bundle", "load_model", "load_npz", "memory_bytes",
    "ops_with_types", "parse_model", "random_inputs", "weight_sparsity",
]
