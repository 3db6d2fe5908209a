"""The design document's 12-step workflow, in Python: c = a + b on 1M floats.

Run: python examples/vector_add.py [--n N] [--validation]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import numpy as np

from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, VulkanContext,
                        compile_glsl, vk)

BINDING_A, BINDING_B, BINDING_C = 0, 1, 2
WORKGROUP = 256


def vector_add(n: int = 1 << 20, enable_validation: bool = False, seed: int = 0) -> tuple[float, bool]:
    """Run the workflow; return the relative error against float64 and whether it equals numpy's float32 sum."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    spirv = compile_glsl((Path(__file__).parent / "vector_add.comp").read_text())

    # 1. Initialize Vulkan
    ctx = VulkanContext(enable_validation=enable_validation)
    print(f"device: {ctx.info['device_name']} ({ctx.info['device_type']}), Vulkan {ctx.info['api_version']}")
    # 2. Load compute shader
    shader_id = ctx.load_shader(spirv, "main")
    shader = ctx.get_shader(shader_id)
    # 3. Define buffer bindings
    bindings = (DescriptorBindingBuilder()
                .add_storage_buffer(BINDING_A)
                .add_storage_buffer(BINDING_B)
                .add_storage_buffer(BINDING_C)
                .build())
    # 4. Create compute pipeline (4-byte push constant: n)
    pipeline = ComputePipeline(ctx.device.clone(), shader, bindings, 4, workgroup_size=(WORKGROUP,))
    # 5. Create buffers
    host = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT
    usage = vk.BufferUsageFlags.STORAGE_BUFFER
    a_buf = Buffer(ctx.device.clone(), a.nbytes, usage, host, ctx.memory_properties)
    b_buf = Buffer(ctx.device.clone(), b.nbytes, usage, host, ctx.memory_properties)
    c_buf = Buffer(ctx.device.clone(), a.nbytes, usage, host, ctx.memory_properties)
    # 6. Upload input data (and poison the output so unwritten elements show)
    a_buf.upload(a)
    b_buf.upload(b)
    c_buf.upload(np.full(n, np.nan, dtype=np.float32))
    # 7. Allocate descriptor set and bind buffers
    desc_set = pipeline.allocate_descriptor_set()
    pipeline.update_descriptor_set(desc_set, [(BINDING_A, a_buf.buffer), (BINDING_B, b_buf.buffer),
                                              (BINDING_C, c_buf.buffer)])
    # 8. Create command buffer pool
    cmd_pool = CommandBufferPool(ctx.device.clone(), ctx.compute_queue_family, 4)
    # 9. Record compute dispatch
    cmd = cmd_pool.begin_command_buffer()
    pipeline.record_dispatch(cmd, desc_set, struct.pack("<I", n), (-(-n // WORKGROUP), 1, 1))
    pipeline.record_barrier(cmd, vk.AccessFlags.SHADER_WRITE, vk.AccessFlags.HOST_READ,
                            dst_stage=vk.PipelineStageFlags.HOST)
    cmd_pool.end_command_buffer(cmd)
    # 10. Submit and wait for completion
    t0 = time.perf_counter()
    cmd_pool.submit_and_wait(cmd, ctx.compute_queue)
    elapsed = time.perf_counter() - t0
    # 11. Download results
    c = np.frombuffer(c_buf.download(), dtype=np.float32)
    # 12. Cleanup
    pipeline.destroy()
    cmd_pool.destroy()
    a_buf.destroy()
    b_buf.destroy()
    c_buf.destroy()
    ctx.cleanup()

    expected = a.astype(np.float64) + b.astype(np.float64)
    rel = float(np.linalg.norm(c - expected) / np.linalg.norm(expected))
    bit_exact = bool(np.array_equal(c.view(np.uint32), (a + b).view(np.uint32)))
    print(f"{n} elements in {elapsed * 1e3:.2f} ms (submit to completion); "
          f"relative error vs float64 {rel:.3g}; bit-identical to numpy float32: {bit_exact}")
    return rel, bit_exact


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1 << 20)
    parser.add_argument("--validation", action="store_true", help="enable the Khronos validation layer")
    args = parser.parse_args(argv)
    rel, bit_exact = vector_add(args.n, args.validation)
    ok = bit_exact and rel < 1e-7
    print("OK: matches numpy" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
