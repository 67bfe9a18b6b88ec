"""tflite-compress: Keras models to small, fast, validated INT8 TensorFlow Lite files.

Importing the package does not import TensorFlow; the training stages load it on first use,
and `tflite_compress.runtime` never does. The public names below are loaded lazily.

    from tflite_compress import Recipe, load_recipe, run_text_pipeline, load_clinc150
    result = run_text_pipeline(load_clinc150(), load_recipe("int8-pruned-50"), "runs/x", "runs/cache")

    from tflite_compress import load_bundle          # numpy + LiteRT only
    bundle = load_bundle("runs/x/model_int8.tflite")
"""

__version__ = "0.1.0"

_PUBLIC = {
    "Recipe": "config",
    "load_recipe": "recipes",
    "load_clinc150": "data",
    "load_text_file": "data",
    "run_text_pipeline": "pipeline",
    "compress": "compress",
    "CompressOptions": "compress",
    "TFLiteModel": "runtime",
    "RuntimeOptions": "runtime",
    "load_bundle": "runtime",
    "evaluate_text": "runtime",
    "InputError": "errors",
    "GateError": "errors",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'tflite_compress' has no attribute {name!r}")
