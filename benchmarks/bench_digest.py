"""Tensor digests on the device: hlx-blake3-v1 (BLAKE3, both chunk-kernel variants) and
hlx-tree-sha256-v1 against the read-back digest (hlx-flat-sha256-v1) and torch-side peers, in the
same run.

Rows per size (float32 tensors of 64 MiB, 256 MiB and 1 GiB; 1, 4 and 16 MiB with --quick):

- ``blake3 digest()``: ``t.digest("hlx-blake3-v1")`` end to end (kernels, sync, 32 bytes read back);
- ``blake3 kernels <variant>``: the chunk kernel and the parent levels recorded back to back, one
  sync per ``inner`` digests: the device's throughput against HBM's 3.35 TB/s (the issue's target:
  at least half, 1.7 TB/s), for each chunk-kernel variant of ``--variants`` (see
  ``hlx_vulkan/ops/digest/blake3_chunks.comp``: ``thread`` loads its own chunk, ``staged`` has
  the workgroup stage 256 bytes of each chunk at a time through shared memory, coalesced);
- ``tree digest()`` and ``tree kernels``: the same for hlx-tree-sha256-v1;
- ``flat digest()``: read-back, then SHA-256 on one host core;
- peers, torch (CUDA where there is a GPU, else CPU): ``x.clone()`` (the device copy: the memory
  system's own yardstick, reading and writing every byte), ``x.cpu()`` then the ``blake3`` package
  (its threads) and ``blake3`` alone over host memory, ``x.cpu()`` then ``hashlib.sha256``.

Every digest is checked against the host implementation before it is timed. Prints a table and
saves JSON.

Run: python benchmarks/bench_digest.py [--quick] [--variants thread,staged] [--out benchmarks/results/bench_digest_<device>.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys

import blake3
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlx_vulkan as hv  # noqa: E402
from timing import median_seconds  # noqa: E402
from hlx_vulkan.memory.blake3_digest import BLAKE3, blake3_digest  # noqa: E402
from hlx_vulkan.memory.tree_digest import CHUNK, FANOUT, FLAT, TREE, tree_digest  # noqa: E402
from hlx_vulkan.ops.digest import record_levels  # noqa: E402
from hlx_vulkan.ops.digest_blake3 import VARIANT, VARIANTS, device_blake3_digest, record_root  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

HBM_BPS = 3.35e12
# BLAKE3: 7 rounds of 8 G functions (2 three-input adds, 2 adds, 4 xors, 4 rotates each) and 8
# output xors per 64-byte block; a parent per chunk adds 1/16.
BLAKE3_OPS_PER_BYTE = (7 * 8 * 12 + 8) / 64 * (1 + 1 / 16)


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
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"BLAKE3 chunk-kernel variants to time, comma-separated (of {', '.join(VARIANTS)})")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_digest_<device>.json)")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    rt = hv.default_runtime()
    info = rt.ctx.info
    cuda = torch is not None and torch.cuda.is_available()
    peer = ("torch-cuda" if cuda else "torch-cpu") if torch is not None else "numpy"
    peer_sync = torch.cuda.synchronize if cuda else (lambda: None)
    sizes = [1 << 20, 4 << 20, 16 << 20] if args.quick else [64 << 20, 256 << 20, 1 << 30]
    repeat = 3 if args.quick else 5
    rows = []
    for nbytes in sizes:
        host = np.random.default_rng(nbytes).random(nbytes // 4, dtype=np.float32)
        expected_b3 = blake3_digest("float32", host.shape, host)
        expected_tree = tree_digest("float32", host.shape, host)
        x = hv.tensor(host)
        px = (torch.from_numpy(host).cuda() if cuda else torch.from_numpy(host.copy())) if torch is not None else host
        inner = max(1, min(50, (2 << 30) // nbytes))
        row = {"MiB": nbytes >> 20, "peer": peer}
        assert x.digest(BLAKE3) == expected_b3, "device BLAKE3 digest differs from the host implementation"
        row["blake3_digest_s"] = median_seconds(lambda: x.digest(BLAKE3), lambda: None, repeat)
        for v in variants:
            assert device_blake3_digest(x, v) == expected_b3, f"BLAKE3 variant {v} differs from the host"
            row[f"blake3_kernels_{v}_s"] = median_seconds(lambda: record_root(x, v), rt.synchronize, repeat, inner)
        assert x.digest(TREE) == expected_tree, "device tree digest differs from the host implementation"
        row["tree_digest_s"] = median_seconds(lambda: x.digest(TREE), lambda: None, repeat)
        row["tree_kernels_s"] = median_seconds(lambda: record_levels(x), rt.synchronize, repeat, inner)
        row["flat_digest_s"] = median_seconds(lambda: x.digest(FLAT), lambda: None, max(1, repeat - 2))

        def to_host():
            return px.cpu().numpy() if torch is not None else px

        if torch is not None:
            row["peer_copy_s"] = median_seconds(lambda: px.clone(), peer_sync, repeat, inner)
        assert blake3_digest("float32", host.shape, to_host()) == expected_b3
        row["peer_host_blake3_s"] = median_seconds(lambda: blake3_digest("float32", host.shape, to_host()),
                                                   lambda: None, max(1, repeat - 2))
        row["host_blake3_only_s"] = median_seconds(lambda: blake3_digest("float32", host.shape, host), lambda: None,
                                                   max(1, repeat - 2))
        row["peer_hashlib_s"] = median_seconds(lambda: hashlib.sha256(memoryview(to_host()).cast("B")).hexdigest(),
                                               lambda: None, max(1, repeat - 2))
        for k in [k for k in row if k.endswith("_s")]:
            row[k[:-2] + "_GBps"] = nbytes / 1e9 / row[k]
        for k in [k for k in row if k.startswith(("blake3_kernels_", "tree_kernels", "blake3_digest", "tree_digest"))
                  and k.endswith("_s")]:
            row[k[:-2] + "_frac_hbm"] = nbytes / row[k] / HBM_BPS
        if "peer_copy_s" in row:  # a copy moves 2 bytes per byte: its bandwidth is the yardstick
            row["peer_copy_bandwidth_GBps"] = 2 * nbytes / 1e9 / row["peer_copy_s"]
            for v in variants:
                row[f"blake3_kernels_{v}_of_copy_bandwidth"] = (row[f"blake3_kernels_{v}_GBps"]
                                                                / row["peer_copy_bandwidth_GBps"])
        best = min(row[f"blake3_kernels_{v}_s"] for v in variants) if variants else row["blake3_digest_s"]
        row["blake3_int_ops_per_s"] = nbytes * BLAKE3_OPS_PER_BYTE / best
        row["sha256_compressions_per_s"] = nbytes * compressions_per_byte() / row["tree_kernels_s"]
        row["blake3_vs_tree_digest"] = row["tree_digest_s"] / row["blake3_digest_s"]
        row["blake3_vs_flat_digest"] = row["flat_digest_s"] / row["blake3_digest_s"]
        row["blake3_vs_peer_host_blake3"] = row["peer_host_blake3_s"] / row["blake3_digest_s"]
        rows.append(row)
        del x, px, host
    print(f"device: {info['device_name']} ({info['device_type']}), driver {info['driver']}; peer {peer}; "
          f"digests use the '{VARIANT}' variant")
    cols = [("blake3 digest()", "blake3_digest")] + [(f"b3 kern {v}", f"blake3_kernels_{v}") for v in variants] + [
        ("tree digest()", "tree_digest"), ("tree kernels", "tree_kernels"), ("flat digest()", "flat_digest")]
    peers = [("copy (r+w)", "peer_copy_bandwidth"), ("cpu+blake3", "peer_host_blake3"),
             ("host blake3", "host_blake3_only"), ("cpu+sha256", "peer_hashlib")]
    print(f"{'size':>9} " + " ".join(f"{c:>20}" for c, _ in cols) + " " + " ".join(f"{c:>12}" for c, _ in peers)
          + f" {'b3/tree':>8} {'b3/flat':>8}")
    for r in rows:
        cells = []
        for _, k in cols:
            frac = r.get(k + "_frac_hbm")
            cells.append(f"{r[k + '_GBps']:8.1f} GB/s" + (f" {100 * frac:5.1f}%" if frac is not None else " " * 6))
        pcells = [f"{r[k + '_GBps']:7.1f} GB/s" if k + "_GBps" in r else f"{'-':>12}" for _, k in peers]
        print(f"{r['MiB']:>5} MiB " + " ".join(f"{c:>20}" for c in cells) + " " + " ".join(pcells)
              + f" {r['blake3_vs_tree_digest']:7.1f}x {r['blake3_vs_flat_digest']:7.0f}x")
    r = rows[-1]
    print(f"(percentages: of HBM's 3.35 TB/s; target for BLAKE3 kernels: 50%)")
    for v in variants:
        extra = (f", {100 * r[f'blake3_kernels_{v}_of_copy_bandwidth']:.0f}% of the copy's bandwidth"
                 if f"blake3_kernels_{v}_of_copy_bandwidth" in r else "")
        print(f"largest, BLAKE3 '{v}': {r[f'blake3_kernels_{v}_GBps']:.1f} GB/s{extra}")
    print(f"largest: {r['blake3_int_ops_per_s'] / 1e12:.2f} T integer ops/s in BLAKE3 ({BLAKE3_OPS_PER_BYTE:.2f} "
          f"per byte), {r['sha256_compressions_per_s'] / 1e9:.3f} G SHA-256 compressions/s")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_digest_{device_tag(info['device_name'])}{'_quick' if args.quick else ''}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"device": info["device_name"], "device_type": info["device_type"], "driver": info["driver"],
                   "host": platform.processor() or platform.machine(), "peer": peer, "hbm_Bps": HBM_BPS,
                   "blake3_variant_used_by_digest": VARIANT, "variants": variants, "blake3_package": blake3.__version__,
                   "chunk": CHUNK, "fanout": FANOUT, "rows": rows}, f, indent=2)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
