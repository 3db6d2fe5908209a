"""Soak: many allocate/free cycles, training steps and replays in one process, watching that
nothing grows: live Vulkan objects by type, the pools' reserved, cached and in-use bytes, the
kernels' descriptor pools, and the process's resident memory, sampled at intervals.

Three phases on the default device, each with a captured graph alive throughout (so eager work
runs beside it, as issue 14 asks):

1. ``--cycles`` allocate/free cycles: a tensor of a size drawn from 1 KiB to 8 MiB, filled from
   the host, an op on it, freed; every 97th cycle reads a device index out of range and checks
   that the sync raises DeviceIndexError and the next one is clean; every 50th replays the graph.
2. ``--steps`` eager training steps of an MLP with an embedding, dropout and cross-entropy
   (AdamW), fed fresh batches of a learnable task; the loss is read every 100 steps.
3. ``--replays`` replays of the same step captured, fed by ``copy_`` before each.

A sample is taken every ``--every`` iterations of each phase. The summary compares the last
sample of each phase with the first one after its warm-up. No assertions: a script that says
what it saw. Run: python benchmarks/soak.py [--cycles N --steps N --replays N --every N --out soak.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import errors, nn, optim
from hlx_vulkan.nn import functional as F
from hlx_vulkan.vk import live_objects


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sample(rt, phase: str, i: int, t0: float) -> dict:
    gc.collect()
    dev, host = rt.memory.device_pool.stats(), rt.memory.host_pool.stats()
    objects = live_objects()
    return {
        "phase": phase, "iteration": i, "elapsed_s": round(time.perf_counter() - t0, 3),
        "live_objects": objects, "live_objects_total": sum(objects.values()),
        "device_pool": {"reserved": dev.reserved, "in_use": dev.in_use, "cached": dev.cached, "blocks": dev.blocks,
                        "new_blocks": dev.new_blocks},
        "host_pool": {"reserved": host.reserved, "in_use": host.in_use, "cached": host.cached, "blocks": host.blocks},
        "descriptor_pools": sum(k.descriptor_pools for k in rt.kernels.kernels()),
        "cached_sets": sum(k.cached_sets for k in rt.kernels.kernels()),
        "launch_plans": len(rt.plans),
        "kernels": len(rt.kernels.kernels()),
        "rss_mib": round(rss_bytes() / 2**20, 1),
    }


def show(s: dict) -> None:
    d = s["device_pool"]
    print(f"{s['phase']:>8} {s['iteration']:>6} {s['elapsed_s']:>8.1f}s  objects {s['live_objects_total']:>5}  "
          f"device reserved {d['reserved'] / 2**20:8.1f} MiB in use {d['in_use'] / 2**20:7.1f} cached "
          f"{d['cached'] / 2**20:7.1f} blocks {d['blocks']:>3}  descriptor pools {s['descriptor_pools']:>3}  "
          f"RSS {s['rss_mib']:>7.1f} MiB", flush=True)


def phase_alloc(rt, cycles: int, every: int, t0: float, samples: list) -> dict:
    rng = np.random.default_rng(0)
    sizes = (2 ** rng.uniform(8, 21, cycles)).astype(int)       # 256 to 2M floats: 1 KiB to 8 MiB
    x = hv.ones(1024)
    with hv.capture() as graph:                                 # alive through the phase
        y = (x * 2.0).sum()
    table = hv.tensor(np.arange(64, dtype=np.float32).reshape(16, 4))
    raised = missed = 0
    for i in range(cycles):
        n = int(sizes[i])
        t = hv.tensor(np.full(n, float(i % 251), np.float32))
        u = t * 2.0 + 1.0
        if i % 10 == 0 and u[:1].item() != 2.0 * (i % 251) + 1.0:
            raise AssertionError(f"cycle {i}: wrong value")
        t.buf.free()                                            # freed explicitly while u's op may be pending
        del t, u
        if i % 50 == 0:
            graph.replay()
        if i % 97 == 0:
            bad = hv.index_select(table, 0, hv.tensor(np.array([1, 16 + i % 5], np.int32)))
            try:
                bad.numpy()
                missed += 1
            except errors.DeviceIndexError:
                raised += 1
            hv.synchronize()                                    # clean again
        if i % every == 0 or i == cycles - 1:
            samples.append(sample(rt, "alloc", i, t0))
            show(samples[-1])
    ok = y.item() == 2048.0
    graph.destroy()
    return {"index_errors_raised": raised, "index_errors_missed": missed, "graph_result_ok": ok}


def make_model(seed: int):
    hv.manual_seed(seed)
    emb = nn.Embedding(32, 16)
    model = nn.Sequential(nn.Linear(16 * 8, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    opt = optim.AdamW(list(emb.parameters()) + list(model.parameters()), lr=1e-3)

    def step(tokens, labels):
        opt.zero_grad()
        h = emb(tokens).reshape(tokens.shape[0], 16 * 8)
        loss = F.cross_entropy(model(h), labels)
        loss.backward()
        opt.step()
        return loss

    return step


def batches(seed: int):
    rng = np.random.default_rng(seed)
    while True:
        tokens = rng.integers(0, 32, (64, 8)).astype(np.int32)
        yield tokens, (tokens[:, 0] + tokens[:, 1]) % 10        # learnable: the loss should fall


def phase_train(rt, steps: int, every: int, t0: float, samples: list) -> dict:
    step, feed = make_model(1), batches(1)
    tokens, labels = hv.zeros(64, 8, dtype="int32"), hv.zeros(64, dtype="int32")
    x = hv.ones(1024)
    with hv.capture() as graph:                                 # alive through the phase
        (x * 3.0).sum()
    losses = []
    for i in range(steps):
        bt, bl = next(feed)
        with hv.no_grad():
            tokens.copy_(bt)
            labels.copy_(bl)
        loss = step(tokens, labels)
        if i % 100 == 0 or i == steps - 1:
            losses.append(round(loss.item(), 4))
        if i % every == 0 or i == steps - 1:
            samples.append(sample(rt, "train", i, t0))
            show(samples[-1])
    graph.destroy()
    return {"losses_every_100": losses}


def phase_replay(rt, replays: int, every: int, t0: float, samples: list) -> dict:
    step, feed = make_model(2), batches(2)
    tokens, labels = hv.zeros(64, 8, dtype="int32"), hv.zeros(64, dtype="int32")
    bt, bl = next(feed)
    with hv.no_grad():
        tokens.copy_(bt)
        labels.copy_(bl)
    with hv.capture() as graph:
        loss = step(tokens, labels)
    losses = []
    for i in range(replays):
        bt, bl = next(feed)
        with hv.no_grad():
            tokens.copy_(bt)
            labels.copy_(bl)
        graph.replay()
        if i % 100 == 0 or i == replays - 1:
            losses.append(round(loss.item(), 4))
        if i % every == 0 or i == replays - 1:
            samples.append(sample(rt, "replay", i, t0))
            show(samples[-1])
    graph.destroy()
    return {"losses_every_100": losses}


def growth(samples: list, phase: str) -> dict:
    """The last sample of ``phase`` against its second (the first is taken before the warm-up)."""
    rows = [s for s in samples if s["phase"] == phase]
    if len(rows) < 3:
        return {}
    a, b = rows[1], rows[-1]
    kinds = set(a["live_objects"]) | set(b["live_objects"])
    return {
        "from_iteration": a["iteration"], "to_iteration": b["iteration"],
        "live_objects": {k: b["live_objects"].get(k, 0) - a["live_objects"].get(k, 0) for k in sorted(kinds)
                         if b["live_objects"].get(k, 0) != a["live_objects"].get(k, 0)},
        "device_reserved_bytes": b["device_pool"]["reserved"] - a["device_pool"]["reserved"],
        "device_in_use_bytes": b["device_pool"]["in_use"] - a["device_pool"]["in_use"],
        "host_reserved_bytes": b["host_pool"]["reserved"] - a["host_pool"]["reserved"],
        "descriptor_pools": b["descriptor_pools"] - a["descriptor_pools"],
        "rss_mib": round(b["rss_mib"] - a["rss_mib"], 1),
        "rss_mib_max": max(s["rss_mib"] for s in rows[1:]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=2_000)
    ap.add_argument("--replays", type=int, default=2_000)
    ap.add_argument("--every", type=int, default=500)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rt = hv.default_runtime()
    t0 = time.perf_counter()
    samples: list = []
    samples.append(sample(rt, "start", 0, t0))
    show(samples[-1])
    results = {
        "alloc": phase_alloc(rt, args.cycles, args.every, t0, samples),
        "train": phase_train(rt, args.steps, args.every, t0, samples),
        "replay": phase_replay(rt, args.replays, args.every, t0, samples),
    }
    rt.synchronize()
    samples.append(sample(rt, "end", 0, t0))
    show(samples[-1])
    summary = {phase: growth(samples, phase) for phase in ("alloc", "train", "replay")}
    out = {
        "device": rt.ctx.info["device_name"], "driver": rt.ctx.info["driver"], "python": platform.python_version(),
        "args": vars(args), "total_s": round(time.perf_counter() - t0, 1), "results": results,
        "growth": summary, "samples": samples,
    }
    print(json.dumps({"results": results, "growth": summary}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
