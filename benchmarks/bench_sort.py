"""sort, topk, argsort, gather and scatter_add beside PyTorch, in the same run.

The peer is PyTorch on CUDA where there is a CUDA GPU, else on the CPU (bench_ops.Peer).
Each row reports milliseconds per call, the effective bandwidth (bytes the op must read and
write once, over its time), the fraction of the H100's 3.35 TB/s that is, and the peer's
time over ours. Every result is checked against the peer's (sort, topk and argsort: values
and indices exactly, as both sorts are stable; gather exactly; scatter_add to a relative
error) before it is timed. Prints a table, saves JSON under benchmarks/results/.

Run: python benchmarks/bench_sort.py [--quick] [--out benchmarks/results/bench_sort.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import hlx_vulkan as hv  # noqa: E402
from bench_ops import Peer, timed  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

H100_BW = 3.35e12


def _host(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for a CPU-only machine)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "bench_sort.json"))
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("bench_sort needs PyTorch as its peer")
    rt = hv.default_runtime()
    info = rt.ctx.info
    peer = Peer()
    rng = np.random.default_rng(0)
    sync = rt.synchronize
    repeat = 3 if args.quick else 10
    rows = []

    def add(op, t_h, t_p, nbytes, err=None):
        rows.append({"op": op, "hlx_ms": t_h * 1e3, "peer_ms": t_p * 1e3, "hlx_gbs": nbytes / t_h / 1e9,
                     "peer_gbs": nbytes / t_p / 1e9, "h100_fraction": nbytes / t_h / H100_BW,
                     "peer_over_hlx_time": t_p / t_h, **({"rel_err": err} if err is not None else {})})

    sort_shapes = [(64, 1000), (16, 5000), (4, 70000)] if args.quick else \
        [(4096, 1024), (1024, 8192), (64, 131072), (8, 1 << 20), (1, 1 << 24)]
    for rows_, n in sort_shapes:
        x = rng.standard_normal((rows_, n)).astype(np.float32)
        x[:, ::7] = np.round(x[:, ::7])   # ties, so stability matters
        tx, px = hv.tensor(x), peer.array(x)
        v, i = tx.sort(dim=1, descending=True)
        rv, ri = torch.sort(px, dim=1, descending=True, stable=True)
        assert np.array_equal(v.numpy(), _host(rv)) and np.array_equal(i.numpy(), _host(ri)), "sort differs"
        t_h = timed(lambda: tx.sort(dim=1, descending=True), sync, repeat)
        t_p = timed(lambda: torch.sort(px, dim=1, descending=True, stable=True), peer.sync, repeat)
        add(f"sort desc stable {rows_}x{n} f32", t_h, t_p, x.nbytes * 4)   # read x; write values and int64 indices
        t_h = timed(lambda: tx.argsort(dim=1), sync, repeat)
        t_p = timed(lambda: torch.argsort(px, dim=1, stable=True), peer.sync, repeat)
        add(f"argsort {rows_}x{n} f32", t_h, t_p, x.nbytes * 3)
        k = 16
        v, i = tx.topk(k, dim=1)
        rv, ri = torch.topk(px, k, dim=1)
        assert np.array_equal(v.numpy(), _host(rv)), "topk values differ"
        t_h = timed(lambda: tx.topk(k, dim=1), sync, repeat)
        t_p = timed(lambda: torch.topk(px, k, dim=1), peer.sync, repeat)
        add(f"topk k={k} {rows_}x{n} f32", t_h, t_p, x.nbytes)
        del tx, px

    g_shapes = [(1024, 256, 64)] if args.quick else [(16384, 1024, 256), (65536, 512, 1024)]
    for n_rows, n_cols, n_idx in g_shapes:
        x = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
        idx = rng.integers(0, n_cols, (n_rows, n_idx))
        tx, ti = hv.tensor(x), hv.tensor(idx)
        px, pi = peer.array(x), peer.array(idx)
        assert np.array_equal(hv.gather(tx, 1, ti).numpy(), _host(torch.gather(px, 1, pi))), "gather differs"
        t_h = timed(lambda: hv.gather(tx, 1, ti), sync, repeat)
        t_p = timed(lambda: torch.gather(px, 1, pi), peer.sync, repeat)
        add(f"gather dim1 {n_rows}x{n_cols} <- {n_idx}", t_h, t_p, idx.size * (4 + 8 + 4))
        src = rng.standard_normal((n_rows, n_idx)).astype(np.float32)
        ts, ps = hv.tensor(src), peer.array(src)
        got = hv.scatter_add(tx, 1, ti, ts).numpy()
        ref = _host(torch.scatter_add(px, 1, pi, ps))
        err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        t_h = timed(lambda: hv.scatter_add(tx, 1, ti, ts), sync, repeat)
        t_p = timed(lambda: torch.scatter_add(px, 1, pi, ps), peer.sync, repeat)
        add(f"scatter_add dim1 {n_rows}x{n_cols} <- {n_idx}", t_h, t_p, x.nbytes * 2 + src.nbytes + idx.size * 8, err)
        # embedding-gradient shape: many rows summed into a small table along dim 0
        vocab, tokens, width = (500, 4000, 64) if args.quick else (32000, 262144, 256)
        g = rng.standard_normal((tokens, width)).astype(np.float32)
        tok = np.repeat(rng.integers(0, vocab, (tokens, 1)), width, 1)
        tt, tg, pt, pg = hv.tensor(tok), hv.tensor(g), peer.array(tok), peer.array(g)
        zt, zp = hv.zeros(vocab, width), peer.array(np.zeros((vocab, width), np.float32))
        got = hv.scatter_add(zt, 0, tt, tg).numpy()
        ref = _host(torch.scatter_add(zp, 0, pt, pg))
        err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        t_h = timed(lambda: hv.scatter_add(zt, 0, tt, tg), sync, repeat)
        t_p = timed(lambda: torch.scatter_add(zp, 0, pt, pg), peer.sync, repeat)
        add(f"scatter_add dim0 {tokens}x{width} -> {vocab} rows", t_h, t_p, g.nbytes * 2 + tok.size * 8, err)
        del tx, ti, px, pi, ts, ps, tt, tg, pt, pg

    print(f"device: {info['device_name']} ({info['device_type']}), driver {info['driver']}; peer: {peer.name}")
    print(f"{'op':44} {'hlx ms':>10} {'peer ms':>10} {'hlx GB/s':>10} {'of H100 BW':>11} {'peer/hlx time':>14}")
    for r in rows:
        extra = f"  err {r['rel_err']:.1e}" if "rel_err" in r else ""
        print(f"{r['op']:44} {r['hlx_ms']:10.3f} {r['peer_ms']:10.3f} {r['hlx_gbs']:10.2f} "
              f"{r['h100_fraction']:10.2%} {r['peer_over_hlx_time']:13.3f}x{extra}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": peer.name, "quick": args.quick,
                   "rows": rows}, f, indent=2)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
