"""Content-addressed tensor digests.

The canonical encoding, hashed with SHA-256::

    b"hlx-tensor\\0" + dtype name + b"\\0" + shape as decimal, comma-separated + b"\\0"
    + the elements' bytes, little-endian, in C order

so equal tensors give equal digests however they are stored, and the same
bytes under another dtype or shape give another digest.

Example::

    tensor_digest("float32", (2, 2), np.ones((2, 2), np.float32))
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np

from ..vk.buffer import as_bytes_view

PREFIX = b"hlx-tensor\0"


def header(dtype_name: str, shape: tuple[int, ...]) -> bytes:
    return PREFIX + dtype_name.encode() + b"\0" + ",".join(str(int(s)) for s in shape).encode() + b"\0"


def hasher(dtype_name: str, shape: tuple[int, ...]):
    h = hashlib.sha256()
    h.update(header(dtype_name, shape))
    return h


def little_endian_bytes(array: np.ndarray) -> memoryview:
    """The array's elements, C order, little-endian, without a copy where they already are."""
    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):
        a = a.byteswap()
    return as_bytes_view(a)


def tensor_digest(dtype_name: str, shape: tuple[int, ...], array: np.ndarray) -> str:
    h = hasher(dtype_name, shape)
    h.update(little_endian_bytes(array))
    return h.hexdigest()
