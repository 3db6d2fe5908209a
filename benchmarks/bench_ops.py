"""Op benchmarks beside PyTorch on the same machine, in the same run.

Matmul GFLOP/s, elementwise add / softmax / sum bandwidth, and host time per
recorded op. The peer is PyTorch on CUDA where there is a CUDA GPU, else on
the CPU (numpy where PyTorch is not installed). Prints a table, saves JSON.

Run: python benchmarks/bench_ops.py [--quick] [--out bench_ops.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import hlx_vulkan as hv
from timing import median_seconds
from hlx_vulkan.nn import functional as F

try:
    import torch
except ImportError:  # the peer falls back to numpy
    torch = None



class Peer:
    def __init__(self):
        self.cuda = torch is not None and torch.cuda.is_available()
        self.name = ("torch-cuda" if self.cuda else "torch-cpu") if torch is not None else "numpy"

    def array(self, a: np.ndarray):
        if torch is None:
            return a
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t.cuda() if self.cuda else t

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def matmul(self, a, b):
        return a @ b

    def softmax(self, x):
        if torch is None:
            e = np.exp(x - x.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        return torch.softmax(x, dim=-1)

    def sum(self, x):
        return x.sum()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for a CPU-only machine)")
    parser.add_argument("--out", default="bench_ops.json")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    info = rt.ctx.info
    peer = Peer()
    rng = np.random.default_rng(0)
    rows = []
    sync = rt.synchronize
    repeat = 3 if args.quick else 10

    # matmul
    sizes = [128, 256, 512] if args.quick else [256, 512, 1024, 2048, 4096]
    dtypes = ["float32", "float16"]
    try:
        from hlx_vulkan.ops.matmul import matmul
    except ImportError:
        matmul = None
    for dt in dtypes if matmul else []:
        for n in sizes:
            a = rng.standard_normal((n, n)).astype(np.float32)
            b = rng.standard_normal((n, n)).astype(np.float32)
            ta, tb = hv.tensor(a, dtype=dt), hv.tensor(b, dtype=dt)
            pa, pb = peer.array(a.astype(dt)), peer.array(b.astype(dt))
            if torch is not None and not peer.cuda and dt == "float16":
                pa, pb = pa.float(), pb.float()
            out = matmul(ta, tb).numpy().astype(np.float64)
            ref = a.astype(dt).astype(np.float64) @ b.astype(dt).astype(np.float64)
            err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
            inner = max(1, min(20, int(2e9 / (2 * n ** 3))))
            t_h = median_seconds(lambda: matmul(ta, tb), sync, repeat, inner)
            t_p = median_seconds(lambda: peer.matmul(pa, pb), peer.sync, repeat, inner)
            flops = 2 * n ** 3
            rows.append({"op": f"matmul {dt} {n}^3", "hlx_ms": t_h * 1e3, "peer_ms": t_p * 1e3,
                         "hlx_rate": flops / t_h / 1e9, "peer_rate": flops / t_p / 1e9, "unit": "GFLOP/s",
                         "rel_err": err, "peer_over_hlx_time": t_p / t_h})

    # bandwidth ops
    mib = [1, 16, 64] if args.quick else [1, 16, 64, 256, 1024]
    for m in mib:
        n = m * (1 << 20) // 4
        x = rng.standard_normal(n).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        tx, ty = hv.tensor(x), hv.tensor(y)
        px, py = peer.array(x), peer.array(y)
        inner = max(1, min(50, 256 // m))
        t_h = median_seconds(lambda: tx + ty, sync, repeat, inner)
        t_p = median_seconds(lambda: px + py, peer.sync, repeat, inner)
        moved = 3 * n * 4
        rows.append({"op": f"add {m} MiB", "hlx_ms": t_h * 1e3, "peer_ms": t_p * 1e3, "hlx_rate": moved / t_h / 1e9,
                     "peer_rate": moved / t_p / 1e9, "unit": "GB/s", "peer_over_hlx_time": t_p / t_h})
        t_h = median_seconds(lambda: tx.sum(), sync, repeat, inner)
        t_p = median_seconds(lambda: peer.sum(px), peer.sync, repeat, inner)
        rows.append({"op": f"sum {m} MiB", "hlx_ms": t_h * 1e3, "peer_ms": t_p * 1e3, "hlx_rate": n * 4 / t_h / 1e9,
                     "peer_rate": n * 4 / t_p / 1e9, "unit": "GB/s", "peer_over_hlx_time": t_p / t_h})
        rows_n = n // 1024
        sx = tx.reshape(rows_n, 1024)
        spx = px.reshape(rows_n, 1024)
        t_h = median_seconds(lambda: F.softmax(sx, -1), sync, repeat, inner)
        t_p = median_seconds(lambda: peer.softmax(spx), peer.sync, repeat, inner)
        rows.append({"op": f"softmax {m} MiB (rows of 1024)", "hlx_ms": t_h * 1e3, "peer_ms": t_p * 1e3,
                     "hlx_rate": 2 * n * 4 / t_h / 1e9, "peer_rate": 2 * n * 4 / t_p / 1e9, "unit": "GB/s",
                     "peer_over_hlx_time": t_p / t_h})
        del tx, ty, px, py, sx, spx

    # host overhead per recorded op: small adds recorded without waiting
    small = hv.randn(256)
    psmall = peer.array(rng.standard_normal(256).astype(np.float32))
    count = 2000
    sync()

    def record(n=count):
        y = small
        for _ in range(n):
            y = y + 1.0
        return y
    t0 = time.perf_counter()
    record()
    t_record = (time.perf_counter() - t0) / count
    sync()
    t0 = time.perf_counter()
    y = psmall
    for _ in range(count):
        y = y + 1.0
    t_peer = (time.perf_counter() - t0) / count
    peer.sync()
    rows.append({"op": "host time per recorded op (add 256)", "hlx_ms": t_record * 1e3, "peer_ms": t_peer * 1e3,
                 "hlx_rate": t_record * 1e6, "peer_rate": t_peer * 1e6, "unit": "us/op",
                 "peer_over_hlx_time": t_peer / t_record})

    print(f"device: {info['device_name']} ({info['device_type']}), driver {info['driver']}; peer: {peer.name}")
    print(f"{'op':36} {'hlx':>14} {'peer':>14} {'peer time / hlx time':>21}")
    for r in rows:
        extra = f"  err {r['rel_err']:.1e}" if "rel_err" in r else ""
        print(f"{r['op']:36} {r['hlx_rate']:9.2f} {r['unit']:>4} {r['peer_rate']:9.2f} {r['unit']:>4} "
              f"{r['peer_over_hlx_time']:20.2f}x{extra}")
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": peer.name, "rows": rows}, f,
                  indent=2)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
