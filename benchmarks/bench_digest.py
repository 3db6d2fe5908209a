"""Tensor digests: the device's tree digest (hlx-tree-sha256-v1) against today's read-back digest
(hlx-flat-sha256-v1) and a torch-side equivalent, in the same run.

Rows per size (float32 tensors of 64 MiB, 256 MiB and 1 GiB; 1, 4 and 16 MiB with --quick):

- ``tree digest()``: ``t.digest("hlx-tree-sha256-v1")`` end to end (kernels, sync, 32 bytes read back);
- ``tree kernels``: the tree's levels recorded back to back, one sync per ``inner`` digests: the
  device's throughput, compared with HBM's 3.35 TB/s (the issue's target: at least half);
- ``flat digest()``: today's ``t.digest()``: read-back, then SHA-256 on one host core;
- the peer, torch (CUDA where there is a GPU, else CPU): ``x.cpu()`` then ``hashlib.sha256``
  (what a torch user does today), and ``x.cpu()`` then this library's host tree digest (one core).

Every digest is checked against the host implementation before it is timed. Prints a table and
saves JSON.

Run: python benchmarks/bench_digest.py [--quick] [--out benchmarks/results/bench_digest_<device>.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlx_vulkan as hv  # noqa: E402
from timing import median_seconds  # noqa: E402
from hlx_vulkan.memory.tree_digest import CHUNK, FANOUT, FLAT, TREE, tree_digest  # noqa: E402
from hlx_vulkan.ops.digest import record_levels  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

HBM_BPS = 3.35e12



def compressions_per_byte() -> float:
    """SHA-256 compressions per data byte for a large tensor: a 4 KiB leaf takes 65 (64 blocks and
    padding), each 16-way node 9, one node per 16 leaves, and so on up."""
    leaves = 65 / CHUNK
    nodes = 9 / (CHUNK * FANOUT) * (1 / (1 - 1 / FANOUT))
    return leaves + nodes


def device_tag(name: str) -> str:
    name = name.lower()
    for tag in ("llvmpipe", "h100", "h200"):
        if tag in name:
            return "lavapipe" if tag == "llvmpipe" else tag
    return re.sub(r"[^a-z0-9]+", "_", name).strip("_")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for a CPU-only machine)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_digest_<device>.json)")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    info = rt.ctx.info
    cuda = torch is not None and torch.cuda.is_available()
    peer = ("torch-cuda" if cuda else "torch-cpu") if torch is not None else "numpy"
    sizes = [1 << 20, 4 << 20, 16 << 20] if args.quick else [64 << 20, 256 << 20, 1 << 30]
    repeat = 3 if args.quick else 5
    rows = []
    for nbytes in sizes:
        host = np.random.default_rng(nbytes).random(nbytes // 4, dtype=np.float32)
        expected = tree_digest("float32", host.shape, host)
        x = hv.tensor(host)
        px = (torch.from_numpy(host).cuda() if cuda else torch.from_numpy(host.copy())) if torch is not None else host
        assert x.digest(TREE) == expected, "device tree digest differs from the host implementation"
        gb = nbytes / 1e9
        t_tree = median_seconds(lambda: x.digest(TREE), lambda: None, repeat)
        inner = max(1, min(50, (2 << 30) // nbytes))
        t_kernels = median_seconds(lambda: record_levels(x), rt.synchronize, repeat, inner)
        t_flat = median_seconds(lambda: x.digest(FLAT), lambda: None, max(1, repeat - 2))

        def to_host():
            return px.cpu().numpy() if torch is not None else px

        t_peer = median_seconds(lambda: hashlib.sha256(memoryview(to_host()).cast("B")).hexdigest(), lambda: None,
                       max(1, repeat - 2))
        assert tree_digest("float32", host.shape, to_host()) == expected
        t_peer_tree = median_seconds(lambda: tree_digest("float32", host.shape, to_host()), lambda: None,
                            max(1, repeat - 2))
        row = {"MiB": nbytes >> 20, "tree_digest_s": t_tree, "tree_kernels_s": t_kernels, "flat_digest_s": t_flat,
               "peer": peer, "peer_hashlib_s": t_peer, "peer_host_tree_s": t_peer_tree}
        for k in ("tree_digest", "tree_kernels", "flat_digest", "peer_hashlib", "peer_host_tree"):
            row[k + "_GBps"] = gb / row[k + "_s"]
        row["tree_kernels_frac_hbm"] = nbytes / t_kernels / HBM_BPS
        row["tree_digest_frac_hbm"] = nbytes / t_tree / HBM_BPS
        row["tree_vs_flat"] = t_flat / t_tree
        row["tree_vs_peer_hashlib"] = t_peer / t_tree
        row["sha256_compressions_per_s"] = nbytes * compressions_per_byte() / t_kernels
        rows.append(row)
        del x, px, host
    print(f"device: {info['device_name']} ({info['device_type']}), driver {info['driver']}; peer {peer}")
    print(f"{'size':>9} {'tree digest()':>14} {'tree kernels':>13} {'of 3.35TB/s':>11} {'flat digest()':>14} "
          f"{'peer: cpu+sha256':>17} {'peer: cpu+tree':>15} {'tree/flat':>10} {'tree/peer':>10}")
    for r in rows:
        print(f"{r['MiB']:>5} MiB {r['tree_digest_GBps']:9.2f} GB/s {r['tree_kernels_GBps']:8.2f} GB/s "
              f"{100 * r['tree_kernels_frac_hbm']:10.2f}% {r['flat_digest_GBps']:9.2f} GB/s "
              f"{r['peer_hashlib_GBps']:12.2f} GB/s {r['peer_host_tree_GBps']:10.2f} GB/s "
              f"{r['tree_vs_flat']:9.1f}x {r['tree_vs_peer_hashlib']:9.1f}x")
    r = rows[-1]
    print(f"largest: {r['sha256_compressions_per_s'] / 1e9:.3f} G SHA-256 compressions/s on the device "
          f"({compressions_per_byte() * 64:.4f} compressions per 64 data bytes)")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_digest_{device_tag(info['device_name'])}{'_quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"device": info["device_name"], "device_type": info["device_type"], "driver": info["driver"],
                   "host": platform.processor() or platform.machine(), "peer": peer, "hbm_Bps": HBM_BPS,
                   "chunk": CHUNK, "fanout": FANOUT, "rows": rows}, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
