"""conv2d beside PyTorch (cuDNN, TF32 off, cudnn.benchmark on) on ResNet-like layer shapes, in the
same process on the same inputs: forward, and forward + backward (input and weight gradients).

hlx is timed by replaying a captured graph of R convolutions (with --impl im2col, each eager step's kernels:
im2col, the GEMM, the layout copy; for the backward also the two gradient GEMMs and col2im),
torch by replaying a CUDA graph of the same R steps (a plain loop on a machine without CUDA);
medians of three trials. Each row checks hlx's output against torch's (relative Frobenius
error; torch in float32 with TF32 off). Reports ms per step, the ratio (torch time / hlx time:
1.0 is cuDNN's speed, the target is >= 0.5) and the fraction of the H100's 67 TFLOP/s (fp32) or
989 TFLOP/s (fp16) that the FLOPs of the convolution make of the hlx time.

``--impl`` names hlx's paths to time, each beside the same torch time: ``im2col`` (im2col, the
GEMM, a layout copy), ``implicit`` (ops/conv_implicit.py: the columns gathered inside the GEMM's
tile loop) with its own tile choice, or ``implicit:TILE`` with a tile of conv_implicit.TILES.

Run (H100): python benchmarks/bench_conv.py [--impl im2col,implicit,implicit:wide] [--out ...json]
Run (smoke test, lavapipe and torch CPU): python benchmarks/bench_conv.py --quick
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import hlx_vulkan as hv
from timing import hlx_step_seconds, torch_step_seconds
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import conv_implicit as ci

try:
    import torch
except ImportError:
    torch = None

# name, N, C_in, C_out, H (= W), kernel, stride, padding: ResNet-50/34 layer shapes at batch 32.
CASES = [
    ("conv2_x 3x3", 32, 64, 64, 56, 3, 1, 1),
    ("conv2_x 1x1 256->64", 32, 256, 64, 56, 1, 1, 0),
    ("conv3_x 3x3 s2", 32, 128, 128, 56, 3, 2, 1),
    ("conv3_x 3x3", 32, 128, 128, 28, 3, 1, 1),
    ("conv4_x 3x3", 32, 256, 256, 14, 3, 1, 1),
    ("conv5_x 3x3", 32, 512, 512, 7, 3, 1, 1),
    ("conv5_x 1x1 512->2048", 32, 512, 2048, 7, 1, 1, 0),
]
QUICK = [
    ("3x3", 2, 8, 8, 14, 3, 1, 1),
    ("1x1", 2, 16, 8, 14, 1, 1, 0),
    ("3x3 s2", 2, 8, 16, 14, 3, 2, 1),
    ("3x3 deep", 2, 32, 32, 7, 3, 1, 1),
]
PEAK = {"float32": 67e12, "float16": 989e12}  # H100 SXM, dense
TARGET_S = 0.1  # device time per timing trial


def _hlx_seconds(step, reps: int) -> float:
    step()  # eager first: kernels built, plans made
    hv.default_runtime().synchronize()
    return hlx_step_seconds(step, reps, TARGET_S)


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    got, ref = got.astype(np.float64), ref.astype(np.float64)
    return float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30))


def _use(impl: str) -> None:
    """Point conv2d at ``impl`` (im2col, implicit or implicit:TILE) for what is recorded next."""
    path, _, tile = impl.partition(":")
    if path not in ("im2col", "implicit") or (tile and tile not in ci.TILES):
        raise SystemExit(f"--impl: {impl!r} is not im2col, implicit or implicit:TILE (TILE one of {sorted(ci.TILES)})")
    ci.IMPL, ci.FORCE_TILE = path, tile or None


def run_case(case, dtype: str, dev: str, reps: int, gen, impls) -> list[dict]:
    name, n, c, o, hw, k, s, p = case
    tdt = getattr(torch, dtype)
    tx = torch.randn((n, c, hw, hw), device=dev, generator=gen).to(tdt)
    tw = (torch.randn((o, c, k, k), device=dev, generator=gen) / (c * k * k) ** 0.5).to(tdt)
    oh = (hw + 2 * p - k) // s + 1
    tg = torch.randn((n, o, oh, oh), device=dev, generator=gen).to(tdt)
    hx, hw_, hg = (hv.tensor(t.float().cpu().numpy(), dtype=dtype) for t in (tx, tw, tg))
    flop = 2.0 * n * o * oh * oh * c * k * k
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        if mode == "fwd":
            def h_step():
                return F.conv2d(hx, hw_, stride=s, padding=p)

            def t_step():
                return torch.nn.functional.conv2d(tx, tw, stride=s, padding=p)
            flops = flop
        else:
            hxg, hwg = hx.detach().requires_grad_(), hw_.detach().requires_grad_()
            txg, twg = tx.detach().requires_grad_(), tw.detach().requires_grad_()

            def h_step():
                hxg.grad = hwg.grad = None
                F.conv2d(hxg, hwg, stride=s, padding=p).backward(hg)

            def t_step():
                txg.grad = twg.grad = None
                torch.nn.functional.conv2d(txg, twg, stride=s, padding=p).backward(tg)
            flops = 3 * flop
        t_torch = torch_step_seconds(t_step, reps, TARGET_S, dev == "cuda")  # cudnn.benchmark picks in the warm-up
        for impl in impls:
            _use(impl)
            if mode == "fwd":
                err = _rel_err(h_step().to(hv.float32).numpy(), t_step().float().cpu().numpy())
            else:
                h_step()
                t_step()
                err = max(_rel_err(hxg.grad.to(hv.float32).numpy(), txg.grad.float().cpu().numpy()),
                          _rel_err(hwg.grad.to(hv.float32).numpy(), twg.grad.float().cpu().numpy()))
            t_hlx = _hlx_seconds(h_step, reps)
            rows.append({"case": name, "mode": mode, "impl": impl, "dtype": dtype, "N": n, "C": c, "O": o, "HW": hw,
                         "k": k, "stride": s, "padding": p, "gflop": flops / 1e9, "hlx_ms": t_hlx * 1e3,
                         "torch_ms": t_torch * 1e3, "ratio": t_torch / t_hlx, "hlx_tflops": flops / t_hlx / 1e12,
                         "torch_tflops": flops / t_torch / 1e12, "peak_fraction": flops / t_hlx / PEAK[dtype],
                         "rel_err": err})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes: a smoke test on lavapipe against torch CPU")
    parser.add_argument("--dtype", default="float32", choices=sorted(PEAK))
    parser.add_argument("--reps", type=int, default=None, help="convolutions per captured graph")
    parser.add_argument("--impl", default="im2col,implicit",
                        help="comma-separated hlx paths: im2col, implicit, implicit:TILE (default im2col,implicit)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_conv_<device>.json)")
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("bench_conv needs PyTorch (the peer)")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    cases = QUICK if args.quick else CASES
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    for impl in impls:
        _use(impl)
    reps = args.reps or (2 if args.quick else 10)
    info = hv.default_runtime().ctx.info
    peer = f"torch {torch.__version__} " + (f"cuDNN {torch.backends.cudnn.version()} on "
                                              f"{torch.cuda.get_device_name()}" if dev == "cuda" else "CPU")
    print(f"hlx on {info['device_name']} ({info['driver']}); peer: {peer}; TF32 off; {args.dtype}", flush=True)
    print(f"{'case':22} {'mode':8} {'impl':15} {'N,C->O,HW,k/s':20} {'GFLOP':>7} {'hlx ms':>9} {'torch ms':>9} "
          f"{'ratio':>6} "
          f"{'hlx TF/s':>9} {'peak':>6} {'err':>8}", flush=True)
    gen = torch.Generator(device=dev).manual_seed(0)
    rows = []
    for case in cases:
        for r in run_case(case, args.dtype, dev, reps, gen, impls):
            rows.append(r)
            shape = f"{r['N']},{r['C']}->{r['O']},{r['HW']},{r['k']}/{r['stride']}"
            print(f"{r['case']:22} {r['mode']:8} {r['impl']:15} {shape:20} {r['gflop']:7.2f} {r['hlx_ms']:9.3f} "
                  f"{r['torch_ms']:9.3f} "
                  f"{r['ratio']:6.2f} {r['hlx_tflops']:9.2f} {100 * r['peak_fraction']:5.1f}% {r['rel_err']:8.1e}",
                  flush=True)
    geos = {impl: float(np.exp(np.mean(np.log([r["ratio"] for r in rows if r["impl"] == impl])))) for impl in impls}
    for impl, geo in geos.items():
        print(f"{impl}: geometric mean ratio (torch time / hlx time): {geo:.3f} "
              "(target >= 0.5 of cuDNN fp32 on the H100)")
    # The best path per row: what a per-shape choice of path and tile would reach.
    best = {}
    for r in rows:
        key = (r["case"], r["mode"])
        best[key] = max(best.get(key, 0.0), r["ratio"])
    best_geo = float(np.exp(np.mean(np.log(list(best.values())))))
    print(f"best of {','.join(impls)} per row: geometric mean ratio {best_geo:.3f}")
    geo = geos[impls[-1]]
    device = "h100" if "H100" in info["device_name"] else "h200" if "H200" in info["device_name"] else \
        "lavapipe" if info["device_type"] == "cpu" or "llvmpipe" in info["device_name"] else "gpu"
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_conv_{device}{'_quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": peer, "tf32": False,
                   "dtype": args.dtype, "reps": reps, "impls": impls, "geomean_ratio": geo,
                   "geomean_ratio_by_impl": geos, "geomean_ratio_best_per_row": best_geo,
                   "peak_tflops": PEAK[args.dtype] / 1e12,
                   "rows": rows}, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
