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
from .interpreter import RuntimeOptions, TFLiteModel, ops_with_types

__all__ = [
    "ModelBundle", "RuntimeOptions", "TFLiteModel", "classification_metrics", "evaluate_text",
    "file_stats", "float_tensors", "inspect_model", "latency_us", "load_bundle", "ops_with_types",
    "weight_sparsity",
]
