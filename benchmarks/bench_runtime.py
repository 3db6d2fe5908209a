"""The runtime core beside PyTorch on the same machine, in the same run: host time per recorded
op (a small elementwise op, a small matmul, a whole MLP training step divided by its
dispatches), pipelined bandwidth with ten ops in flight and the memory pool's peak, and the
time to the first op of a fresh process. Prints a table, saves JSON.

Host time is the recording thread's CPU time (``time.thread_time``): on lavapipe the device
runs on the other cores of the same process, and wall time would count it.

The MLP step is timed two ways, torch's the same way as hlx's:
- "after idle": each timed step is the first after a sync (the device idle, and on lavapipe the
  host's caches cold after its threads ran): what a loop that reads the loss every step pays.
- "steady": after a sync and one untimed step, several steps recorded back to back (fewer
  dispatches in all than a stream batch, so no submission waits for the device inside; an early
  submission of a batch past 128 MiB touched may fall inside, as in a training loop): what a
  training loop that does not sync every step pays per step.
- "after a host cache sweep": as steady, one step, after numpy has read 32 MiB (no device
  work): the cold-cache share of "after idle" on a CPU device, whose threads run the kernels
  on the host's own cores.

Run: python benchmarks/bench_runtime.py [--quick] [--host-only] [--out bench_runtime.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import hlx_vulkan as hv
from timing import median_seconds
from hlx_vulkan import nn, optim
from hlx_vulkan.nn import functional as F
from bench_ops import Peer
from hlx_vulkan.runtime.stream import BATCH_OPS

try:
    import torch
except ImportError:
    torch = None

# HBM bandwidth by device name, for the fraction of the hardware limit.
HBM = {"H100": 3.35e12, "H200": 4.8e12}


def host_us(fn, sync, count: int, rounds: int = 7, steady: bool = False, before=None) -> float:
    """Median over ``rounds`` of the recording thread's CPU microseconds per call: each round
    starts from an idle device and records ``count`` calls (fewer than a batch of the stream,
    so no submission waits for the device inside the round). ``steady``: each round's sync is
    followed by one untimed call, so the timed calls are recorded back to back as in a loop
    (``count`` x the call's dispatches stays under a stream batch). ``before``: called, untimed,
    just before each round's timed calls."""
    for _ in range(3):
        fn()
    if not steady:
        sync()
    times = []
    for _ in range(rounds):
        sync()
        if steady:
            fn()
        if before is not None:
            before()
        t0 = time.thread_time()
        for _ in range(count):
            fn()
        times.append((time.thread_time() - t0) / count * 1e6)
    sync()
    return statistics.median(times)


def steady_us(fn, sync, count: int, rounds: int = 9) -> float:
    return host_us(fn, sync, count, rounds, steady=True)


def mlp_step_hlx(batch, sizes, rng):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(sizes) - 2 else [])
    model = nn.Sequential(*layers)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    x = hv.tensor(rng.random((batch, sizes[0]), np.float32))
    y = hv.tensor(rng.integers(0, sizes[-1], batch))

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def mlp_step_torch(peer, batch, sizes, rng, foreach=False):
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.ReLU()] if i < len(sizes) - 2 else [])
    model = torch.nn.Sequential(*layers)
    if peer.cuda:
        model = model.cuda()
    # foreach=None is torch's default: one multi-tensor kernel per update step on CUDA, a loop on CPU.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=foreach)
    x = peer.array(rng.random((batch, sizes[0]), np.float32))
    y = peer.array(rng.integers(0, sizes[-1], batch))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def first_op_seconds(cold: bool) -> dict:
    """A fresh process: import, then the first op's result on the host; then a Linear forward+backward."""
    code = ("import time; t0 = time.perf_counter(); import hlx_vulkan as hv; t1 = time.perf_counter();"
            "(hv.ones(4) + 1).numpy(); t2 = time.perf_counter();"
            "l = hv.nn.Linear(8, 4); x = hv.randn(2, 8); l(x).sum().backward(); l.weight.grad.numpy();"
            "t3 = time.perf_counter(); print(t1 - t0, t2 - t1, t3 - t2)")
    env = dict(os.environ)
    env.pop("HLX_VALIDATION", None)
    with tempfile.TemporaryDirectory() as cache:
        if cold:
            env["HLX_CACHE_DIR"] = cache
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    imp, first, linear = (float(v) for v in out.stdout.split())
    return {"import_s": imp, "first_op_s": first, "first_linear_fwd_bwd_s": linear}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (for a CPU-only machine)")
    parser.add_argument("--out", default="bench_runtime.json")
    parser.add_argument("--host-only", action="store_true", help="only the host time per op and per step")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    info = rt.ctx.info
    peer = Peer()
    rng = np.random.default_rng(0)
    sync = rt.synchronize
    rows = []
    hbm = next((v for k, v in HBM.items() if k in info["device_name"]), None)

    # --- host time per recorded op --------------------------------------------------------
    a, b = hv.randn(256), hv.randn(256)
    ma, mb = hv.randn(64, 64), hv.randn(64, 64)
    pa, pb = peer.array(rng.standard_normal(256).astype(np.float32)), peer.array(rng.standard_normal(256).astype(np.float32))
    pma, pmb = (peer.array(rng.standard_normal((64, 64)).astype(np.float32)) for _ in range(2))
    count = 400
    for name, fn, pfn in (("add 256", lambda: a + b, lambda: pa + pb),
                          ("matmul 64x64", lambda: ma @ mb, lambda: pma @ pmb)):
        h = host_us(fn, sync, count)
        p = host_us(pfn, peer.sync, count) if torch is not None else float("nan")
        rows.append({"what": f"host us per op: {name}", "hlx": h, "peer": p, "unit": "us", "peer_over_hlx": p / h})
    sizes = (64, 256, 256, 10) if args.quick else (784, 1024, 1024, 10)
    batch = 64 if args.quick else 512
    step = mlp_step_hlx(batch, sizes, rng)
    step()
    sync()
    d0 = rt.stream.dispatches
    step()
    dispatches = rt.stream.dispatches - d0
    # Steps back to back between syncs: under a stream batch in all, the untimed first one included.
    steady_steps = max(1, BATCH_OPS // dispatches - 2)
    h_step = host_us(step, sync, 1, rounds=20)
    h_steady = steady_us(step, sync, steady_steps)
    # A step after the host's caches were swept (numpy over 32 MiB, no device work): what a step
    # after a sync pays on a CPU device, whose threads ran the kernels on the host's cores.
    sweep = np.ones(8 << 20, np.float32).sum
    h_swept = host_us(step, sync, 1, rounds=20, steady=True, before=sweep)
    p_step = p_steady = p_default = p_default_steady = p_swept = p_default_swept = float("nan")
    kernels = kernels_default = None
    if torch is not None:
        pstep = mlp_step_torch(peer, batch, sizes, rng)
        kernels = _torch_kernels(pstep, peer)
        p_step = host_us(pstep, peer.sync, 1, rounds=20)
        p_steady = steady_us(pstep, peer.sync, steady_steps)
        p_swept = host_us(pstep, peer.sync, 1, rounds=20, steady=True, before=sweep)
        pstep_default = mlp_step_torch(peer, batch, sizes, rng, foreach=None)
        kernels_default = _torch_kernels(pstep_default, peer)
        p_default = host_us(pstep_default, peer.sync, 1, rounds=20)
        p_default_steady = steady_us(pstep_default, peer.sync, steady_steps)
        p_default_swept = host_us(pstep_default, peer.sync, 1, rounds=20, steady=True, before=sweep)
    name = f"MLP step {'-'.join(map(str, sizes))} b{batch} AdamW"
    for how, hs, ps, pds in (("after idle", h_step, p_step, p_default),
                             (f"steady, {steady_steps} back to back", h_steady, p_steady, p_default_steady),
                             ("steady, each after a 32 MiB host cache sweep", h_swept, p_swept, p_default_swept)):
        h, p = hs / dispatches, ps / kernels if kernels else float("nan")
        rows.append({"what": f"host us per dispatch: {name}, {how} ({dispatches} dispatches; torch per kernel, "
                             f"{kernels}, foreach=False)", "hlx": h, "peer": p, "unit": "us", "peer_over_hlx": p / h,
                     "hlx_dispatches": dispatches, "peer_kernels": kernels, "timing": how})
        # The whole step's host time: the fair total when the two launch different numbers of kernels.
        rows.append({"what": f"host us per whole step: {name}, {how} (torch AdamW foreach=False, {kernels} kernels)",
                     "hlx": hs, "peer": ps, "unit": "us", "peer_over_hlx": ps / hs,
                     "hlx_dispatches": dispatches, "peer_kernels": kernels, "timing": how})
        rows.append({"what": f"host us per whole step: {name}, {how} (torch AdamW default, {kernels_default} kernels)",
                     "hlx": hs, "peer": pds, "unit": "us", "peer_over_hlx": pds / hs,
                     "hlx_dispatches": dispatches, "peer_kernels": kernels_default, "timing": how})

    # --- pipelined bandwidth: ten ops in flight, then one sync ---------------------------
    mib = [] if args.host_only else [4, 16] if args.quick else [64, 256, 1024]
    for m in mib:
        n = m * (1 << 20) // 4
        x, y = hv.randn(n), hv.randn(n)
        sx, sy = x.reshape(n // 1024, 1024), None
        px, py = peer.array(rng.standard_normal(n).astype(np.float32)), peer.array(rng.standard_normal(n).astype(np.float32))
        spx = px.reshape(n // 1024, 1024)
        w = hv.ones(1024)
        bias = hv.zeros(1024)
        pw, pbias = peer.array(np.ones(1024, np.float32)), peer.array(np.zeros(1024, np.float32))
        cases = [("add", lambda: x + y, lambda: px + py, 3),
                 ("sum", lambda: x.sum(), lambda: px.sum(), 1),
                 ("softmax", lambda: F.softmax(sx, -1), lambda: torch.softmax(spx, -1), 2),
                 ("layer_norm", lambda: F.layer_norm(sx, (1024,), w, bias),
                  lambda: torch.nn.functional.layer_norm(spx, (1024,), pw, pbias), 2)]
        for name, fn, pfn, passes in cases:
            pool = rt.memory.device_pool
            rt.synchronize()
            live = pool.stats().in_use
            results = [None]

            def ten(fn=fn):
                for _ in range(10):
                    results[0] = fn()
            ten()
            sync()
            blocks = pool.stats().new_blocks
            pool.reset_peak()
            t_h = median_seconds(ten, sync, 3) / 10
            new_blocks = pool.stats().new_blocks - blocks
            peak, peak_reserved = pool.stats().peak, pool.stats().peak_reserved
            t_p = median_seconds(lambda: [pfn() for _ in range(10)], peer.sync, 3) / 10 if torch is not None else float("nan")
            moved = passes * n * 4
            rows.append({"what": f"{name} {m} MiB, 10 in flight", "hlx": moved / t_h / 1e9,
                         "peer": moved / t_p / 1e9, "unit": "GB/s", "peer_over_hlx": t_p / t_h,
                         "hlx_over_peer_rate": t_p / t_h, "fraction_of_hbm": moved / t_h / hbm if hbm else None,
                         "live_bytes": live, "pool_peak_in_use": peak, "pool_peak_reserved": peak_reserved,
                         "new_blocks_after_first_round": new_blocks})
        del x, y, sx, sy, px, py, spx, results
        rt.synchronize()
        rt.memory.device_pool.trim()

    # --- time to the first op ---------------------------------------------------------------
    for cold in () if args.host_only else (True, False):
        r = first_op_seconds(cold)
        label = "empty shader cache" if cold else "warm shader cache"
        rows.append({"what": f"fresh process, {label}: first op", "hlx": r["first_op_s"] * 1e3, "peer": float("nan"),
                     "unit": "ms", "peer_over_hlx": float("nan"), **r})

    print(f"device: {info['device_name']} ({info['device_type']}), driver {info['driver']}; peer: {peer.name}")
    print(f"{'what':96} {'hlx':>10} {'peer':>10} {'unit':>5} {'peer/hlx':>9} {'hlx/peer':>9}")
    for r in rows:
        extra = ""
        if "pool_peak_reserved" in r:
            extra = (f"  live {r['live_bytes'] >> 20} MiB, peak in use {r['pool_peak_in_use'] >> 20} MiB, "
                     f"reserved {r['pool_peak_reserved'] >> 20} MiB, {r['new_blocks_after_first_round']} new blocks")
        print(f"{r['what']:96} {r['hlx']:10.2f} {r['peer']:10.2f} {r['unit']:>5} {r['peer_over_hlx']:9.2f} "
              f"{1 / r['peer_over_hlx'] if r['peer_over_hlx'] else float('nan'):9.2f}{extra}")
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": peer.name, "rows": rows}, f,
                  indent=2)
    print(f"saved {args.out}")
    return 0


def _torch_kernels(step, peer) -> int:
    """How many kernels (CUDA) or ops (CPU) one torch step launches, from its profiler."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CUDA] if peer.cuda else [ProfilerActivity.CPU]
    with profile(activities=acts) as prof:
        step()
        peer.sync()
    if peer.cuda:
        return max(1, sum(1 for e in prof.events() if e.device_type.name == "CUDA"))
    return max(1, sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None))


if __name__ == "__main__":
    raise SystemExit(main())
