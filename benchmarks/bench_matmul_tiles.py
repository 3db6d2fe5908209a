"""The tiled float32 matmul kernel's tile shapes on the shapes an MLP step uses and on squares,
beside torch (CUDA where there is a GPU): which tile to pick where. Prints a table, saves JSON.

Run: python benchmarks/bench_matmul_tiles.py [--out bench_matmul_tiles.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan.ops import matmul as mm
from timing import mean_seconds

try:
    import torch
except ImportError:
    torch = None

SHAPES = [(512, 1024, 784), (512, 1024, 1024), (1024, 1024, 512), (784, 1024, 512), (1024, 1024, 1024),
          (2048, 2048, 2048), (4096, 4096, 4096)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_matmul_tiles.json")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--max-size", type=int, default=4096)
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    cuda = torch is not None and torch.cuda.is_available()
    rng = np.random.default_rng(0)
    rows = []
    for M, N, K in [s for s in SHAPES if max(s) <= args.max_size]:
        a_np = rng.standard_normal((M, K)).astype(np.float32)
        b_np = rng.standard_normal((K, N)).astype(np.float32)
        a, b = hv.tensor(a_np), hv.tensor(b_np)
        ref = a_np.astype(np.float64) @ b_np
        row = {"shape": f"{M}x{N}x{K}"}
        flop = 2.0 * M * N * K
        for tile in mm.TILES:
            mm.FORCE_TILE = tile
            out = a @ b
            err = float(np.linalg.norm(out.numpy() - ref) / np.linalg.norm(ref))
            s = mean_seconds(lambda: a @ b, rt.synchronize, 1, args.reps)
            row[tile] = flop / s / 1e9
            row[f"{tile}_err"] = err
        mm.FORCE_TILE = None
        row["chosen"] = flop / mean_seconds(lambda: a @ b, rt.synchronize, 1, args.reps) / 1e9
        if torch is not None:
            ta = torch.tensor(a_np, device="cuda" if cuda else "cpu")
            tb = torch.tensor(b_np, device="cuda" if cuda else "cpu")
            sync = torch.cuda.synchronize if cuda else (lambda: None)
            row["torch"] = flop / mean_seconds(lambda: ta @ tb, sync, 1, args.reps) / 1e9
        rows.append(row)
        print(row["shape"].ljust(18), " ".join(f"{k} {row[k]:9.0f}" for k in list(mm.TILES) + ["chosen", "torch"]
                                              if k in row), "GFLOP/s", flush=True)
    info = rt.ctx.info
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "peer": ("torch-cuda" if cuda else "torch-cpu"), "rows": rows}, f,
                  indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
