"""A bounds-checked reader of the TFLite flatbuffer schema: verify a file before any use.

Untrusted `.tflite` files go through `parse_model` before the interpreter sees them: every
offset, vtable, vector and string is checked against the file's size and alignment, and the
cross references (op codes, tensor indices, buffer indices, signature tensors) against the
tables they point into. A file that fails raises `InputError` naming it; nothing here can read
past the end of the bytes or loop forever. Pure Python (struct), no TensorFlow.

Only the fields this suite reads are decoded (schema.fbs of TensorFlow Lite, version 3).
"""

from __future__ import annotations

import dataclasses
import functools
import struct

import numpy as np

from ..errors import InputError

# TensorType enum of schema.fbs -> (name, bytes per element; 0 = variable or packed).
TENSOR_TYPES: dict[int, tuple[str, int]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
    5: ("string", 0), 6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1),
    10: ("float64", 8), 11: ("complex128", 16), 12: ("uint64", 8), 13: ("resource", 0),
    14: ("variant", 0), 15: ("uint32", 4), 16: ("uint16", 2), 17: ("int4", 0), 18: ("bfloat16", 2),
    19: ("int2", 0),
}
CUSTOM_OPCODE = 32
MAX_RANK = 16
MAX_TENSOR_BYTES = 1 << 32  # a shape asking for more than 4 GiB is hostile, not a phone model


@dataclasses.dataclass(frozen=True)
class Quantization:
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0


@dataclasses.dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    buffer: int
    quantization: Quantization
    is_variable: bool
    sparse: bool


@dataclasses.dataclass(frozen=True)
class Operator:
    opcode_index: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    builtin_code: int
    custom_code: str | None
    version: int

    @property
    def name(self) -> str:
        """The op's name: the builtin's (`FULLY_CONNECTED`) or the custom code (`FlexCumprod`)."""
        if self.builtin_code == CUSTOM_OPCODE:
            return self.custom_code or "CUSTOM"
        return builtin_op_names().get(self.builtin_code, f"BUILTIN_{self.builtin_code}")

    @property
    def is_custom(self) -> bool:
        return self.builtin_code == CUSTOM_OPCODE

    @property
    def is_flex(self) -> bool:
        return self.is_custom and (self.custom_code or "").startswith("Flex")


@dataclasses.dataclass(frozen=True)
class SubGraph:
    name: str
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]


@dataclasses.dataclass(frozen=True)
class Buffer:
    """Where a constant's bytes sit in the file: `[offset, offset + size_bytes)`."""

    offset: int
    size_bytes: int


@dataclasses.dataclass(frozen=True)
class Signature:
    key: str
    subgraph_index: int
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclasses.dataclass(frozen=True)
class FlatModel:
    """The verified structure of a `.tflite` file."""

    version: int
    description: str
    operator_codes: tuple[OperatorCode, ...]
    subgraphs: tuple[SubGraph, ...]
    buffers: tuple[Buffer, ...]
    signatures: tuple[Signature, ...]
    metadata: tuple[str, ...]

    def buffer_bytes(self, content: bytes, tensor: Tensor) -> bytes:
        buf = self.buffers[tensor.buffer]
        return content[buf.offset:buf.offset + buf.size_bytes]

    def constant_array(self, content: bytes, tensor: Tensor) -> np.ndarray | None:
        """A constant tensor's values (raw, still quantized), or None if it has no fixed-size data."""
        data = self.buffer_bytes(content, tensor)
        if not data or tensor.sparse or TENSOR_TYPES_BY_NAME.get(tensor.dtype, 0) == 0:
            return None
        return np.frombuffer(data, dtype=np.dtype(tensor.dtype)).reshape(tensor.shape)

    def op_name(self, op: Operator) -> str:
        return self.operator_codes[op.opcode_index].name


TENSOR_TYPES_BY_NAME = {name: size for name, size in TENSOR_TYPES.values()}


@functools.lru_cache(maxsize=1)
def builtin_op_names() -> dict[int, str]:
    """BuiltinOperator code -> name, from the schema module that ships with the interpreter."""
    for module in ("ai_edge_litert.schema_py_generated", "tflite_runtime.schema_py_generated"):
        try:
            mod = __import__(module, fromlist=["BuiltinOperator"])
        except ImportError:
            continue
        ops = mod.BuiltinOperator
        return {v: k for k, v in vars(ops).items() if k.isupper() and isinstance(v, int)}
    return {}


class _Corrupt(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.n = len(data)

    def need(self, pos: int, size: int, what: str, align: int = 1) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise _Corrupt(f"{what} at byte {pos} (+{size}) lies outside the {self.n}-byte file")
        if align > 1 and pos % align:
            raise _Corrupt(f"{what} at byte {pos} is not {align}-byte aligned")

    def unpack(self, fmt: str, pos: int, what: str):
        size = struct.calcsize(fmt)
        self.need(pos, size, what, align=min(size, 4) if size in (2, 4, 8) else 1)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def table(self, pos: int, what: str) -> "_Table":
        soffset = self.unpack("<i", pos, what)
        vt = pos - soffset
        vt_size = self.unpack("<H", vt, f"{what} vtable")
        obj_size = self.unpack("<H", vt + 2, f"{what} vtable")
        if vt_size < 4 or vt_size % 2:
            raise _Corrupt(f"{what} vtable at byte {vt} has an invalid size {vt_size}")
        if obj_size < 4:
            raise _Corrupt(f"{what} at byte {pos} has an invalid size {obj_size}")
        self.need(vt, vt_size, f"{what} vtable", 2)
        self.need(pos, obj_size, what)
        return _Table(self, pos, vt, vt_size, obj_size, what)

    def deref(self, pos: int, what: str) -> int:
        target = pos + self.unpack("<I", pos, what)
        if target >= self.n:
            raise _Corrupt(f"{what}: offset at byte {pos} points past the end of the file")
        return target


class _Table:
    def __init__(self, r: _Reader, pos: int, vt: int, vt_size: int, obj_size: int, what: str):
        self.r, self.pos, self.vt, self.vt_size, self.obj_size, self.what = r, pos, vt, vt_size, obj_size, what

    def _field(self, i: int, size: int) -> int | None:
        slot = 4 + 2 * i
        if slot + 2 > self.vt_size:
            return None
        off = struct.unpack_from("<H", self.r.data, self.vt + slot)[0]
        if off == 0:
            return None
        if off + size > self.obj_size:
            raise _Corrupt(f"{self.what}: field {i} lies outside its table")
        return self.pos + off

    def scalar(self, i: int, fmt: str, default):
        p = self._field(i, struct.calcsize(fmt))
        return default if p is None else self.r.unpack(fmt, p, f"{self.what} field {i}")

    def _target(self, i: int) -> int | None:
        p = self._field(i, 4)
        return None if p is None else self.r.deref(p, f"{self.what} field {i}")

    def table(self, i: int, what: str) -> "_Table | None":
        t = self._target(i)
        return None if t is None else self.r.table(t, what)

    def vector(self, i: int, elem_size: int, what: str) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) when absent."""
        t = self._target(i)
        if t is None:
            return 0, 0
        length = self.r.unpack("<I", t, f"{what} length")
        self.r.need(t + 4, length * elem_size, what, align=min(elem_size, 8) if elem_size > 1 else 1)
        return t + 4, length

    def scalars(self, i: int, fmt: str, what: str) -> tuple:
        size = struct.calcsize(fmt)
        start, length = self.vector(i, size, what)
        if not length:
            return ()
        return struct.unpack_from(f"<{length}{fmt.lstrip('<')}", self.r.data, start)

    def tables(self, i: int, what: str) -> list["_Table"]:
        start, length = self.vector(i, 4, what)
        return [self.r.table(self.r.deref(start + 4 * k, f"{what}[{k}]"), f"{what}[{k}]") for k in range(length)]

    def string(self, i: int, what: str) -> str | None:
        t = self._target(i)
        if t is None:
            return None
        length = self.r.unpack("<I", t, what)
        self.r.need(t + 4, length + 1, what)
        if self.r.data[t + 4 + length] != 0:
            raise _Corrupt(f"{what} at byte {t} is not NUL-terminated")
        return self.r.data[t + 4:t + 4 + length].decode("utf-8", errors="replace")


def _tensor(t: _Table, index: int, n_buffers: int, what: str) -> Tensor:
    shape = t.scalars(0, "i", f"{what}.shape")
    type_code = t.scalar(1, "<b", 0)
    if type_code not in TENSOR_TYPES:
        raise _Corrupt(f"{what} has an unknown type code {type_code}")
    dtype, itemsize = TENSOR_TYPES[type_code]
    buffer = t.scalar(2, "<I", 0)
    if buffer >= n_buffers:
        raise _Corrupt(f"{what} refers to buffer {buffer}, but the file has {n_buffers}")
    name = t.string(3, f"{what}.name") or ""
    q = t.table(4, f"{what}.quantization")
    quant = Quantization()
    if q is not None:
        scale = q.scalars(2, "f", f"{what}.quantization.scale")
        zero = q.scalars(3, "q", f"{what}.quantization.zero_point")
        qdim = q.scalar(6, "<i", 0)
        if not all(np.isfinite(s) for s in scale):
            raise _Corrupt(f"{what} has a non-finite quantization scale")
        if zero and scale and len(zero) != len(scale):
            raise _Corrupt(f"{what} has {len(scale)} scales but {len(zero)} zero points")
        if len(scale) > 1 and not 0 <= qdim < max(len(shape), 1):
            raise _Corrupt(f"{what} has quantized_dimension {qdim} outside its rank {len(shape)}")
        quant = Quantization(tuple(float(s) for s in scale), tuple(int(z) for z in zero), int(qdim))
    is_variable = bool(t.scalar(5, "<B", 0))
    sparse = t._field(6, 4) is not None
    signature = t.scalars(7, "i", f"{what}.shape_signature") or None
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise _Corrupt(f"{what} has an invalid shape {list(shape)}")
    if signature is not None and (len(signature) != len(shape) or any(d < -1 for d in signature)):
        raise _Corrupt(f"{what} has an invalid shape signature {list(signature)}")
    elements = int(np.prod(shape, dtype=np.float64)) if shape else 1
    if elements * max(itemsize, 1) > MAX_TENSOR_BYTES:
        raise _Corrupt(f"{what} asks for {elements} elements of {dtype}")
    return Tensor(index, name, dtype, tuple(shape), tuple(signature) if signature else None, buffer, quant,
                  is_variable, sparse)


def _indices(values: tuple, n: int, what: str, allow_optional: bool) -> tuple[int, ...]:
    for v in values:
        if not (0 <= v < n or (allow_optional and v == -1)):
            raise _Corrupt(f"{what} refers to tensor {v}, but the subgraph has {n}")
    return tuple(int(v) for v in values)


def _parse(data: bytes) -> FlatModel:
    r = _Reader(data)
    if r.n < 16:
        raise _Corrupt(f"file is {r.n} bytes")
    if data[4:8] != b"TFL3":
        raise _Corrupt("no 'TFL3' file identifier")
    root = r.table(r.deref(0, "root offset"), "model")
    version = root.scalar(0, "<I", 0)
    codes = []
    for k, c in enumerate(root.tables(1, "operator_codes")):
        deprecated = c.scalar(0, "<b", 0)
        builtin = c.scalar(3, "<i", 0)
        codes.append(OperatorCode(max(int(deprecated), int(builtin)), c.string(1, f"operator_codes[{k}].custom_code"),
                                  c.scalar(2, "<i", 1)))
    buffers = []
    for k, b in enumerate(root.tables(4, "buffers")):
        start, length = b.vector(0, 1, f"buffers[{k}].data")
        offset, size = b.scalar(1, "<Q", 0), b.scalar(2, "<Q", 0)
        if offset > 1:
            if offset + size > r.n:
                raise _Corrupt(f"buffers[{k}] (bytes {offset}..{offset + size}) lies outside the {r.n}-byte file")
            start, length = offset, size
        buffers.append(Buffer(start, length))
    subgraphs = []
    for s, g in enumerate(root.tables(2, "subgraphs")):
        tensors = tuple(_tensor(t, i, len(buffers), f"subgraphs[{s}].tensors[{i}]")
                        for i, t in enumerate(g.tables(0, f"subgraphs[{s}].tensors")))
        n = len(tensors)
        ins = _indices(g.scalars(1, "i", f"subgraphs[{s}].inputs"), n, f"subgraphs[{s}].inputs", False)
        outs = _indices(g.scalars(2, "i", f"subgraphs[{s}].outputs"), n, f"subgraphs[{s}].outputs", False)
        ops = []
        for k, o in enumerate(g.tables(3, f"subgraphs[{s}].operators")):
            what = f"subgraphs[{s}].operators[{k}]"
            opcode = o.scalar(0, "<I", 0)
            if opcode >= len(codes):
                raise _Corrupt(f"{what} uses op code {opcode}, but the file has {len(codes)}")
            ops.append(Operator(int(opcode), _indices(o.scalars(1, "i", f"{what}.inputs"), n, f"{what}.inputs", True),
                                _indices(o.scalars(2, "i", f"{what}.outputs"), n, f"{what}.outputs", True)))
        for t in tensors:
            _check_constant(t, buffers[t.buffer], f"subgraphs[{s}].tensors[{t.index}]")
        subgraphs.append(SubGraph(g.string(4, f"subgraphs[{s}].name") or "", tensors, ins, outs, tuple(ops)))
    if not subgraphs:
        raise _Corrupt("no subgraphs")
    signatures = []
    for k, sd in enumerate(root.tables(7, "signature_defs")):
        index = sd.scalar(4, "<I", 0)
        if index >= len(subgraphs):
            raise _Corrupt(f"signature_defs[{k}] refers to subgraph {index}, but the file has {len(subgraphs)}")
        n = len(subgraphs[index].tensors)
        maps = []
        for field, kind in ((0, "inputs"), (1, "outputs")):
            m = {}
            for j, tm in enumerate(sd.tables(field, f"signature_defs[{k}].{kind}")):
                t_index = tm.scalar(1, "<I", 0)
                if t_index >= n:
                    raise _Corrupt(f"signature_defs[{k}].{kind}[{j}] refers to tensor {t_index}, but the subgraph has {n}")
                m[tm.string(0, f"signature_defs[{k}].{kind}[{j}].name") or f"{kind}_{j}"] = int(t_index)
            maps.append(m)
        signatures.append(Signature(sd.string(2, f"signature_defs[{k}].signature_key") or "", int(index), *maps))
    metadata = []
    for k, md in enumerate(root.tables(6, "metadata")):
        if md.scalar(1, "<I", 0) >= len(buffers):
            raise _Corrupt(f"metadata[{k}] refers to a buffer the file does not have")
        metadata.append(md.string(0, f"metadata[{k}].name") or "")
    return FlatModel(int(version), root.string(3, "description") or "", tuple(codes), tuple(subgraphs),
                     tuple(buffers), tuple(signatures), tuple(metadata))


def _check_constant(t: Tensor, buf: Buffer, what: str) -> None:
    itemsize = TENSOR_TYPES_BY_NAME[t.dtype]
    if not buf.size_bytes or not itemsize or t.sparse:
        return
    expected = int(np.prod(t.shape, dtype=np.int64)) * itemsize if t.shape else itemsize
    if buf.size_bytes != expected:
        raise _Corrupt(f"{what} ({t.name!r}, {t.dtype} {list(t.shape)}) has {buf.size_bytes} bytes of data, expected {expected}")


def parse_model(data: bytes, name: str) -> FlatModel:
    """Verify and decode a `.tflite` flatbuffer; raises `InputError` naming `name` if it is corrupt."""
    try:
        return _parse(data)
    except _Corrupt as exc:
        raise InputError(f"{name}: not a valid TFLite model ({exc})") from None
    except (struct.error, ValueError, OverflowError, MemoryError) as exc:
        raise InputError(f"{name}: not a valid TFLite model ({type(exc).__name__}: {exc})") from None
