"""What a submission costs, hlx against torch in the same run: for a graph replay (one or ten
adds), an eager add submitted at once and a plain eager add, at 1 KiB and 64 MiB, the host time
per call, the time per call with a sync after the lot (the rate), and a call's round trip (call
then sync, alone). Found the replay that waited for its own submission and the fence wait that
woke late (benchmarks/NOTES.md, sixth stop). Prints a table and saves JSON.

Run: python benchmarks/probe_submission.py [--out benchmarks/results/probe_submission.json]
($HLX_FENCE_SPIN_US=0 turns the fence poll off, for an A/B.)
"""

from __future__ import annotations

import argparse
import time

import hlx_vulkan as hv
from report import save_rows
from timing import capture_cuda_graph, median_seconds

try:
    import torch
except ImportError:
    torch = None


def per_call(fn, sync, n: int) -> tuple[float, float]:
    """(host seconds per call, seconds per call with the sync), the middle of three trials."""
    fn()
    sync()
    trials = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t1 = time.perf_counter()
        sync()
        trials.append(((t1 - t0) / n, (time.perf_counter() - t0) / n))
    return sorted(trials, key=lambda t: t[1])[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/probe_submission.json")
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("probe_submission needs torch (the peer)")
    rt = hv.default_runtime()
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    tsync = torch.cuda.synchronize if cuda else (lambda: None)
    rows = []

    def row(what, fn, sync, n):
        host, rate = per_call(fn, sync, n)
        r = {"what": what, "host_us": host * 1e6, "with_sync_us": rate * 1e6,
             "round_trip_us": median_seconds(fn, sync, 30) * 1e6}  # a call and its sync, alone
        rows.append(r)
        print(f"{what:42} {r['host_us']:10.1f} {r['with_sync_us']:10.1f} {r['round_trip_us']:10.1f}", flush=True)

    print(f"{'':42} {'host/call':>10} {'with sync':>10} {'round trip':>10}  (us)")
    for mib in (0, 64):
        n_el, size = ((mib << 18), f"{mib} MiB") if mib else (256, "1 KiB")
        reps = 200 if mib == 0 else 30
        x, y = hv.randn(n_el), hv.randn(n_el)
        tx, ty = torch.randn(n_el, device=dev), torch.randn(n_el, device=dev)
        for ops in (1, 10):
            with hv.capture() as graph:
                outs = [x + y for _ in range(ops)]
            row(f"hlx replay, {ops} add(s) of {size}", graph.replay, rt.synchronize, reps)
            graph.destroy()
            del outs
            if cuda:
                cg = capture_cuda_graph(lambda: [tx + ty for _ in range(ops)])
                row(f"torch graph, {ops} add(s) of {size}", cg.replay, tsync, reps)

        def eager_submit():
            z = x + y
            rt.stream.submit()
            return z
        row(f"hlx eager add + submit, {size}", eager_submit, rt.synchronize, reps)
        row(f"hlx eager add, {size}", lambda: x + y, rt.synchronize, reps)
        row(f"torch eager add, {size}", lambda: tx + ty, tsync, reps)
        rt.synchronize()
        rt.memory.device_pool.trim()
    save_rows(args.out, rt, f"torch {torch.__version__} on {dev}", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
