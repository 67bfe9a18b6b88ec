"""tflite-compress: Keras models to small, fast, validated INT8 TensorFlow Lite files.

Importing the package does not import TensorFlow; the training stages load it on first use,
and `tflite_compress.runtime` never does.
"""

__version__ = "0.1.0"
