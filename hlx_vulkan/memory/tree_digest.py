"""Versioned tensor digests, and the tree digest a device computes without a read-back.

Three versions, each a stable name that manifests record beside the digest:

``hlx-blake3-v1`` (:data:`BLAKE3`, :data:`DEFAULT`: ``Tensor.digest()``'s, checkpoints' and
manifests' since it was added, see :mod:`.blake3_digest`)
    BLAKE3 of the header and of ``BLAKE3(data)``: standard BLAKE3, computed on the device.

``hlx-flat-sha256-v1`` (:data:`FLAT`, the default before, and what a manifest entry without a
``digest_version`` holds, see :mod:`.digest`)
    SHA-256 of ``b"hlx-tensor\\0" + dtype + b"\\0" + shape + b"\\0" + data``: one serial hash.

``hlx-tree-sha256-v1`` (:data:`TREE`)
    ``data``: the tensor's canonical bytes, as for the flat digest: its elements in C (row-major)
    order, each little-endian, a non-contiguous tensor's as its contiguous copy's; ``n`` bytes.

    1. Leaves: ``data`` cut into :data:`CHUNK` (4096) byte chunks, the last one shorter when ``n``
       is not a multiple (it is not padded: SHA-256's own padding ends it); each leaf is the
       SHA-256 of its chunk. An empty tensor has one leaf, ``SHA-256(b"")``.
    2. Nodes: while more than one digest remains, the level's digests (32 bytes each, in order) are
       cut into groups of :data:`FANOUT` (16), the last group shorter; each group's parent is the
       SHA-256 of its digests concatenated. The one digest left is the root.
    3. The digest: ``SHA-256(b"hlx-tree-sha256-v1\\0" + dtype + b"\\0" + shape + b"\\0" + root)``,
       as lowercase hex; dtype is the name (``"float32"``, ``"bfloat16"``, ``"bool"``, ...) and
       shape the sizes as decimal, comma-separated (``""`` for a 0-d tensor).

    The tree's shape follows from ``n`` alone, which the header fixes (dtype and shape), so a
    leaf cannot pass for a node; equal bytes under another dtype or shape give another digest,
    and the header's prefix keeps it apart from every flat digest.

Why a tree: a chunk's SHA-256 is serial, but chunks are independent, so a GPU hashes thousands
at once (``hlx_vulkan.ops.digest``) and reads back 32 bytes instead of the tensor. 4 KiB leaves
give 262144 independent hashes for 1 GiB (about twice what an H100 holds resident) while the
padding block and the leaf digests add only 1.6% and 0.8% to the work; 16-way nodes (512 bytes,
9 compressions) keep each level above the leaves short, since each is one serial hash deep.

This module is the host implementation (hashlib), for numpy arrays, safetensors files and
anything else in host memory; it gives the device's digests bit for bit. On one host core it
runs at about 0.7x of one flat SHA-256 (0.87 against 1.2 GB/s on the H100 machine's CPU: the
per-chunk Python work); threads do not help, since that work holds the GIL (0.5 GB/s with 4 to
16 threads there).

Example::

    tree_digest("float32", (2, 2), np.ones((2, 2), np.float32))
    digest_array(TREE, "float32", (2, 2), np.ones((2, 2), np.float32))  # the same
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import DigestVersionError
from .blake3_digest import BLAKE3, blake3_digest
from .digest import little_endian_bytes, tensor_digest

FLAT = "hlx-flat-sha256-v1"
TREE = "hlx-tree-sha256-v1"
VERSIONS = (FLAT, TREE, BLAKE3)  # BLAKE3 ("hlx-blake3-v1") is defined in .blake3_digest
DEFAULT = BLAKE3
CHUNK = 4096            # leaf chunk, bytes
FANOUT = 16             # digests per node
DIGEST_BYTES = 32


def check_version(version) -> str:
    if version not in VERSIONS:
        raise DigestVersionError(f"unknown digest version {version!r}; known: {', '.join(VERSIONS)}")
    return version


def tree_header(dtype_name: str, shape) -> bytes:
    return TREE.encode() + b"\0" + dtype_name.encode() + b"\0" + ",".join(str(int(s)) for s in shape).encode() + b"\0"


def hash_chunks(data, size: int) -> bytes:
    """The SHA-256 of each ``size``-byte chunk of ``data`` (the last one shorter), concatenated."""
    data = memoryview(data).cast("B")
    sha = hashlib.sha256
    return b"".join([sha(data[i:i + size]).digest() for i in range(0, len(data), size)])


def tree_root(data) -> bytes:
    """The tree's root (32 bytes) over ``data``'s bytes."""
    data = memoryview(data).cast("B")
    if len(data) == 0:
        return hashlib.sha256(b"").digest()
    level = hash_chunks(data, CHUNK)
    return root_from_leaves(level)


def root_from_leaves(level: bytes) -> bytes:
    """The root over a level's concatenated digests (the leaves, or any level above them)."""
    while len(level) > DIGEST_BYTES:
        level = hash_chunks(level, FANOUT * DIGEST_BYTES)
    return level


def finish(dtype_name: str, shape, root: bytes) -> str:
    """The tree digest from the root."""
    return hashlib.sha256(tree_header(dtype_name, shape) + root).hexdigest()


def tree_digest(dtype_name: str, shape, array: np.ndarray) -> str:
    """The ``hlx-tree-sha256-v1`` digest of ``array`` (its canonical bytes) under ``dtype_name`` and ``shape``."""
    return finish(dtype_name, tuple(shape), tree_root(little_endian_bytes(array)))


def digest_array(version: str, dtype_name: str, shape, array: np.ndarray) -> str:
    """The digest of a host array under ``version`` (:data:`FLAT`, :data:`TREE` or :data:`BLAKE3`)."""
    version = check_version(version)
    if version == TREE:
        return tree_digest(dtype_name, shape, array)
    if version == BLAKE3:
        return blake3_digest(dtype_name, shape, array)
    return tensor_digest(dtype_name, tuple(shape), array)


__all__ = ["BLAKE3", "CHUNK", "DEFAULT", "FANOUT", "FLAT", "TREE", "VERSIONS", "check_version", "digest_array",
           "finish", "hash_chunks", "root_from_leaves", "tree_digest", "tree_header", "tree_root"]
