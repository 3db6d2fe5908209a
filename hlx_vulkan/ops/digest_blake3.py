"""A tensor's ``hlx-blake3-v1`` digest (``hlx_vulkan.memory.blake3_digest``) computed on the
device: the chunk chaining values by ``digest/blake3_chunks.comp`` (one invocation per 1 KiB
chunk), then ``digest/blake3_parents.comp``, each dispatch taking a level down by a factor of
512 (three for 1 GiB), the last one with ROOT. 32 bytes are read back: BLAKE3 of the tensor's
bytes, framed on the host. The tensor itself never leaves the device.

A non-contiguous tensor, or a view that does not start on a 16-byte boundary, is hashed from
a contiguous copy made on the device first. An empty tensor, or one past what one dispatch can
bind (``maxStorageBufferRange``, or 4 GiB), is hashed by the host implementation, which gives
the same digest.

``VARIANTS`` names the chunk kernel's two ways of loading (see its header); ``bench_digest.py
--variant`` times both, and :data:`VARIANT` is the one digests use.

Example::

    x = hv.randn(1 << 20)
    device_blake3_digest(x) == x.digest("hlx-blake3-v1") == blake3_digest("float32", x.shape, x.numpy())
"""

from __future__ import annotations

from importlib import resources

from .. import errors
from ..memory import uint32
from ..memory.blake3_digest import blake3_digest, blake3_finish
from ..runtime import KernelSpec
from .digest import device_digest
from .tensor import Tensor, contiguous_like

_DIR = resources.files(__package__) / "digest"
CHUNKS = KernelSpec(_DIR / "blake3_chunks.comp", [("O", "write"), ("A", "read")],
                    [("chunks", "I"), ("nbytes", "I"), ("q0", "I"), ("root", "I")])
PARENTS = KernelSpec(_DIR / "blake3_parents.comp", [("O", "write"), ("I", "read")], [("n", "I")])
CHUNK = 1024          # BLAKE3's chunk, bytes
ROOT = 8              # BLAKE3's ROOT flag
CHUNK_WG = 64
PARENT_WG = 256       # a parent dispatch reduces 2 * PARENT_WG chaining values to one
VARIANTS = {"thread": 0, "staged": 1}
VARIANT = "thread"


def record_root(x: Tensor, variant: str = VARIANT) -> Tensor:
    """Record BLAKE3 over contiguous ``x`` (16-byte aligned, within one binding, not empty)
    without waiting: the root hash as 8 uint32 words whose little-endian bytes are the hash."""
    if variant not in VARIANTS:
        raise errors.DigestVersionError(f"unknown BLAKE3 kernel variant {variant!r}; known: {', '.join(VARIANTS)}")
    rt = x.runtime
    nbytes = x.numel() * x.dtype.itemsize
    chunks = -(-nbytes // CHUNK)
    kernel = rt.kernels.get(CHUNKS, {"VARIANT": VARIANTS[variant]}, workgroup=(CHUNK_WG,))
    level = contiguous_like((chunks * 8,), uint32, rt)
    rt.run(kernel, {"O": level.buf, "A": x.buf}, {"chunks": chunks, "nbytes": nbytes, "q0": x.buf.byte_offset // 16,
                                                  "root": ROOT if chunks == 1 else 0}, chunks)
    parents = rt.kernels.get(PARENTS, workgroup=(PARENT_WG,))
    n = chunks
    while n > 1:
        groups = -(-n // (2 * PARENT_WG))
        out = contiguous_like((groups * 8,), uint32, rt)
        rt.run(parents, {"O": out.buf, "I": level.buf}, {"n": n}, groups * PARENT_WG)
        level, n = out, groups
    return level


def device_blake3_digest(x: Tensor, variant: str = VARIANT) -> str:
    """The ``hlx-blake3-v1`` digest of ``x``, hashed on its device; a sync point."""
    return device_digest(x, blake3_digest, lambda x: blake3_finish(
        x.dtype.name, x.shape, record_root(x, variant).numpy().astype("<u4").tobytes()))


__all__ = ["CHUNKS", "PARENTS", "VARIANT", "VARIANTS", "device_blake3_digest", "record_root"]
