"""Corrupted `.tflite` files: `inspect` and `eval` end in exit 2 and a one-line error, never a crash.

Structural variants (truncations, flipped offsets/lengths, zero-filled tables) must all be
rejected. Random flips anywhere may hit weight bytes, which leave a valid model (the format has
no checksum): those must end in exit 0 or in exit 2 with a one-line error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from runtime_fixtures import RuntimeModels, runtime_models
from tflite_compress.cli import main
from tflite_compress.runtime import _probe, flatbuffer


@pytest.fixture(scope="session")
def models() -> RuntimeModels:
    return runtime_models()


def structure_positions(data: bytes) -> tuple[list[int], list[int]]:
    """(positions of every uoffset the reader follows, positions of every table start) in a valid file."""
    offsets: list[int] = []
    tables: list[int] = []
    deref, table = flatbuffer._Reader.deref, flatbuffer._Reader.table

    def rec_deref(self, pos, what):
        offsets.append(pos)
        return deref(self, pos, what)

    def rec_table(self, pos, what):
        tables.append(pos)
        return table(self, pos, what)

    flatbuffer._Reader.deref, flatbuffer._Reader.table = rec_deref, rec_table
    try:
        flatbuffer.parse_model(data, "valid")
    finally:
        flatbuffer._Reader.deref, flatbuffer._Reader.table = deref, table
    return sorted(set(offsets)), sorted(set(tables))


def structural_variants(data: bytes) -> list[tuple[str, bytes]]:
    n = len(data)
    offsets, tables = structure_positions(data)
    rng = np.random.default_rng(0)
    out: list[tuple[str, bytes]] = []
    for k in sorted({0, 1, 4, 7, 8, 15, 16, 17, 31, 64, n - 1, n - 2, n - 4, n - 8, n // 2}
                    | set(rng.integers(1, n, 55).tolist())):
        out.append((f"truncated to {k}", data[:k]))
    for p in list(rng.choice(offsets, min(len(offsets), 80), replace=False)):
        b = bytearray(data)
        b[p + 3] ^= 0x80  # the offset now points gigabytes past the end
        out.append((f"flipped offset at {p}", bytes(b)))
    for p in list(rng.choice(tables, min(len(tables), 40), replace=False)):
        b = bytearray(data)
        b[p + 2] ^= 0x7F  # the table's vtable moves out of the file
        out.append((f"flipped table at {p}", bytes(b)))
    for p in list(rng.choice(tables, min(len(tables), 40), replace=False)):
        b = bytearray(data)
        width = int(rng.integers(4, 33))
        b[p:p + width] = bytes(len(b[p:p + width]))  # a zero soffset: the vtable is the table itself, size 0
        out.append((f"zero-filled {width} bytes at table {p}", bytes(b)))
    out.append(("empty", b""))
    out.append(("garbage", rng.integers(0, 256, n, dtype=np.uint8).tobytes()))
    out.append(("garbage with TFL3 id", data[:8] + rng.integers(0, 256, n - 8, dtype=np.uint8).tobytes()))
    return out


def one_line_error(result) -> bool:
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    return len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.output


@pytest.fixture()
def bundle_dir(models, tmp_path) -> Path:
    """A copy of the text model's folder, whose model.tflite the tests overwrite."""
    folder = tmp_path / "bundle"
    shutil.copytree(models.text_int8.parent, folder)
    return folder


def test_structural_corruptions_all_exit_2(models, bundle_dir, monkeypatch):
    data = models.text_int8.read_bytes()
    variants = structural_variants(data)
    assert len(variants) >= 200
    probed = []
    real_probe = _probe.probe_model

    def counting_probe(content, name, *args, **kwargs):
        probed.append(name)
        return real_probe(content, name, *args, **kwargs)

    monkeypatch.setattr(_probe, "probe_model", counting_probe)
    runner = CliRunner()
    model = bundle_dir / "model.tflite"
    for label, content in variants:
        model.write_bytes(content)
        for args in (["inspect", str(model)], ["eval", str(model), "--data", str(models.text_csv)]):
            result = runner.invoke(main, args)
            assert result.exit_code == 2 and one_line_error(result), (label, args[0], result.output)
            assert str(model) in result.output, (label, result.output)
    assert len(probed) < len(variants) // 10  # the verifier rejects nearly all before any child process


def test_random_corruptions_never_crash(models, bundle_dir):
    """Flips and zero fills anywhere: a clean exit 0 (weights hit: still a valid model) or exit 2, one line."""
    data = models.text_int8.read_bytes()
    rng = np.random.default_rng(1)
    runner = CliRunner()
    model = bundle_dir / "model.tflite"
    codes = []
    for i in range(40):
        b = bytearray(data)
        if i % 2:
            for p in rng.integers(8, len(b), 4):
                b[p] ^= int(rng.integers(1, 256))
        else:
            p, width = int(rng.integers(8, len(b) - 16)), int(rng.integers(1, 16))
            b[p:p + width] = bytes(width)
        model.write_bytes(bytes(b))
        for args in (["inspect", str(model)], ["eval", str(model), "--data", str(models.text_csv)]):
            result = runner.invoke(main, args)
            assert result.exit_code in (0, 2), (i, args[0], result.output, result.exception)
            if result.exit_code == 2:
                assert one_line_error(result), (i, result.output)
            codes.append(result.exit_code)
    assert 2 in codes


def test_hostile_fields_rejected(models, bundle_dir):
    """Hand-made hostile values the structure allows: a huge shape, a bad buffer index, a bad op code."""
    data = models.text_int8.read_bytes()
    flat = flatbuffer.parse_model(data, "valid")
    runner = CliRunner()
    model = bundle_dir / "model.tflite"
    embedding = max(flat.subgraphs[0].tensors, key=lambda t: flat.buffers[t.buffer].size_bytes)
    cases = []
    # the embedding's buffer bytes, declared shape elsewhere: find its shape vector by value and inflate it
    shape_bytes = np.array(embedding.shape, "<i4").tobytes()
    at = data.find(np.array([len(embedding.shape)], "<u4").tobytes() + shape_bytes)
    assert at > 0
    b = bytearray(data)
    b[at + 4:at + 8] = np.array([2**30], "<i4").tobytes()
    cases.append(("huge shape", bytes(b), "elements"))
    b = bytearray(data)
    b[at + 4:at + 8] = np.array([-5], "<i4").tobytes()
    cases.append(("negative dim", bytes(b), "invalid shape"))
    b = bytearray(data)
    b[at + 4:at + 8] = np.array([embedding.shape[0] + 1], "<i4").tobytes()
    cases.append(("data shorter than shape", bytes(b), "bytes of data"))
    for label, content, words in cases:
        model.write_bytes(content)
        result = runner.invoke(main, ["inspect", str(model)])
        assert result.exit_code == 2 and one_line_error(result) and words in result.output, (label, result.output)
