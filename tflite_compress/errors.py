"""The suite's exceptions, and the one table that maps them to CLI exit codes.

| exit | exception   | meaning                                                                 |
|------|-------------|-------------------------------------------------------------------------|
| 0    | -           | success                                                                 |
| 1    | GateError   | a validation gate was missed (accuracy, drop, size, perplexity)         |
| 2    | InputError  | bad input: a file, an option, a recipe value (nothing was written)      |
| 3    | RunError    | valid input, but the tool could not do what was asked (conversion       |
|      |             | failed, pruning fell short of its target, a float op left in an         |
|      |             | integer-only file; a failed write: disk full, file too large, read-only  |
|      |             | folder; a run name another live run is writing)                          |
| 130  | Interrupted | Ctrl-C (SIGINT): the run's temp files are removed, earlier outputs kept  |
| 143  | Interrupted | SIGTERM: the same                                                        |
"""

import signal


class TFLiteCompressError(Exception):
    """Base class of the suite's errors."""

    exit_code = 3


class InputError(TFLiteCompressError, ValueError):
    """A missing or malformed input: a file, a model, an option or recipe value. CLI exit code 2."""

    exit_code = 2


class GateError(TFLiteCompressError):
    """A validation gate was missed (accuracy, drop, size). CLI exit code 1."""

    exit_code = 1


class RunError(TFLiteCompressError):
    """Valid input, but a stage could not do what was asked (conversion, pruning target). CLI exit code 3."""

    exit_code = 3


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the command (a BaseException, like KeyboardInterrupt: cleanups run).

    CLI exit code 128 + the signal number: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


EXIT_CODES = {0: "success", 1: "a gate was missed", 2: "bad input (file, option, recipe)",
              3: "valid input, but a stage could not do what was asked (conversion, pruning target, float op left, "
                 "a failed write, a run name in use)",
              130: "interrupted by Ctrl-C (SIGINT)", 143: "stopped by SIGTERM"}
