"""``hlx-blake3-v1``: standard BLAKE3 of a tensor's bytes, framed by its dtype and shape.

``data``: the tensor's canonical bytes, as for every hlx digest: its elements in C (row-major)
order, each little-endian, a non-contiguous tensor's as its contiguous copy's.

1. ``root = BLAKE3(data)``: plain BLAKE3 (32-byte output, no key), exactly what ``b3sum`` prints
   for a file holding ``data``. BLAKE3 is itself a tree over 1 KiB chunks, so a GPU computes it
   with one invocation per chunk and a few halving levels (``hlx_vulkan.ops.digest_blake3``).
2. The digest: ``BLAKE3(b"hlx-blake3-v1\\0" + dtype + b"\\0" + shape + b"\\0" + root)`` as
   lowercase hex: the framing of ``hlx-tree-sha256-v1`` with this version's name and hash, so
   equal bytes under another dtype or shape give another digest, and no other version's.

Check one by hand: ``b3sum --raw data.bin`` gives ``root``; then
``printf 'hlx-blake3-v1\\0float32\\0002,3\\0' | cat - root.bin | b3sum``.

The host implementation is the ``blake3`` package (the reference's Rust and SIMD code, several
threads for large inputs), for numpy arrays, safetensors files and anything in host memory; the
device gives its digests bit for bit.

Example::

    blake3_digest("float32", (2, 2), np.ones((2, 2), np.float32))
"""

from __future__ import annotations

import blake3 as _blake3

from .digest import little_endian_bytes

BLAKE3 = "hlx-blake3-v1"


def blake3_header(dtype_name: str, shape) -> bytes:
    return BLAKE3.encode() + b"\0" + dtype_name.encode() + b"\0" + ",".join(str(int(s)) for s in shape).encode() + b"\0"


def blake3_root(data) -> bytes:
    """BLAKE3 (32 bytes) of ``data``'s bytes."""
    return _blake3.blake3(memoryview(data).cast("B"), max_threads=_blake3.blake3.AUTO).digest()


def blake3_finish(dtype_name: str, shape, root: bytes) -> str:
    """The ``hlx-blake3-v1`` digest from the root."""
    return _blake3.blake3(blake3_header(dtype_name, shape) + root).hexdigest()


def blake3_digest(dtype_name: str, shape, array) -> str:
    """The ``hlx-blake3-v1`` digest of ``array`` (its canonical bytes) under ``dtype_name`` and ``shape``."""
    return blake3_finish(dtype_name, tuple(shape), blake3_root(little_endian_bytes(array)))


__all__ = ["BLAKE3", "blake3_digest", "blake3_finish", "blake3_header", "blake3_root"]
