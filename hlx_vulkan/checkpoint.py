"""Checkpoints: safetensors files, checked before they are trusted.

``save_checkpoint`` writes tensors with the safetensors library and returns, per tensor, its
content digest (see ``hlx_vulkan.memory.digest``) for a manifest. ``load_checkpoint`` reads
the header itself first and refuses, with an error that names the problem, a header past
``MAX_HEADER_BYTES``, offsets that are not contiguous or run past the file, a span that does
not match shape x dtype, and (given a manifest) any tensor whose digest differs.

bfloat16, which safetensors' numpy reader does not decode, is stored as its uint16 bits, and
the logical dtype is kept in the file's metadata.

Example::

    entries = save_checkpoint("model.safetensors", model.state_dict())
    model.load_state_dict(load_checkpoint("model.safetensors", {"tensors": entries}))
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections import OrderedDict

import numpy as np
import safetensors.numpy

from .errors import CheckpointError
from .memory.digest import tensor_digest
from .memory.dtypes import dtype_of

MAX_HEADER_BYTES = 16 * 1024 * 1024
# safetensors' dtype tags for the dtypes hlx stores, and their item sizes.
_TAGS = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "I8": 1, "U8": 1, "U16": 2, "F64": 8, "I64": 8, "BOOL": 1}
_DTYPE_KEY = "hlx.dtypes"
_ORDER_KEY = "hlx.order"  # safetensors lays tensors out by its own order; the caller's comes back on load


def _host(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)


def save_checkpoint(path, tensors: dict, metadata: dict | None = None) -> "OrderedDict[str, dict]":
    """Write ``tensors`` (name to tensor or array) to ``path``; returns name -> {dtype, shape, digest}."""
    arrays, entries, logical = {}, OrderedDict(), {}
    for name, value in tensors.items():
        a = np.ascontiguousarray(_host(value))
        dt = dtype_of(a.dtype)
        entries[name] = {"dtype": dt.name, "shape": list(a.shape), "digest": tensor_digest(dt.name, a.shape, a)}
        if dt.name == "bfloat16":
            a = a.view(np.uint16)
        logical[name] = dt.name
        arrays[name] = a
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[_DTYPE_KEY] = json.dumps(logical, sort_keys=True)
    meta[_ORDER_KEY] = json.dumps(list(arrays))
    tmp = f"{path}.tmp"
    safetensors.numpy.save_file(arrays, tmp, metadata=meta)
    os.replace(tmp, path)  # a crash mid-write never leaves a half-written checkpoint under the real name
    return entries


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_header(data: bytes, name: str = "checkpoint") -> tuple[dict, dict, int]:
    """Parse and check the safetensors header; returns (tensor entries, metadata, data start)."""
    if len(data) < 8:
        raise CheckpointError(f"{name}: {len(data)} bytes is too short for a safetensors header (truncated?)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        raise CheckpointError(f"{name}: header of {n} bytes is over the {MAX_HEADER_BYTES}-byte cap")
    if 8 + n > len(data):
        raise CheckpointError(f"{name}: header claims {n} bytes but the file has {len(data) - 8} after the length "
                              "(truncated?)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{name}: header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{name}: header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", {}) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{name}: __metadata__ must map strings to strings")
    start, size = 8 + n, len(data) - 8 - n
    spans = []
    for key, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise CheckpointError(f"{name}: tensor {key!r} needs exactly dtype, shape and data_offsets")
        tag, shape, offs = entry["dtype"], entry["shape"], entry["data_offsets"]
        if tag not in _TAGS:
            raise CheckpointError(f"{name}: tensor {key!r} has unsupported dtype {tag!r}")
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise CheckpointError(f"{name}: tensor {key!r} has an invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(isinstance(o, int) for o in offs)
                or not 0 <= offs[0] <= offs[1]):
            raise CheckpointError(f"{name}: tensor {key!r} has invalid data_offsets {offs!r}")
        if offs[1] > size:
            raise CheckpointError(f"{name}: tensor {key!r} ends at byte {offs[1]}, past the {size} data bytes "
                                  "(truncated?)")
        expected = math.prod(shape) * _TAGS[tag]
        if offs[1] - offs[0] != expected:
            raise CheckpointError(f"{name}: tensor {key!r} spans {offs[1] - offs[0]} bytes, but shape {shape} of "
                                  f"{tag} needs {expected}")
        spans.append((offs[0], offs[1], key))
    pos = 0
    for begin, end, key in sorted(spans):
        if begin != pos:
            raise CheckpointError(f"{name}: tensor {key!r} starts at byte {begin}, expected {pos} (offsets must be "
                                  "contiguous, without gaps or overlaps)")
        pos = end
    if pos != size:
        raise CheckpointError(f"{name}: the tensors cover {pos} of {size} data bytes")
    return header, meta, start


def load_checkpoint(path, manifest: dict | None = None) -> "OrderedDict[str, np.ndarray]":
    """Read a checkpoint written by :func:`save_checkpoint` after checking it; with ``manifest``
    (a dict with a "tensors" map of name -> {digest, ...}, or a path to such a JSON file), every
    tensor's digest must match and the names must be the same set."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"{name}: cannot read ({e.strerror})") from None
    header, meta, _ = read_header(data, name)
    try:
        logical = json.loads(meta.get(_DTYPE_KEY, "{}"))
        order = json.loads(meta.get(_ORDER_KEY, "[]"))
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # noqa: BLE001 - the library's own errors, renamed for the caller
        raise CheckpointError(f"{name}: safetensors could not decode it ({e})") from None
    out = OrderedDict()
    if sorted(order) != sorted(header):
        order = sorted(header, key=lambda k: header[k]["data_offsets"][0])
    for key in order:
        a = arrays[key]
        if logical.get(key) == "bfloat16":
            a = a.view(dtype_of("bfloat16").numpy)
        out[key] = a
    if manifest is not None:
        verify_against_manifest(out, manifest, name)
    return out


def verify_against_manifest(arrays: dict, manifest, name: str = "checkpoint") -> None:
    if not isinstance(manifest, dict):
        try:
            with open(manifest) as f:
                manifest = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"manifest {manifest}: cannot read it ({e})") from None
    expected = manifest.get("tensors")
    if not isinstance(expected, dict):
        raise CheckpointError("the manifest has no 'tensors' map")
    if set(expected) != set(arrays):
        raise CheckpointError(f"{name}: tensors {sorted(set(arrays) ^ set(expected))} are in only one of the file "
                              "and the manifest")
    for key, a in arrays.items():
        dt = dtype_of(a.dtype).name
        digest = tensor_digest(dt, a.shape, a)
        if digest != expected[key].get("digest"):
            raise CheckpointError(f"{name}: tensor {key!r} does not match the manifest's digest (tampered or "
                                  "corrupted)")


def state_digest(entries: dict) -> str:
    """One digest for a whole state: SHA-256 over each name and its tensor digest, in order."""
    h = hashlib.sha256(b"hlx-state\0")
    for key, entry in entries.items():
        h.update(key.encode() + b"\0" + (entry["digest"] if isinstance(entry, dict) else entry).encode() + b"\n")
    return h.hexdigest()


__all__ = ["MAX_HEADER_BYTES", "file_digest", "load_checkpoint", "read_header", "save_checkpoint", "state_digest",
           "verify_against_manifest"]
