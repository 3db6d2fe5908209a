"""Where an op's time goes beside torch's, replayed on both sides (host time out): the device's
cost of a dependent dispatch (a chain of 100 tiny adds, a barrier each) against independent
ones and torch's kernel boundary; the hazard barrier's stage masks; 64 and 256 MiB add, softmax
and sum with outputs kept (no barrier) or a barrier after each; the flat sum's workgroup count
and one or two dispatches; the MLP's 512x1024x1024 product with and without barriers. Prints a
table and saves JSON. (The sixth stop's first run of it found the replay that waited for itself:
benchmarks/NOTES.md.)

Run: python benchmarks/probe_dispatch_gaps.py [--sizes 64,256] [--out benchmarks/results/probe_dispatch_gaps.json]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import vulkan as vkb

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import reduce_flat
from hlx_vulkan.vk import record
from report import save_rows
from timing import capture_cuda_graph, cuda_graph_seconds, replay_seconds

try:
    import torch
except ImportError:
    torch = None

def set_barrier_masks(mode: str) -> None:
    """The C recorder's hazard barrier: "full" (compute and transfer, the library's), "compute"
    (compute stages and shader accesses only) or "exec" (no memory barrier: timing only)."""
    compute, transfer = vkb.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, vkb.VK_PIPELINE_STAGE_TRANSFER_BIT
    write, read = vkb.VK_ACCESS_SHADER_WRITE_BIT, vkb.VK_ACCESS_SHADER_READ_BIT
    masks = {"full": (compute | transfer, write | vkb.VK_ACCESS_TRANSFER_WRITE_BIT,
                      write | read | vkb.VK_ACCESS_TRANSFER_WRITE_BIT | vkb.VK_ACCESS_TRANSFER_READ_BIT),
             "compute": (compute, write, write | read), "exec": (compute, 0, 0)}[mode]
    record._NATIVE.init(*record.native_functions(), *masks)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,256", help="MiB, comma-separated")
    parser.add_argument("--out", default="benchmarks/results/probe_dispatch_gaps.json")
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("probe_dispatch_gaps needs torch (the peer)")
    rt = hv.default_runtime()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    rows = []

    def hlx_replay(fn, reps):
        before = rt.stream.barriers
        with hv.capture() as graph:
            keep = fn()
        barriers = rt.stream.barriers - before
        seconds = replay_seconds(graph, rt.synchronize, reps, 0.3)
        graph.destroy()
        del keep
        rt.synchronize()
        return seconds, barriers

    def torch_replay(fn, reps):
        if not cuda:  # a smoke test on a CPU machine: torch eager stands in
            fn()
            t0 = time.perf_counter()
            fn()
            return (time.perf_counter() - t0) / reps
        return cuda_graph_seconds(capture_cuda_graph(fn), reps, 0.3)

    def show(what, seconds, barriers, peer):
        rows.append({"what": what, "hlx_us": seconds * 1e6, "barriers": barriers, "torch_us": peer * 1e6})
        print(f"{what:58} {seconds * 1e6:9.2f} us  barriers {barriers:3}  torch {peer * 1e6:9.2f} us  "
              f"hlx/torch time {seconds / peer:5.2f}", flush=True)

    n = 100
    x, y = hv.randn(256), hv.randn(256)
    tx, ty = torch.randn(256, device=dev), torch.randn(256, device=dev)

    def chain(a, b):
        z = a
        for _ in range(n):
            z = z + b
        return z
    peer = torch_replay(lambda: chain(tx, ty), n)
    for mode in ("full", "compute", "exec") if record.NATIVE else ("full",):
        if record.NATIVE:
            set_barrier_masks(mode)
        show(f"tiny add, dependent chain, barrier {mode}", *hlx_replay(lambda: chain(x, y), n), peer)
        show(f"tiny add, independent, barrier {mode}", *hlx_replay(lambda: [x + y for _ in range(n)], n), peer)
    if record.NATIVE:
        set_barrier_masks("full")

    for mib in (int(v) for v in args.sizes.split(",")):
        count = mib << 18
        data = np.random.default_rng(0).standard_normal(count).astype(np.float32)
        hx, hy = hv.tensor(data), hv.tensor(data[::-1].copy())
        tx2, ty2 = torch.from_numpy(data).to(dev), torch.from_numpy(data[::-1].copy()).to(dev)
        hrows, trows = hx.reshape(count // 1024, 1024), tx2.reshape(count // 1024, 1024)

        def with_barriers(fn):
            outs = []
            for _ in range(10):
                outs.append(fn())
                rt.stream.barrier()
            return outs
        for name, hfn, tfn in (("add", lambda: hx + hy, lambda: tx2 + ty2),
                               ("softmax", lambda: F.softmax(hrows, -1), lambda: torch.softmax(trows, -1))):
            peer = torch_replay(lambda: [tfn() for _ in range(10)][-1], 10)
            show(f"{name} {mib} MiB, outputs kept", *hlx_replay(lambda: [hfn() for _ in range(10)], 10), peer)
            show(f"{name} {mib} MiB, a barrier after each", *hlx_replay(lambda: with_barriers(hfn), 10), peer)
        peer = torch_replay(lambda: [tx2.sum() for _ in range(10)][-1], 10)
        for groups in (1024, 2048, 4096):
            reduce_flat.GROUPS = groups
            for key in [k for k in rt.plans if isinstance(k, tuple) and k and k[0] == "reduce_flat"]:
                del rt.plans[key]
            for single in (True, False):
                reduce_flat.SINGLE_PASS, reduce_flat.SINGLE_PASS_MAX = single, 1 << 31
                show(f"sum {mib} MiB, GROUPS {groups}, {'one dispatch' if single else 'two dispatches'}",
                     *hlx_replay(lambda: [hx.sum() for _ in range(10)], 10), peer)
        reduce_flat.GROUPS, reduce_flat.SINGLE_PASS, reduce_flat.SINGLE_PASS_MAX = 2048, True, 1 << 22
        for key in [k for k in rt.plans if isinstance(k, tuple) and k and k[0] == "reduce_flat"]:
            del rt.plans[key]
        rt.synchronize()
        rt.memory.device_pool.trim()

    torch.backends.cuda.matmul.allow_tf32 = False
    rng = np.random.default_rng(1)
    a_np, w_np = rng.standard_normal((512, 1024)).astype(np.float32), rng.standard_normal((1024, 1024)).astype(np.float32)
    for dt, tdt in ((hv.float16, torch.float16), (hv.float32, torch.float32)):
        ha, hw = hv.tensor(a_np).to(dt), hv.tensor(w_np).to(dt)
        ta, tw = torch.from_numpy(a_np).to(dev).to(tdt), torch.from_numpy(w_np).to(dev).to(tdt)
        peer = torch_replay(lambda: [ta @ tw.T for _ in range(10)][-1], 10)

        def barred():
            outs = []
            for _ in range(10):
                outs.append(ha @ hw.T)
                rt.stream.barrier()
            return outs
        show(f"matmul {dt.name} 512x1024x1024, outputs kept", *hlx_replay(lambda: [ha @ hw.T for _ in range(10)], 10),
             peer)
        show(f"matmul {dt.name} 512x1024x1024, a barrier after each", *hlx_replay(barred, 10), peer)
    save_rows(args.out, rt, f"torch {torch.__version__} on {dev}", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
