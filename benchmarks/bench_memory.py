"""Memory benchmarks: pool vs one allocation per tensor, transfer bandwidth, hashing throughput.

Each row has a peer measured in the same run, and the ratio to it.

Run: python benchmarks/bench_memory.py [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import statistics
import time

import numpy as np

from hlx_vulkan import Buffer, VulkanContext, vk
from hlx_vulkan.memory import MemoryManager


def best_of(fn, repeat: int) -> float:
    """Median of ``repeat`` timings of ``fn()`` in seconds (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_alloc(ctx, mm, count: int, repeat: int) -> dict:
    sizes = [random.Random(i).choice([4 << 10, 64 << 10, 256 << 10, 1 << 20]) for i in range(count)]

    def pooled():
        allocs = [mm.device_pool.allocate(s) for s in sizes]
        for a in allocs:
            a.free()

    def dedicated():
        bufs = [Buffer(ctx.device, s, vk.BufferUsageFlags.STORAGE_BUFFER, vk.MemoryPropertyFlags.DEVICE_LOCAL)
                for s in sizes]
        for b in bufs:
            b.destroy()

    t_pool, t_ded = best_of(pooled, repeat), best_of(dedicated, repeat)
    return {"name": f"alloc+free {count} tensors", "hlx_s": t_pool, "peer": "vkAllocateMemory per tensor",
            "peer_s": t_ded, "hlx_per_op_us": t_pool / count * 1e6, "peer_per_op_us": t_ded / count * 1e6,
            "speedup": t_ded / t_pool}


def bench_transfer(mm, nbytes: int, repeat: int) -> list[dict]:
    host = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    t = mm.from_numpy(host)
    dst = np.empty_like(host)
    t_up = best_of(lambda: t.write(host), repeat)
    t_down = best_of(lambda: t.numpy(), repeat)
    t_np = best_of(lambda: np.copyto(dst, host), repeat)
    assert t.numpy().tobytes() == host.tobytes()
    t.free()
    gb = nbytes / 1e9
    return [
        {"name": f"upload {nbytes >> 20} MiB", "hlx_s": t_up, "hlx_GBps": gb / t_up, "peer": "numpy copy",
         "peer_s": t_np, "peer_GBps": gb / t_np, "speedup": t_np / t_up},
        {"name": f"download {nbytes >> 20} MiB", "hlx_s": t_down, "hlx_GBps": gb / t_down, "peer": "numpy copy",
         "peer_s": t_np, "peer_GBps": gb / t_np, "speedup": t_np / t_down},
    ]


def bench_hash(mm, nbytes: int, repeat: int) -> dict:
    host = np.random.default_rng(1).standard_normal(nbytes // 4).astype(np.float32)
    t = mm.from_numpy(host)
    t_digest = best_of(t.digest, repeat)
    t_hashlib = best_of(lambda: hashlib.sha256(memoryview(host)).hexdigest(), repeat)
    t.free()
    gb = nbytes / 1e9
    return {"name": f"digest {nbytes >> 20} MiB", "hlx_s": t_digest, "hlx_GBps": gb / t_digest,
            "peer": "hashlib.sha256 over numpy", "peer_s": t_hashlib, "peer_GBps": gb / t_hashlib,
            "speedup": t_hashlib / t_digest}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_memory.json")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    sizes = [1 << 20, 16 << 20] if args.quick else [1 << 20, 16 << 20, 64 << 20]
    with VulkanContext() as ctx:
        mm = MemoryManager(ctx)
        rows = [bench_alloc(ctx, mm, 200 if args.quick else 2000, repeat)]
        for n in sizes:
            rows += bench_transfer(mm, n, repeat)
        for n in sizes:
            rows.append(bench_hash(mm, n, repeat))
        info = ctx.info
        mm.destroy()
    print(f"device: {info['device_name']} ({info['device_type']}), driver {info['driver']}")
    print(f"{'benchmark':28} {'hlx':>12} {'peer':>12}  {'hlx/peer speed':>14}  peer")
    for r in rows:
        unit = (lambda s, g: f"{g:8.2f} GB/s") if "hlx_GBps" in r else (lambda s, g: f"{s * 1e3:9.2f} ms")
        print(f"{r['name']:28} {unit(r['hlx_s'], r.get('hlx_GBps')):>12} {unit(r['peer_s'], r.get('peer_GBps')):>12}"
              f"  {r['speedup']:13.2f}x  {r['peer']}")
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "device_type": info["device_type"], "driver": info["driver"],
                   "host": platform.processor() or platform.machine(), "rows": rows}, f, indent=2)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
