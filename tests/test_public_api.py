"""The package's public names resolve, and none of them imports TensorFlow on its own."""

import subprocess
import sys


def test_public_names_resolve_without_tensorflow():
    code = (
        "import sys, tflite_compress as t\n"
        "missing = [n for n in t.__all__ if getattr(t, n, None) is None]\n"
        "assert not missing, missing\n"
        "assert 'tensorflow' not in sys.modules, 'a public name imported TensorFlow'\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    import tflite_compress

    with pytest.raises(AttributeError):
        tflite_compress.no_such_name  # noqa: B018
