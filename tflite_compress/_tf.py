"""The one place that imports TensorFlow, tf-keras and tfmot, in the right order.

tfmot wraps tf-keras (Keras 2) models only, so `TF_USE_LEGACY_KERAS=1` must be set before the
first `import tensorflow`. Keras 3 (`import keras`) stays available for keras-nlp teachers.
The runtime harness (`tflite_compress.runtime`) never imports this module.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise ImportError(
        "tflite_compress needs TF_USE_LEGACY_KERAS=1 before TensorFlow is imported; "
        "import tflite_compress first or set the variable in the environment"
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402

__all__ = ["tf", "keras", "tfmot"]
