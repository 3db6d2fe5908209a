"""Checkpoints: safetensors files, checked before they are trusted.

``save_checkpoint`` writes tensors with the safetensors library and returns, per tensor, its
content digest and its version for a manifest (``hlx-blake3-v1`` by default, see
``hlx_vulkan.memory.tree_digest``; entries recorded under ``hlx-tree-sha256-v1`` keep verifying,
and one without a ``digest_version``, as older manifests hold, is ``hlx-flat-sha256-v1``).
``load_checkpoint`` reads the header itself first and refuses, with an error that names the
problem, a header past ``MAX_HEADER_BYTES``, a header or metadata that is not the JSON it should
be (a duplicate key included: safetensors might read another value than the one checked),
offsets that are not contiguous or leave bytes before, between or after the tensors, a span that
does not match shape x dtype, and (given a manifest) any tensor whose digest differs. Whatever
the file and the manifest hold, the only error raised is :class:`CheckpointError`.

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

from .errors import CheckpointError, DTypeError
from .memory.dtypes import dtype_of
from .memory.tree_digest import DEFAULT, FLAT, VERSIONS, digest_array

MAX_HEADER_BYTES = 16 * 1024 * 1024
# safetensors' dtype tags for the dtypes hlx stores, and their item sizes.
_TAGS = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "I8": 1, "U8": 1, "U16": 2, "F64": 8, "I64": 8, "BOOL": 1}
_DTYPE_KEY = "hlx.dtypes"
_ORDER_KEY = "hlx.order"  # safetensors lays tensors out by its own order; the caller's comes back on load


def _unique_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _json(text, what: str):
    """Parse JSON text or bytes; anything but valid JSON without duplicate keys is a CheckpointError."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise CheckpointError(f"{what} nests too deeply") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, duplicate keys, too many digits
        raise CheckpointError(f"{what} is not valid JSON ({' '.join(str(e).split())})") from None


def _host(value) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") and not isinstance(value, np.ndarray) else np.asarray(value)


def save_checkpoint(path, tensors: dict, metadata: dict | None = None,
                    digest_version: str = DEFAULT) -> "OrderedDict[str, dict]":
    """Write ``tensors`` (name to tensor or array) to ``path``; returns name -> {dtype, shape, digest,
    digest_version}: each tensor's digest under ``digest_version`` (see ``hlx_vulkan.memory.tree_digest``)."""
    arrays, entries, logical = {}, OrderedDict(), {}
    for name, value in tensors.items():
        h = _host(value)
        a = np.ascontiguousarray(h).reshape(h.shape)  # ascontiguousarray makes a 0-d array 1-d
        dt = dtype_of(a.dtype)
        entries[name] = {"dtype": dt.name, "shape": list(a.shape),
                         "digest": digest_array(digest_version, dt.name, a.shape, a), "digest_version": digest_version}
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
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError as e:
        raise CheckpointError(f"{os.fspath(path)}: cannot read ({e.strerror or e})") from None
    return h.hexdigest()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    header = _json(data[8:8 + n], f"{name}: header")
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
        if not isinstance(tag, str) or tag not in _TAGS:
            raise CheckpointError(f"{name}: tensor {key!r} has unsupported dtype {tag!r}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(f"{name}: tensor {key!r} has an invalid shape {shape!r}")
        if (not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs)
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
    data = _read(path, name)
    header, meta, _ = read_header(data, name)
    logical = _json(meta.get(_DTYPE_KEY, "{}"), f"{name}: metadata {_DTYPE_KEY}")
    if not isinstance(logical, dict) or not all(isinstance(v, str) for v in logical.values()):
        raise CheckpointError(f"{name}: metadata {_DTYPE_KEY} must map tensor names to dtype names")
    order = _json(meta.get(_ORDER_KEY, "[]"), f"{name}: metadata {_ORDER_KEY}")
    if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
        raise CheckpointError(f"{name}: metadata {_ORDER_KEY} must be a list of tensor names")
    for key, dt in logical.items():
        if dt == "bfloat16" and key in header and header[key]["dtype"] != "U16":
            raise CheckpointError(f"{name}: tensor {key!r} is bfloat16 in the metadata but stored as "
                                  f"{header[key]['dtype']}, not as its 16-bit patterns (U16)")
    try:
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # noqa: BLE001 - the library's own errors, renamed for the caller
        raise CheckpointError(f"{name}: safetensors could not decode it ({' '.join(str(e).split())})") from None
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


def _read(path, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CheckpointError(f"{name}: cannot read ({e.strerror or e})") from None


def read_manifest(path) -> dict:
    """A manifest file's JSON object; :class:`CheckpointError` for anything else."""
    name = os.fspath(path)
    manifest = _json(_read(path, f"manifest {name}"), f"manifest {name}")
    if not isinstance(manifest, dict):
        raise CheckpointError(f"manifest {name}: a JSON {type(manifest).__name__}, not an object")
    return manifest


def verify_against_manifest(arrays: dict, manifest, name: str = "checkpoint") -> None:
    """Check every tensor's digest against ``manifest`` (a dict, or a path to a JSON file)."""
    if isinstance(manifest, (str, bytes, os.PathLike)):
        manifest = read_manifest(manifest)
    if not isinstance(manifest, dict):
        raise CheckpointError(f"the manifest is a {type(manifest).__name__}, not a dict")
    expected = manifest.get("tensors")
    if not isinstance(expected, dict):
        raise CheckpointError("the manifest has no 'tensors' map")
    if set(expected) != set(arrays):
        raise CheckpointError(f"{name}: tensors {sorted(set(arrays) ^ set(expected))} are in only one of the file "
                              "and the manifest")
    for key, a in arrays.items():
        entry = expected[key]
        if not isinstance(entry, dict) or not isinstance(entry.get("digest"), str):
            raise CheckpointError(f"the manifest's entry for tensor {key!r} is not an object with a digest string")
        version = entry.get("digest_version", FLAT)  # manifests from before the versions hold flat digests
        if version not in VERSIONS:
            raise CheckpointError(f"the manifest's entry for tensor {key!r} has digest version {version!r}; this "
                                  f"library knows {', '.join(VERSIONS)}")
        try:
            dt = dtype_of(a.dtype).name
        except DTypeError:
            raise CheckpointError(f"{name}: tensor {key!r} is {a.dtype}, a dtype hlx digests do not cover") from None
        digest = digest_array(version, dt, a.shape, a)
        if digest != entry["digest"]:
            raise CheckpointError(f"{name}: tensor {key!r} does not match the manifest's digest (tampered or "
                                  "corrupted)")


def state_digest(entries: dict) -> str:
    """One digest for a whole state: SHA-256 over each name and its tensor digest, in order."""
    h = hashlib.sha256(b"hlx-state\0")
    for key, entry in entries.items():
        h.update(key.encode() + b"\0" + (entry["digest"] if isinstance(entry, dict) else entry).encode() + b"\n")
    return h.hexdigest()


__all__ = ["MAX_HEADER_BYTES", "file_digest", "load_checkpoint", "read_header", "read_manifest", "save_checkpoint",
           "state_digest", "verify_against_manifest"]
