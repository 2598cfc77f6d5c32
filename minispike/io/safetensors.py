"""Reading and writing safetensors files, strictly.

The format (https://github.com/huggingface/safetensors) is

    [8 bytes: N, unsigned little-endian]  [N bytes: JSON header]  [data bytes]

The header maps every tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}``
(offsets relative to the start of the data bytes), plus an optional ``"__metadata__"``
dict of strings. A tensor holds ``prod(shape) * itemsize(dtype)`` bytes, row-major,
little-endian.

This module parses the header itself, so every way a file can be broken gives one
``SafetensorsError`` naming the file (and the offending keys): not a safetensors file,
truncated file, corrupt header, overlapping or out-of-range offsets, unsupported dtype.

Half precision is converted on reading:
    F16  -> the compute dtype (``np.float16`` widens exactly),
    BF16 -> the compute dtype via its raw bytes: a bfloat16 is the upper 16 bits of a
            float32, so ``float32_bits = uint32(bf16_bits) << 16`` is exact.
(NumPy has no bfloat16, which is why ``safetensors.numpy`` cannot read BF16.)

Writes are atomic: the file is written to a temporary file in the same directory,
flushed to disk, then renamed over the target with ``os.replace``.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np

__all__ = [
    "SafetensorsError", "StateMismatchError", "read_header", "load_file", "save_file", "check_state",
    "atomic_write", "DTYPES",
]

# safetensors dtype name -> NumPy dtype (little-endian). BF16 is read as raw uint16.
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAME_OF = {np.dtype(v).newbyteorder("<") if v.itemsize > 1 else v: k
            for k, v in DTYPES.items() if k != "BF16"}

_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


class SafetensorsError(ValueError):
    """A safetensors file that cannot be read as asked; the message names file and keys."""

    def __init__(self, path, message, keys=()):
        self.path = str(path)
        self.keys = list(keys)
        super().__init__(f"{self.path}: {message}")


def _fmt_keys(keys, limit=12):
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------
def read_header(path):
    """Parse and validate the header of ``path``.

    Returns ``(entries, metadata, data_start)``: ``entries`` maps name -> dict(dtype, shape,
    data_offsets), ``metadata`` is the ``__metadata__`` dict (or {}), ``data_start`` the
    absolute file offset of the data bytes. Raises ``SafetensorsError`` on any defect.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SafetensorsError(path, "no such file")
    if os.path.isdir(path):
        raise SafetensorsError(path, "is a directory, not a safetensors file")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise SafetensorsError(path, f"not a safetensors file (only {size} bytes; the format "
                                         "starts with an 8-byte header length)")
        (n,) = struct.unpack("<Q", head)
        first = f.read(1)
        if n == 0 or n > _MAX_HEADER or first not in (b"{", b""):
            hint = " (it looks like a zip/PyTorch file)" if head[:2] == b"PK" else ""
            raise SafetensorsError(path, f"not a safetensors file{hint}: header length field is {n}"
                                         f" and the header does not start with '{{'")
        if 8 + n > size:
            raise SafetensorsError(path, f"truncated file: header says {n} header bytes, but the "
                                         f"file has only {size - 8} bytes after the length field")
        raw = first + f.read(n - 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(path, f"corrupt header: not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(path, f"corrupt header: expected a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise SafetensorsError(path, "corrupt header: __metadata__ is not an object")

    data_start, data_len = 8 + n, size - 8 - n
    bad, spans = [], []
    for name, e in header.items():
        try:
            dtype, shape, (begin, end) = e["dtype"], e["shape"], e["data_offsets"]
            ok = (isinstance(dtype, str) and isinstance(shape, list)
                  and all(isinstance(s, int) and s >= 0 for s in shape)
                  and isinstance(begin, int) and isinstance(end, int) and 0 <= begin <= end)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            bad.append(name)
            continue
        if dtype not in DTYPES:
            raise SafetensorsError(path, f"unsupported dtype {dtype!r} for tensor {name!r} "
                                         f"(supported: {', '.join(DTYPES)})", [name])
        nbytes = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype].itemsize
        if end - begin != nbytes:
            raise SafetensorsError(path, f"corrupt header: tensor {name!r} of dtype {dtype} and shape "
                                         f"{shape} needs {nbytes} bytes, but its offsets span {end - begin}",
                                   [name])
        spans.append((begin, end, name))
    if bad:
        raise SafetensorsError(path, "corrupt header: entries without a valid dtype/shape/data_offsets: "
                               + _fmt_keys(bad), bad)
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else "leaves a gap before it"
            raise SafetensorsError(path, f"corrupt header: tensor {name!r} at bytes [{begin}, {end}) {what}",
                                   [name])
        pos = end
    if pos > data_len:
        cut = [name for begin, end, name in spans if end > data_len]
        raise SafetensorsError(path, f"truncated file: the header needs {pos} data bytes, the file has "
                                     f"{data_len}; tensors cut off: {_fmt_keys(cut)}", cut)
    if pos < data_len:
        raise SafetensorsError(path, f"corrupt file: {data_len - pos} trailing bytes after the last tensor")
    return header, metadata, data_start


def _bf16_to_f32(bits):
    """bfloat16 raw bits (uint16) -> float32, exactly."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _f32_to_bf16(x):
    """float32 -> bfloat16 raw bits (uint16), round to nearest even; NaN stays NaN."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        rounded[nan] = 0x7FC0
    return rounded


def load_file(path, dtype=None, keys=None):
    """Read tensors of ``path`` as host NumPy arrays.

    ``dtype``: the compute dtype floats are converted to. F16 and BF16 always are
    (default: ``minispike.backend.default_dtype()``, i.e. float32); F32/F64 are only
    converted when ``dtype`` is given. Integer and bool tensors keep their dtype.
    ``keys``: read only these names (all must exist).
    """
    path = os.fspath(path)
    header, _, start = read_header(path)
    if keys is not None:
        missing = [k for k in keys if k not in header]
        if missing:
            raise SafetensorsError(path, f"missing tensors: {_fmt_keys(missing)}", missing)
    half_to = np.dtype(dtype) if dtype is not None else _default_float()
    names = list(header) if keys is None else list(keys)
    out = {}
    if not names:
        return out
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        for name in names:
            e = header[name]
            begin, end = e["data_offsets"]
            raw = mm[start + begin:start + end]
            kind = e["dtype"]
            a = raw.view(DTYPES[kind]).reshape(e["shape"])
            if kind == "BF16":
                a = _bf16_to_f32(a).astype(half_to, copy=False)
            elif kind == "F16":
                a = a.astype(half_to)
            elif kind in ("F32", "F64") and dtype is not None:
                a = a.astype(dtype)
            else:
                a = np.array(a)  # an owned, native-order copy (the memmap is closed below)
            if a.dtype.byteorder == ">":  # pragma: no cover - big-endian hosts
                a = a.astype(a.dtype.newbyteorder("="))
            out[name] = a
    finally:
        del mm
    return out


def _default_float():
    try:
        from ..backend import default_dtype
        return np.dtype(default_dtype())
    except Exception:  # pragma: no cover - io used on its own
        return np.dtype(np.float32)


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------
def atomic_write(path, write):
    """Call ``write(f)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename is None:  # a full disk: name the file being written
            raise OSError(e.errno, e.strerror, path) from e
        raise


def save_file(tensors, path, metadata=None, dtypes=None):
    """Write ``tensors`` (name -> array; CuPy/strict arrays are copied to the host) atomically.

    ``metadata``: optional dict of strings (stored as ``__metadata__``).
    ``dtypes``: optional name -> "F16" / "BF16" / "F32" ... to store a tensor in another dtype
    (e.g. BF16 for half-size checkpoints, or to build test files).
    """
    path = os.fspath(path)
    dtypes = dtypes or {}
    unknown = [k for k in dtypes if k not in tensors]
    if unknown:
        raise SafetensorsError(path, f"dtypes given for tensors that are not saved: {_fmt_keys(unknown)}",
                               unknown)
    blobs, header, pos = [], {}, 0
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(path, f"invalid tensor name {name!r}", [name])
        a = _host(tensors[name])
        kind = dtypes.get(name)
        if kind == "BF16":
            buf = _f32_to_bf16(a.astype(np.float32))
        elif kind is not None:
            if kind not in DTYPES:
                raise SafetensorsError(path, f"unsupported dtype {kind!r} for tensor {name!r}", [name])
            buf = a.astype(DTYPES[kind])
        else:
            native = a.dtype.newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
            if native not in _NAME_OF:
                raise SafetensorsError(path, f"cannot store dtype {a.dtype} of tensor {name!r}", [name])
            kind, buf = _NAME_OF[native], a.astype(native, copy=False)
        data = np.ascontiguousarray(buf).tobytes()
        header[name] = {"dtype": kind, "shape": list(a.shape), "data_offsets": [pos, pos + len(data)]}
        blobs.append(data)
        pos += len(data)
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise SafetensorsError(path, "metadata must map strings to strings")
        header = {"__metadata__": dict(metadata), **header}
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * (-len(hbytes) % 8)  # align the data to 8 bytes, as the reference writer does

    def write(f):
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for b in blobs:
            f.write(b)
    atomic_write(path, write)


def _host(a):
    if isinstance(a, np.ndarray):
        return a
    if hasattr(a, "requires_grad"):  # a minispike Tensor or Parameter
        a = a.data
    from ..backend import to_numpy
    return to_numpy(a)


# ----------------------------------------------------------------------------------------
# Checking a state against what a model expects
# ----------------------------------------------------------------------------------------
class StateMismatchError(SafetensorsError):
    """Tensors that do not match what a model expects (missing, unexpected, misshapen)."""


def check_state(found, expected, path, what="tensors", allow_missing=(), error=StateMismatchError,
                hint="the model"):
    """Compare ``found`` (name -> shape) with ``expected`` (name -> shape); raise one error.

    The message lists missing keys, unexpected keys and shape mismatches together, naming
    the file. ``allow_missing`` names keys that may be absent (returned as a list).
    """
    found = {k: tuple(v) for k, v in found.items()}
    expected = {k: tuple(v) for k, v in expected.items()}
    missing = [k for k in expected if k not in found and k not in allow_missing]
    unexpected = [k for k in found if k not in expected]
    mismatched = [k for k in expected if k in found and found[k] != expected[k]]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {what}: {_fmt_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected {what}: {_fmt_keys(unexpected)}")
        if mismatched:
            parts.append("shape mismatch: " + ", ".join(
                f"{k!r} is {list(found[k])} in the file, {hint} expects {list(expected[k])}"
                for k in mismatched[:12]) + (f", ... ({len(mismatched) - 12} more)" if len(mismatched) > 12 else ""))
        raise error(path, "; ".join(parts), missing + unexpected + mismatched)
    return [k for k in expected if k not in found]
