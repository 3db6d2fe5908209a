"""Tensor memory: pooled allocation, typed views, batched transfers, digests and provenance.

Example::

    from hlx_vulkan.memory import MemoryManager
    mm = MemoryManager(ctx)
    t = mm.from_numpy(np.eye(3, dtype=np.float32))
    t.digest()
"""

from .digest import tensor_digest
from .dtypes import ALL as DTYPES
from .dtypes import (DType, bfloat16, bool_, can_cast, category, dtype_of, float16, float32, int8, int32, int64,
                     promote_types, uint8, uint32)
from .manager import MemoryManager, TensorBatch
from .pool import Allocation, MemoryPool, PoolStats
from .provenance import Ledger, ProvenanceRecord, VerificationReport
from .ranges import RangeAllocator
from .tensor import TensorBuffer

__all__ = [
    "Allocation", "DTYPES", "DType", "Ledger", "MemoryManager", "MemoryPool", "PoolStats", "ProvenanceRecord",
    "RangeAllocator", "TensorBatch", "TensorBuffer", "VerificationReport", "bfloat16", "bool_", "can_cast", "category",
    "dtype_of", "float16", "float32", "int8", "int32", "int64", "promote_types", "tensor_digest", "uint8", "uint32",
]
