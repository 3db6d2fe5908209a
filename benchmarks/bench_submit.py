"""When the stream submits early: an A/B of the early-submission threshold (``SUBMIT_BYTES``)
and the batches in flight (``MAX_IN_FLIGHT``, fixed when the runtime is made, so one value per
process), in one process with the thresholds alternated round by round, so a slow or fast spell
of the machine falls on every threshold alike. Rows: ten ops on 64 MiB tensors between syncs
(the bandwidth benchmark's ops), rate against PyTorch in the same run; the MLP step 784-1024-
1024-10 (batch 512, AdamW; it touches 127 MiB) host time after an idle device and steady (as
bench_runtime.py), and its wall time with 20 steps between syncs. Prints each round and the
median; saves JSON.

Run: python benchmarks/bench_submit.py [--in-flight 4] [--submit-mib 16,128,512] [--quick]
     [--out benchmarks/results/bench_submit.json]
(--quick: 4 MiB tensors and the small MLP, for lavapipe against torch on the CPU.)
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np

import hlx_vulkan.runtime.stream as stream_module

try:
    import torch
except ImportError:
    torch = None

OPS = ("add", "sum", "softmax", "layer_norm", "cross_entropy (C=1024)", "cross_entropy fwd+bwd (C=1024)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--in-flight", type=int, default=stream_module.MAX_IN_FLIGHT)
    parser.add_argument("--submit-mib", default="16,128,512")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default="benchmarks/results/bench_submit.json")
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("bench_submit needs torch (the peer)")
    stream_module.MAX_IN_FLIGHT = args.in_flight   # before the runtime (and its stream) is made
    import hlx_vulkan as hv
    import bench_bandwidth as bb
    from bench_runtime import host_us, mlp_step_hlx, steady_us
    from timing import median_seconds
    rt = hv.default_runtime()
    cuda = torch.cuda.is_available()
    peer_sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync = rt.synchronize
    rng = np.random.default_rng(0)
    mib = 4 if args.quick else 64
    cases = [c for c in bb.cases(mib << 18, rng, "cuda" if cuda else "cpu") if c[0] in OPS]
    sizes, batch = ((64, 256, 256, 10), 64) if args.quick else ((784, 1024, 1024, 10), 512)
    step = mlp_step_hlx(batch, sizes, rng)
    thresholds = [int(v) for v in args.submit_mib.split(",")]
    results = {t: {} for t in thresholds}
    for rnd in range(args.rounds):
        for t in thresholds:
            stream_module.SUBMIT_BYTES = t << 20
            row = results[t]
            for name, hfn, tfn, _ in cases:
                def ten_h(fn=hfn):
                    for _ in range(10):
                        fn()

                def ten_t(fn=tfn):
                    for _ in range(10):
                        fn()
                th = median_seconds(ten_h, sync, 5) / 10
                tp = median_seconds(ten_t, peer_sync, 5) / 10
                row.setdefault(f"{name} {mib} MiB: hlx/torch rate", []).append(tp / th)
            row.setdefault("MLP step host us, after idle", []).append(host_us(step, sync, 1, rounds=10))
            row.setdefault("MLP step host us, steady", []).append(steady_us(step, sync, 10))
            row.setdefault("MLP step wall ms, 20 per sync", []).append(median_seconds(step, sync, 3, inner=20) * 1e3)
            print(f"round {rnd + 1}, {t} MiB done", flush=True)
    print(f"device: {rt.ctx.info['device_name']}; peer torch {torch.__version__} on {'cuda' if cuda else 'cpu'}; "
          f"{args.in_flight} batches in flight; each round's value, then the median")
    for t, row in results.items():
        for what, values in row.items():
            print(f"submit at {t:5} MiB  {what:46} " + " ".join(f"{v:8.2f}" for v in values)
                  + f"   median {statistics.median(values):8.2f}")
    with open(args.out, "w") as f:
        json.dump({"device": rt.ctx.info["device_name"], "peer": f"torch {torch.__version__}",
                   "in_flight": args.in_flight, "rounds": args.rounds,
                   "results": {str(t): row for t, row in results.items()}}, f, indent=2)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
