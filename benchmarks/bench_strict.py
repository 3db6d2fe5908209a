"""The cost of strict mode: one training step in strict mode against the default mode, beside
PyTorch (CUDA where there is a GPU, else CPU) in the same run.

Strict mode (hlx_vulkan/strict_mode.py) computes division, exp, log, sqrt, tanh, ... in software,
flushes denormals in integer instructions after every float add and multiply, and never uses
cooperative matrices. Target: strict at most 3x the default step on the H100.

Steps are registered in STEPS by name: a function (args) -> (hlx step, torch step or None,
FLOPs per step). The MLP's is here; the CNN's and the transformer's join with one entry each
when those models exist (``STEPS["cnn"] = cnn_steps``).

Prints a table (time per step, eager and replayed from a capture, strict / default, strict TFLOP/s and its fraction of the H100's
67 TFLOP/s fp32) and saves JSON under benchmarks/results/.

Run: python benchmarks/bench_strict.py            # MLP 784-1024-1024-10, batch 512
     python benchmarks/bench_strict.py --quick    # small, for lavapipe
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import nn, optim
from hlx_vulkan.nn import functional as F
from timing import mean_seconds

try:
    import torch
except ImportError:
    torch = None

H100_FP32_TFLOPS = 67.0
H100_BYTES_PER_S = 3.35e12


def mlp_steps(args):
    """(hlx step, torch step, FLOPs per step) for the MLP 784 -> H -> H -> 10 with AdamW."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.batch, 784)).astype(np.float32)
    y_np = rng.integers(0, 10, args.batch).astype(np.int32)
    h = args.hidden
    hv.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    x, y = hv.tensor(x_np), hv.tensor(y_np)

    def hlx_step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    torch_step = None
    if torch is not None:
        dev = "cuda" if torch.cuda.is_available() else "cpu"
        tm = torch.nn.Sequential(torch.nn.Linear(784, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                                 torch.nn.Linear(h, 10)).to(dev)
        topt = torch.optim.AdamW(tm.parameters(), lr=1e-3)
        tx, ty = torch.tensor(x_np, device=dev), torch.tensor(y_np.astype(np.int64), device=dev)

        def torch_step():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()
    flops = 6 * args.batch * (784 * h + h * h + h * 10)
    return hlx_step, torch_step, flops


# name -> function(args) -> (hlx step, torch step or None, FLOPs per step)
STEPS = {"mlp": mlp_steps}


def torch_sync():
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few steps (lavapipe)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default=",".join(STEPS), help=f"comma-separated, of {sorted(STEPS)}")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/bench_strict_<device>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.batch, args.steps = 128, 64, 3
    rt = hv.default_runtime()
    device = rt.ctx.info["device_name"]
    peer = "none" if torch is None else ("torch CUDA" if torch.cuda.is_available() else "torch CPU")
    rows = []
    for name in args.models.split(","):
        t_torch = None
        for how in ("eager", "replay"):
            times = {}
            for strict in (False, True):
                with hv.strict(strict):
                    step, torch_step, flops = STEPS[name](args)
                    if how == "replay":  # the step captured once: the GPU's time, without the host's
                        step()
                        with hv.capture() as graph:
                            step()
                        step = graph.replay
                    times["strict" if strict else "default"] = mean_seconds(step, rt.synchronize, 2, args.steps)
                    if how == "replay":
                        graph.destroy()
            if t_torch is None and torch_step is not None:
                t_torch = mean_seconds(torch_step, torch_sync, 2, args.steps)
            rows.append({"model": name, "mode": how, "hidden": args.hidden, "batch": args.batch,
                         "flops_per_step": flops, "default_ms": 1e3 * times["default"],
                         "strict_ms": 1e3 * times["strict"], "strict_over_default": times["strict"] / times["default"],
                         "torch_eager_ms": None if t_torch is None else 1e3 * t_torch,
                         "strict_over_torch": None if t_torch is None else times["strict"] / t_torch,
                         "strict_tflops": flops / times["strict"] / 1e12,
                         "strict_fraction_of_h100_fp32": flops / times["strict"] / 1e12 / H100_FP32_TFLOPS})
    print(f"{device}; peer: {peer} (eager)")
    print(f"{'model':6} {'mode':7} {'default ms':>11} {'strict ms':>10} {'strict/def':>10} {'peer ms':>10} "
          f"{'strict/peer':>11} {'strict TFLOP/s':>14} {'of 67 fp32':>10}")
    for r in rows:
        tm = "-" if r["torch_eager_ms"] is None else f"{r['torch_eager_ms']:.3f}"
        sp = "-" if r["strict_over_torch"] is None else f"{r['strict_over_torch']:.2f}"
        print(f"{r['model']:6} {r['mode']:7} {r['default_ms']:11.3f} {r['strict_ms']:10.3f} "
              f"{r['strict_over_default']:10.2f} {tm:>10} {sp:>11} {r['strict_tflops']:14.4f} "
              f"{100 * r['strict_fraction_of_h100_fp32']:9.2f}%")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_strict_{'quick_' if args.quick else ''}"
                                   f"{device.split()[0].lower().replace('/', '_')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"device": device, "driver": rt.ctx.info["driver"], "peer": peer, "quick": args.quick,
                   "target": "strict_over_default <= 3 on the H100", "rows": rows}, f, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
