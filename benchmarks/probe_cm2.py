"""Probe VK_NV_cooperative_matrix2 on this device: its features, limits and flexible shapes, and
one small workgroup-scope GEMM (fp16 in, fp32 out) checked against numpy.

Run: python benchmarks/probe_cm2.py [--out probe_cm2.json]
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import sys
import time

import numpy as np

from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, VulkanContext,
                        compile_glsl, vk)

SRC = """#version 450
#extension GL_EXT_shader_explicit_arithmetic_types : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
layout(local_size_x = WG) in;
layout(std430, binding = 0) readonly buffer A { float16_t a[]; };
layout(std430, binding = 1) readonly buffer B { float16_t b[]; };
layout(std430, binding = 2) writeonly buffer C { float c[]; };
void main() {
    uint r0 = gl_WorkGroupID.y * T, c0 = gl_WorkGroupID.x * T;
    tensorLayoutNV<2> la = setTensorLayoutDimensionNV(createTensorLayoutNV(2), M, K);
    tensorLayoutNV<2> lb = setTensorLayoutDimensionNV(createTensorLayoutNV(2), K, N);
    tensorLayoutNV<2> lc = setTensorLayoutDimensionNV(createTensorLayoutNV(2), M, N);
    coopmat<float, gl_ScopeWorkgroup, T, T, gl_MatrixUseAccumulator> acc =
        coopmat<float, gl_ScopeWorkgroup, T, T, gl_MatrixUseAccumulator>(0.0);
    for (uint k = 0; k < K; k += BK) {
        coopmat<float16_t, gl_ScopeWorkgroup, T, BK, gl_MatrixUseA> ma;
        coopmat<float16_t, gl_ScopeWorkgroup, BK, T, gl_MatrixUseB> mb;
        coopMatLoadTensorNV(ma, a, 0, sliceTensorLayoutNV(la, r0, T, k, BK));
        coopMatLoadTensorNV(mb, b, 0, sliceTensorLayoutNV(lb, k, BK, c0, T));
        acc = coopMatMulAdd(ma, mb, acc);
    }
    coopMatStoreTensorNV(acc, c, 0, sliceTensorLayoutNV(lc, r0, T, c0, T));
}
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="probe_cm2.json")
    ap.add_argument("--stall-s", type=float, default=60.0, help="print every thread's stack after this long")
    args = ap.parse_args(argv)
    faulthandler.dump_traceback_later(args.stall_s, repeat=True)  # a stall shows where it is
    ctx = VulkanContext()
    info = ctx.info
    feats = {k: v for k, v in info["features"].items() if k.startswith("cooperative_matrix")}
    report = {"device": info["device_name"], "features": feats,
              "limits": {k: v for k, v in info["limits"].items() if k.startswith("cooperative_matrix2")},
              "shapes": info["cooperative_matrix2_shapes"], "runs": []}
    print(json.dumps(report, indent=1))
    if not feats.get("cooperative_matrix2"):
        print("no cooperative_matrix2 on this device")
        json.dump(report, open(args.out, "w"), indent=1)
        return 0
    rng = np.random.default_rng(0)
    M, N, K = 200, 136, 72  # not multiples of the tile: the layouts clamp the edges
    host = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT
    for T, BK, WG in ((64, 32, 128), (128, 32, 256), (64, 16, 64)):
        a = rng.standard_normal((M, K)).astype(np.float16)
        b = rng.standard_normal((K, N)).astype(np.float16)
        want = a.astype(np.float64) @ b.astype(np.float64)
        row = {"T": T, "BK": BK, "WG": WG}
        t0 = time.perf_counter()

        def step(what):
            print(f"  {time.perf_counter() - t0:7.2f} s {what}", flush=True)
        try:
            step("compile")
            spirv = compile_glsl(SRC, {"M": M, "N": N, "K": K, "T": T, "BK": BK, "WG": WG}, target_env="vulkan1.3")
            step("load")
            shader = ctx.get_shader(ctx.load_shader(spirv, "main"))
            step("pipeline")
            bindings = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()
            pipe = ComputePipeline(ctx.device, shader, bindings, 0, workgroup_size=(WG,))
            bufs = [Buffer(ctx.device, x.nbytes, vk.BufferUsageFlags.STORAGE_BUFFER, host, ctx.memory_properties)
                    for x in (a, b, np.empty((M, N), np.float32))]
            bufs[0].upload(a); bufs[1].upload(b); bufs[2].upload(np.full((M, N), np.nan, np.float32))
            ds = pipe.allocate_descriptor_set()
            pipe.update_descriptor_set(ds, [(i, bf.buffer) for i, bf in enumerate(bufs)])
            pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 2)
            step("dispatch")
            cmd = pool.begin_command_buffer()
            pipe.record_dispatch(cmd, ds, b"", (-(-N // T), -(-M // T), 1))
            pool.end_command_buffer(cmd)
            pool.submit_and_wait(cmd, ctx.compute_queue)
            step("done")
            got = np.frombuffer(bufs[2].download(), np.float32).reshape(M, N)
            row["max_abs_err"] = float(np.nanmax(np.abs(got - want))) if np.isfinite(got).all() else "nan in output"
            row["ok"] = bool(np.isfinite(got).all() and np.abs(got - want).max() < 1e-2)
        except Exception as exc:  # report every variant, whatever fails
            row["error"] = f"{type(exc).__name__}: {exc}"[:800]
            row["ok"] = False
        print(row)
        report["runs"].append(row)
    json.dump(report, open(args.out, "w"), indent=1)
    return 0 if all(r["ok"] for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
