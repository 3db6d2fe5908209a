"""The cooperative-matrix ceiling of this device through Vulkan: TFLOP/s of 16x16x16 float16
multiply-adds (float32 accumulators) with no memory traffic in the loop (``mma_peak.comp``),
for several subgroup counts, fragments per subgroup and workgroups per SM, beside torch's
float16 matmul at 8192^3 in the same process: how far the GEMM kernels are from what the
instructions Vulkan reaches can do, as against cuBLAS. Prints a table and saves JSON.

Run: python benchmarks/probe_mma_peak.py [--sms 132] [--out benchmarks/results/probe_mma_peak.json]
(Needs a device with cooperative matrices: not lavapipe.)
"""

from __future__ import annotations

import argparse
import os

import hlx_vulkan as hv
from hlx_vulkan.runtime import KernelSpec
from report import save_rows
from timing import capture_seconds, torch_matmul_tflops

try:
    import torch
except ImportError:
    torch = None

SPEC = KernelSpec(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mma_peak.comp"),
                  [("O", "write"), ("A", "read")], [("iters", "I")])
ITERS = 4096
SHAPES = ((4, 4, 4), (4, 2, 4), (4, 2, 2), (8, 2, 4), (8, 4, 4), (2, 4, 4))  # subgroups, FM, FN


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sms", type=int, default=132, help="streaming multiprocessors (H100 SXM: 132)")
    parser.add_argument("--out", default="benchmarks/results/probe_mma_peak.json")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    if not rt.ctx.device.enabled_features.get("cooperative_matrix"):
        raise SystemExit("this device has no cooperative matrices")
    a = hv.randn(64 * 1024).to(hv.float16)
    rows = []
    for sgs, fm, fn in SHAPES:
        threads = 32 * sgs
        kernel = rt.kernels.get(SPEC, {"THREADS": threads, "FM": fm, "FN": fn}, {}, (threads,), target_env="vulkan1.3")
        for per_sm in (1, 2, 4):
            groups = args.sms * per_sm
            out = hv.empty((groups * sgs * 256,))
            seconds = capture_seconds(lambda: rt.run(kernel, {"O": out.buf, "A": a.buf}, {"iters": ITERS},
                                                     (groups, 1, 1)), 1, 0.3)
            flop = groups * sgs * fm * fn * ITERS * 2 * 16 ** 3
            rows.append({"subgroups": sgs, "fm": fm, "fn": fn, "workgroups_per_sm": per_sm,
                         "tflops": flop / seconds / 1e12})
            print(f"subgroups {sgs} fragments {fm}x{fn} workgroups/SM {per_sm}: {rows[-1]['tflops']:7.1f} TFLOP/s",
                  flush=True)
    peer = torch_matmul_tflops("float16", reps=5)
    if peer:
        print(f"torch float16 matmul 8192^3: {peer:.1f} TFLOP/s")
    best = max(r["tflops"] for r in rows)
    print(f"best: {best:.1f} TFLOP/s" + (f", {best / peer:.2f} of torch's matmul" if peer else ""))
    save_rows(args.out, rt, f"torch {torch.__version__}" if torch is not None else "none", rows, iters=ITERS,
              torch_fp16_matmul_8192_tflops=peer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
