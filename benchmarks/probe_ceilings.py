"""Two ceilings of this device through Vulkan, beside torch in the same process: the float32 FMA
issue rate with no memory traffic, in three forms of the same 64 multiply-adds a thread
(``fma_peak.comp``: the form changes what the compiler issues; the float32 GEMM's bound, against
torch's float32 matmul at 8192^3, TF32 off) and the read bandwidth of a buffer read over and over
(``cache_read.comp``: 4 to 32 MiB stay in the H100's 50 MB L2, 1 GiB comes from HBM). A 128x128
float16 GEMM tile moves 64 FLOP a byte from L2 into the SMs (16 KiB of operands per 128x128x32
step), so the L2 rate bounds it at 64 FLOP/B times that rate. Prints a table and saves JSON.

Run: python benchmarks/probe_ceilings.py [--sms 132] [--out benchmarks/results/probe_ceilings.json]
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

HERE = os.path.dirname(os.path.abspath(__file__))
FMA = KernelSpec(os.path.join(HERE, "fma_peak.comp"), [("O", "write"), ("A", "read")], [("iters", "I")])
FORMS = ("64 scalars, shared operands", "the GEMM's 8 x 2 vec4", "16 vec4, shared operands")
READ = KernelSpec(os.path.join(HERE, "cache_read.comp"), [("O", "write"), ("A", "read")],
                  [("iters", "I"), ("mask", "I"), ("total", "I")])


def _seconds(rt, kernel, bufs, push, groups) -> float:
    return capture_seconds(lambda: rt.run(kernel, bufs, push, (groups, 1, 1)), 1, 0.3)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sms", type=int, default=132, help="streaming multiprocessors (H100 SXM: 132)")
    parser.add_argument("--iters", type=int, default=4096)
    parser.add_argument("--out", default="benchmarks/results/probe_ceilings.json")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    a = hv.randn(4096)
    rows = []
    for form, label in enumerate(FORMS):
        kernel = rt.kernels.get(FMA, {"FORM": form}, {}, (256,))
        for per_sm in (2, 4):
            groups = args.sms * per_sm
            out = hv.empty((groups * 256 * 4,))
            seconds = _seconds(rt, kernel, {"O": out.buf, "A": a.buf}, {"iters": args.iters}, groups)
            flop = groups * 256 * args.iters * 64 * 2
            rows.append({"what": f"fp32 fma, {label}, {per_sm} x 256 threads an SM", "tflops": flop / seconds / 1e12})
            print(f"{rows[-1]['what']:62} {rows[-1]['tflops']:8.1f} TFLOP/s", flush=True)
    for mib in (4, 16, 32, 1024):
        units = (mib << 20) // 16
        data = hv.randn(units * 4)
        for per_sm in (4, 8):
            groups = args.sms * per_sm
            total = groups * 256
            iters = max(256, (4 * units // total) // 4 * 4)  # four passes at least, and 256 loads a thread
            out = hv.empty((total * 4,))
            kernel = rt.kernels.get(READ, {}, {}, (256,))
            seconds = _seconds(rt, kernel, {"O": out.buf, "A": data.buf},
                               {"iters": iters, "mask": units - 1, "total": total}, groups)
            rows.append({"what": f"read {mib} MiB over and over, {per_sm} x 256 threads an SM",
                         "gbs": total * iters * 16 / seconds / 1e9})
            print(f"{rows[-1]['what']:62} {rows[-1]['gbs']:8.1f} GB/s", flush=True)
        del data
    peer = torch_matmul_tflops("float32")
    if peer:
        print(f"torch float32 matmul 8192^3 (TF32 off): {peer:.1f} TFLOP/s")
    save_rows(args.out, rt, f"torch {torch.__version__}" if torch is not None else "none", rows, iters=args.iters,
              torch_fp32_matmul_8192_tflops=peer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
