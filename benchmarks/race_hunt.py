"""Hunts for missing barriers and memory reused too early: many small dependent ops recorded
without a sync (in-place writes, views, uploads into tensors still being read, temporaries
freed at once and their ranges poisoned by the next allocation), then every result checked
against numpy on the host. A GPU runs independent dispatches concurrently, so a missing or
misplaced barrier shows here as a wrong value; lavapipe runs them in order and cannot show it
(the suite's synchronization validation covers lavapipe instead).

Prints rounds, ops recorded and mismatches; saves JSON. Exit status 1 on any mismatch.

Run: python benchmarks/race_hunt.py [--rounds 200] [--out race_hunt.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F


def one_round(rng: np.random.Generator, n_ops: int) -> tuple[int, list[str]]:
    """Record ``n_ops`` random dependent ops on a few tensors, then compare with numpy."""
    rows, cols = int(rng.integers(1, 70)), int(rng.integers(1, 300))
    host = [rng.standard_normal((rows, cols)).astype(np.float32) for _ in range(3)]
    dev = [hv.tensor(h) for h in host]
    checks, problems = [], []
    for k in range(n_ops):
        i, j = (int(v) for v in rng.integers(0, 3, 2))
        kind = int(rng.integers(0, 8))
        if kind == 0:      # out of place, then the old tensor dropped: its range is free at once
            dev[i], host[i] = dev[i] * 0.5 + dev[j], host[i] * np.float32(0.5) + host[j]
        elif kind == 1:    # in place through a view (write after read of the old values)
            r = int(rng.integers(0, rows))
            dev[i][r] = dev[j][r] * 2.0
            host[i][r] = host[j][r] * np.float32(2.0)
        elif kind == 2:    # an upload into a tensor that pending ops still read
            fresh = rng.standard_normal((rows, cols)).astype(np.float32)
            dev[i].copy_(fresh)
            host[i] = fresh
        elif kind == 3:    # a reduction read later
            checks.append((f"op {k}: sum", dev[i].sum(axis=1), host[i].astype(np.float64).sum(axis=1)))
        elif kind == 4:    # softmax rows
            e = np.exp(host[i].astype(np.float64) - host[i].max(axis=1, keepdims=True))
            checks.append((f"op {k}: softmax", F.softmax(dev[i], -1), e / e.sum(axis=1, keepdims=True)))
        elif kind == 5:    # a matmul whose operand is overwritten right after
            checks.append((f"op {k}: matmul", dev[i] @ dev[j].T, host[i].astype(np.float64) @ host[j].T))
            dev[j].copy_(dev[j] + 1.0)
            host[j] = host[j] + np.float32(1.0)
        elif kind == 6:    # temporaries freed at once, poisoned by the next allocations
            t = dev[i] + 3.0
            checks.append((f"op {k}: reuse", t * 1.0, host[i].astype(np.float64) + 3.0))
            del t
            hv.tensor(np.full((rows, cols), np.nan, np.float32))
        else:              # transposed copy back (strided read, contiguous write)
            if rows == cols:
                dev[i] = dev[j].T.contiguous()
                host[i] = np.ascontiguousarray(host[j].T)
    for name, d, ref in checks:
        got = d.numpy().astype(np.float64)
        scale = max(1.0, float(np.abs(ref).max(initial=0.0)))
        if got.shape != ref.shape or not np.allclose(got, ref, rtol=1e-4, atol=1e-4 * scale, equal_nan=False):
            problems.append(name)
    for t, h in zip(dev, host):
        if not np.allclose(t.numpy(), h, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(h).max(initial=0.0)))):
            problems.append("final state")
    return n_ops, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--ops", type=int, default=60, help="ops recorded per round before the first read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="race_hunt.json")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    ops, bad = 0, []
    for r in range(args.rounds):
        n, problems = one_round(rng, args.ops)
        ops += n
        bad += [f"round {r}: {p}" for p in problems]
    seconds = time.perf_counter() - t0
    info = rt.ctx.info
    result = {"device": info["device_name"], "driver": info["driver"], "rounds": args.rounds, "ops": ops,
              "dispatches": rt.stream.dispatches, "barriers": rt.stream.barriers, "mismatches": len(bad),
              "first_mismatches": bad[:20], "seconds": seconds}
    print(f"device: {info['device_name']}; {args.rounds} rounds, {ops} ops ({rt.stream.dispatches} dispatches, "
          f"{rt.stream.barriers} barriers) in {seconds:.1f} s: {len(bad)} mismatches")
    for b in bad[:20]:
        print("  ", b)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
