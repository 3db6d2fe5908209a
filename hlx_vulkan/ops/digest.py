"""A tensor's tree digest (``hlx-tree-sha256-v1``, defined in ``hlx_vulkan.memory.tree_digest``)
computed on the device: the leaves and every level of nodes by ``digest/sha256_chunks.comp``,
one invocation per chunk, then 32 bytes read back for the header's hash on the host. The
tensor itself never leaves the device.

A non-contiguous tensor, or a view that does not start on a 16-byte boundary, is hashed from
a contiguous copy made on the device first. A tensor past what one dispatch can bind
(``maxStorageBufferRange``, or 4 GiB) is read back and hashed by the host implementation,
which gives the same digest.

Example::

    x = hv.randn(1 << 20)
    device_tree_digest(x) == x.digest(TREE) == tree_digest("float32", x.shape, x.numpy())
"""

from __future__ import annotations

from importlib import resources

from .. import errors
from ..memory import uint32
from ..memory.tree_digest import CHUNK, DIGEST_BYTES, FANOUT, finish, root_from_leaves, tree_digest
from ..runtime import KernelSpec
from . import elementwise as ew
from .tensor import Tensor, contiguous_like

CHUNKS = KernelSpec(resources.files(__package__) / "digest" / "sha256_chunks.comp", [("O", "write"), ("A", "read")],
                    [("chunks", "I"), ("chunk", "I"), ("nbytes", "I"), ("q0", "I")])
WORKGROUP = 64
# Levels with at most this many digests are finished on the host: one read-back of at most
# 16 digests (512 bytes), sparing the last dispatch of one invocation.
HOST_TOP = FANOUT


def _hash_level(rt, kernel, src: Tensor, nbytes: int, chunk: int) -> Tensor:
    """One level: the digests of ``src``'s ``nbytes`` bytes in ``chunk``-byte chunks."""
    chunks = -(-nbytes // chunk)
    out = contiguous_like((chunks * DIGEST_BYTES // 4,), uint32, rt)
    rt.run(kernel, {"O": out.buf, "A": src.buf},
           {"chunks": chunks, "chunk": chunk, "nbytes": nbytes, "q0": src.buf.byte_offset // 16}, chunks)
    return out


def record_levels(x: Tensor) -> Tensor:
    """Record the tree's levels over contiguous ``x`` (16-byte aligned, within one binding, not
    empty) without waiting: the top level, at most :data:`HOST_TOP` digests, as uint32 words
    whose bytes are the digests'."""
    rt = x.runtime
    kernel = rt.kernels.get(CHUNKS, workgroup=(WORKGROUP,))
    level = _hash_level(rt, kernel, x, x.numel() * x.dtype.itemsize, CHUNK)
    while level.numel() * 4 > HOST_TOP * DIGEST_BYTES:
        level = _hash_level(rt, kernel, level, level.numel() * 4, FANOUT * DIGEST_BYTES)
    return level


def device_digest(x: Tensor, on_host, on_device) -> str:
    """A digest of ``x`` hashed on its device (a sync point): ``on_device(x)`` for a contiguous,
    16-byte-aligned ``x`` the kernels can address in one binding, else ``on_host(dtype name, shape,
    array)``, which gives the same digest from the bytes read back."""
    rt = x.runtime
    if rt.stream.capturing:
        raise errors.CaptureError("digest() inside hv.capture() reads a result back; take it after the capture")
    nbytes = x.numel() * x.dtype.itemsize
    if nbytes == 0:
        return on_host(x.dtype.name, x.shape, x.numpy())
    if not x.is_contiguous() or x.buf.byte_offset % 16:
        x = ew.copy(x)
    limit = min(rt.device.limits["max_storage_buffer_range"], (1 << 32) - 1)
    if x.buf.byte_offset + nbytes > limit:
        return on_host(x.dtype.name, x.shape, x.numpy())
    return on_device(x)


def device_tree_digest(x: Tensor) -> str:
    """The ``hlx-tree-sha256-v1`` digest of ``x``, hashed on its device; a sync point."""
    return device_digest(x, tree_digest, lambda x: finish(
        x.dtype.name, x.shape, root_from_leaves(record_levels(x).numpy().astype("<u4").tobytes())))


__all__ = ["CHUNKS", "device_digest", "device_tree_digest", "record_levels"]
