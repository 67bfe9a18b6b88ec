"""The suite's exceptions; the CLI maps them to exit codes (1 gate missed, 2 bad input)."""


class TFLiteCompressError(Exception):
    """Base class of the suite's errors."""


class InputError(TFLiteCompressError, ValueError):
    """A missing or malformed input: a file, a model, an option value. CLI exit code 2."""


class GateError(TFLiteCompressError):
    """A validation gate was missed (accuracy, drop, size). CLI exit code 1."""
