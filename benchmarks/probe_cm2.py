"""Probe VK_NV_cooperative_matrix2 on this device: its features, limits and flexible shapes, and a
ladder of small kernels, each in its own process under a time limit (a GPU hang in one does not
stop the rest): a plain write compiled by the glslang library, a subgroup-scope KHR cooperative
matrix, and workgroup-scope GEMMs (fp16 in, fp32 out) in bounds, at odd sizes with clamped
layouts, and from device-local memory, each checked against numpy.

Run: python benchmarks/probe_cm2.py [--out probe_cm2.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from hlx_vulkan import (Buffer, CommandBufferPool, ComputePipeline, DescriptorBindingBuilder, VulkanContext,
                        compile_glsl, vk)
from hlx_vulkan.vk.record import _cffi_barrier, barrier_to_host, copy_buffer

HEAD = """#version 450
#extension GL_EXT_shader_explicit_arithmetic_types : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
layout(local_size_x = WG) in;
layout(std430, binding = 0) readonly buffer A { float16_t a[]; };
layout(std430, binding = 1) readonly buffer B { float16_t b[]; };
layout(std430, binding = 2) writeonly buffer C { float c[]; };
"""
PLAIN = HEAD + """
void main() {  // no matrices: the library-compiled module alone
    uint i = gl_GlobalInvocationID.x;
    uint r = i / N, col = i % N;
    if (r >= M) return;
    float s = 0.0;
    for (uint k = 0; k < K; ++k) s += float(a[r * K + k]) * float(b[k * N + col]);
    c[r * N + col] = s;
}
"""
SUBGROUP = HEAD.replace("#extension GL_NV_cooperative_matrix2 : require\n", "#extension GL_KHR_shader_subgroup_basic : require\n") + """
void main() {  // KHR, subgroup scope, one 16x16 tile per subgroup (M, N, K multiples of 16)
    uint tiles_n = N / 16, t = gl_WorkGroupID.x * (WG / 32) + gl_SubgroupID;
    if (t >= (M / 16) * tiles_n) return;
    uint r0 = (t / tiles_n) * 16, c0 = (t % tiles_n) * 16;
    coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator> acc =
        coopmat<float, gl_ScopeSubgroup, 16, 16, gl_MatrixUseAccumulator>(0.0);
    for (uint k = 0; k < K; k += 16) {
        coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseA> ma;
        coopmat<float16_t, gl_ScopeSubgroup, 16, 16, gl_MatrixUseB> mb;
        coopMatLoad(ma, a, r0 * K + k, K, gl_CooperativeMatrixLayoutRowMajor);
        coopMatLoad(mb, b, k * N + c0, N, gl_CooperativeMatrixLayoutRowMajor);
        acc = coopMatMulAdd(ma, mb, acc);
    }
    coopMatStore(acc, c, r0 * N + c0, N, gl_CooperativeMatrixLayoutRowMajor);
}
"""
WORKGROUP = HEAD + """
#if CLAMP
#define LAYOUT tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV>
#define MAKE createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV)
#else
#define LAYOUT tensorLayoutNV<2>
#define MAKE createTensorLayoutNV(2)
#endif
void main() {
    uint r0 = gl_WorkGroupID.y * T, c0 = gl_WorkGroupID.x * T;
    LAYOUT la = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(MAKE, M, K), K, 1);
    LAYOUT lb = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(MAKE, K, N), N, 1);
    LAYOUT lc = setTensorLayoutStrideNV(setTensorLayoutDimensionNV(MAKE, M, N), N, 1);
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
# name: (source, M, N, K, T, BK, WG, CLAMP, device-local)
VARIANTS = {
    "plain_library": (PLAIN, 128, 128, 64, 64, 32, 128, 0, False),
    "khr_subgroup": (SUBGROUP, 128, 128, 64, 16, 16, 128, 0, False),
    "wg_inbounds_host": (WORKGROUP, 128, 128, 64, 64, 32, 128, 0, False),
    "wg_inbounds_device": (WORKGROUP, 128, 128, 64, 64, 32, 128, 0, True),
    "wg_odd_clamped": (WORKGROUP, 200, 136, 72, 64, 32, 128, 1, True),
    "wg_128x128_256": (WORKGROUP, 256, 256, 128, 128, 32, 256, 1, True),
}


def run_variant(name: str) -> dict:
    src, M, N, K, T, BK, WG, CLAMP, local = VARIANTS[name]
    row = {"variant": name}
    t0 = time.perf_counter()

    def step(what):
        print(f"  {name}: {time.perf_counter() - t0:6.2f} s {what}", flush=True)
    ctx = VulkanContext()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((M, K)).astype(np.float16)
    b = rng.standard_normal((K, N)).astype(np.float16)
    want = a.astype(np.float64) @ b.astype(np.float64)
    step("compile")
    spirv = compile_glsl(src, {"M": M, "N": N, "K": K, "T": T, "BK": BK, "WG": WG, "CLAMP": CLAMP},
                         target_env="vulkan1.3")
    step("load")
    shader = ctx.get_shader(ctx.load_shader(spirv, "main"))
    bindings = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()
    pipe = ComputePipeline(ctx.device, shader, bindings, 0, workgroup_size=(WG,))
    host = vk.MemoryPropertyFlags.HOST_VISIBLE | vk.MemoryPropertyFlags.HOST_COHERENT
    usage = vk.BufferUsageFlags.STORAGE_BUFFER | vk.BufferUsageFlags.TRANSFER_SRC | vk.BufferUsageFlags.TRANSFER_DST
    arrays = (a, b, np.full((M, N), np.nan, np.float32))
    staged = [Buffer(ctx.device, x.nbytes, usage, host, ctx.memory_properties) for x in arrays]
    for buf, x in zip(staged, arrays):
        buf.upload(x)
    bufs = [Buffer(ctx.device, x.nbytes, usage, vk.MemoryPropertyFlags.DEVICE_LOCAL, ctx.memory_properties)
            for x in arrays] if local else staged
    ds = pipe.allocate_descriptor_set()
    pipe.update_descriptor_set(ds, [(i, bf.buffer) for i, bf in enumerate(bufs)])
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 2)
    cmd = pool.begin_command_buffer()
    if local:
        for src_buf, x in zip(staged, arrays):
            copy_buffer(cmd, src_buf.buffer, bufs[staged.index(src_buf)].buffer, 0, 0, x.nbytes)
        _cffi_barrier(cmd)
    groups = (-(-M * N // WG), 1, 1) if src is PLAIN else (-(-(M // 16) * (N // 16) // (WG // 32)), 1, 1) \
        if src is SUBGROUP else (-(-N // T), -(-M // T), 1)
    step(f"dispatch {groups}")
    pipe.record_dispatch(cmd, ds, b"", groups)
    _cffi_barrier(cmd)
    if local:
        copy_buffer(cmd, bufs[2].buffer, staged[2].buffer, 0, 0, arrays[2].nbytes)
    barrier_to_host(cmd)
    pool.end_command_buffer(cmd)
    pool.submit_and_wait(cmd, ctx.compute_queue, timeout=15.0)
    step("done")
    got = np.frombuffer(staged[2].download(), np.float32).reshape(M, N)
    finite = bool(np.isfinite(got).all())
    row["max_abs_err"] = float(np.abs(got - want).max()) if finite else "non-finite output"
    row["ok"] = finite and row["max_abs_err"] < 2e-2
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="probe_cm2.json")
    ap.add_argument("--variant", help="run this one variant in this process and print its row as JSON")
    ap.add_argument("--limit-s", type=float, default=25.0, help="time limit of each variant's process")
    args = ap.parse_args(argv)
    if args.variant:
        print("ROW " + json.dumps(run_variant(args.variant)), flush=True)
        return 0
    ctx = VulkanContext()
    info = ctx.info
    feats = {k: v for k, v in info["features"].items() if k.startswith("cooperative_matrix")}
    report = {"device": info["device_name"], "features": feats,
              "limits": {k: v for k, v in info["limits"].items() if k.startswith("cooperative_matrix2")},
              "shapes": info["cooperative_matrix2_shapes"], "runs": []}
    ctx.cleanup()
    print(json.dumps({k: report[k] for k in ("device", "features", "limits")}, indent=1))
    names = list(VARIANTS) if feats.get("cooperative_matrix2") else ["plain_library"]
    for name in names:
        try:
            proc = subprocess.run([sys.executable, __file__, "--variant", name], capture_output=True, text=True,
                                  timeout=args.limit_s)
            rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            row = rows[0] if rows else {"variant": name, "ok": False,
                                        "error": (proc.stdout + proc.stderr)[-1500:]}
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            row = {"variant": name, "ok": False, "error": f"no result within {args.limit_s} s", "log": out[-600:]}
        print(row, flush=True)
        report["runs"].append(row)
    json.dump(report, open(args.out, "w"), indent=1)
    return 0 if all(r["ok"] for r in report["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
