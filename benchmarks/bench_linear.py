"""Linear layers with the bias (and relu) applied in the product's kernel, beside the composed form
and PyTorch, on the same inputs in the same process.

For float32, float16 and bfloat16, two chains of layers, each layer reading the last one's output
(so each waits for the last, as on a CUDA stream): the MLP's forward (batch 512: 784 -> 1024 ->
1024 -> 10) and two 4096 -> 4096 layers over 4096 rows; each without activations, and with relu
after every layer but the last (act "relu"). Three ways: ``F.linear(x, W, b)`` or, with relu,
``linear_relu`` (one launch a layer: the bias added and relu applied as the product is stored,
ops/linear.py; nn.Sequential's Linear then ReLU), the composed ``x @ W.T + b`` and ``F.relu``
(the product, a broadcast add, relu: what F.linear ran before the fusions) and torch's
``F.linear`` and ``torch.relu`` (cuBLAS with its bias epilogue, TF32 off, then relu). hlx is timed by
replaying a captured graph of R chains, torch by replaying a CUDA graph of R chains; medians of
three trials. (Independent layers are no measure: hlx's graph runs them concurrently, a CUDA
stream one after another.) Each row checks that the fused and composed chains give the same bits,
and the fused one against a float64 chain of the same inputs (relative Frobenius error).

Run: python benchmarks/bench_linear.py [--quick] [--dtypes float32,float16] [--acts none,relu]
                                      [--out bench_linear.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops.linear import linear_relu
from timing import hlx_step_seconds, torch_step_seconds

try:
    import torch
except ImportError:
    torch = None

# name, rows, features in -> out of each layer
CHAINS = [("mlp 784-1024-1024-10", 512, (784, 1024, 1024, 10)), ("4096 x2", 4096, (4096, 4096, 4096))]
PEAK = {"float32": 67e12, "float16": 989e12, "bfloat16": 989e12}  # H100 SXM, dense
TARGET_S = 0.3


def _chain(layer, x, layers, relu):
    for i, (w, b) in enumerate(layers):
        x = layer(x, w, b, relu and i + 1 < len(layers))
    return x


def _fused(x, w, b, relu):
    return linear_relu(x, w, b) if relu else F.linear(x, w, b)


def _composed(x, w, b, relu):
    y = x @ w.T + b
    return F.relu(y) if relu else y


def _torch(x, w, b, relu):
    y = torch.nn.functional.linear(x, w, b)
    return torch.relu(y) if relu else y


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtypes", default="float32,float16,bfloat16")
    parser.add_argument("--chains", type=int, default=len(CHAINS), help="the first N chains only")
    parser.add_argument("--acts", default="none,relu", help="activations between the layers: none, relu")
    parser.add_argument("--quick", action="store_true", help="float32, the MLP's chain (for a CPU-only machine)")
    parser.add_argument("--out", default="bench_linear.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.dtypes, args.chains = "float32", 1
    if torch is None:
        print("bench_linear: needs torch for its peer")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    info = hv.default_runtime().ctx.info
    print(f"device: {info['device_name']} (driver {info['driver']}); peer torch {torch.__version__}")
    print(f"{'dtype':9} {'chain':21} {'act':4} {'fused us':>9} {'composed':>9} {'torch':>8} {'fused/torch':>11} "
          f"{'composed/torch':>14} {'TFLOP/s':>8} {'bits':>5} {'err':>8}")
    rows = []
    rng = np.random.default_rng(0)
    for dtype in args.dtypes.split(","):
        tdt = getattr(torch, dtype)
        for (name, M, dims), act in ((c, a) for c in CHAINS[:args.chains] for a in args.acts.split(",")):
            relu = act == "relu"
            # Weights scaled by 1/sqrt(in), as nn.Linear's, so the chain's values stay in range.
            x = rng.standard_normal((M, dims[0])).astype(np.float32)
            params = [((rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32),
                       rng.standard_normal(o).astype(np.float32)) for i, o in zip(dims, dims[1:])]
            hx = hv.tensor(x).to(getattr(hv, dtype))
            hl = [tuple(hv.tensor(a).to(getattr(hv, dtype)) for a in p) for p in params]
            tx = torch.tensor(x, device=dev).to(tdt)
            tl = [tuple(torch.tensor(a, device=dev).to(tdt) for a in p) for p in params]
            fused, composed = _chain(_fused, hx, hl, relu), _chain(_composed, hx, hl, relu)
            same = bool((fused.to(hv.float32).numpy() == composed.to(hv.float32).numpy()).all())
            ref = _chain(_torch, tx.double(), [(w.double(), b.double()) for w, b in tl], relu)
            got = torch.tensor(fused.to(hv.float32).numpy(), dtype=torch.float64, device=dev)
            err = float(torch.linalg.norm(got - ref) / torch.linalg.norm(ref))
            flop = 2 * M * sum(i * o for i, o in zip(dims, dims[1:]))
            reps = max(1, min(50, int(2e10 / flop)))
            t_fused = hlx_step_seconds(lambda: _chain(_fused, hx, hl, relu), reps, TARGET_S)
            t_composed = hlx_step_seconds(lambda: _chain(_composed, hx, hl, relu), reps, TARGET_S)
            t_torch = torch_step_seconds(lambda: _chain(_torch, tx, tl, relu), reps, TARGET_S, cuda)
            row = {"dtype": dtype, "chain": name, "act": act, "rows": M, "features": dims, "fused_us": t_fused * 1e6,
                   "composed_us": t_composed * 1e6, "torch_us": t_torch * 1e6, "fused_ratio": t_torch / t_fused,
                   "composed_ratio": t_torch / t_composed, "fused_tflops": flop / t_fused / 1e12,
                   "peak_fraction": flop / t_fused / PEAK[dtype], "same_bits": same, "err": err}
            rows.append(row)
            print(f"{dtype:9} {name:21} {act:4} {row['fused_us']:9.1f} {row['composed_us']:9.1f} "
                  f"{row['torch_us']:8.1f} {row['fused_ratio']:11.2f} {row['composed_ratio']:14.2f} "
                  f"{row['fused_tflops']:8.1f} {str(same):>5} {err:8.1e}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": f"torch {torch.__version__}",
                   "tf32": False, "rows": rows}, f, indent=2)
    print(f"saved {args.out}")
    return 0 if all(r["same_bits"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
