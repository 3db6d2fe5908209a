"""The bandwidth kernels beside PyTorch in the same run: add, sum, softmax and log_softmax
(forward, softmax backward), layer_norm forward and backward, cross_entropy (forward, forward
and backward) and an AdamW step, at 64 MiB, 256 MiB and 1 GiB of float32 input (rows of 1024
for the row ops), ten ops in flight then one sync. Prints a table (GB/s of the bytes each op
must move, the ratio to PyTorch, the fraction of the device's memory bandwidth) and saves JSON.

Run: python benchmarks/bench_bandwidth.py [--quick] [--replay] [--sizes 64,256] [--out benchmarks/results/bench_bandwidth.json]
(--quick: 4 and 16 MiB, for lavapipe against torch on the CPU. --replay adds the kernels' own rate:
the ten ops captured once and replayed, against a CUDA graph of torch's ten, so host time is out
of both sides; an op either side cannot capture gets no replay figure.)
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import hlx_vulkan as hv
from timing import capture_cuda_graph, cuda_graph_seconds, median_seconds, replay_seconds
from hlx_vulkan import optim
from hlx_vulkan.nn import functional as F
from hlx_vulkan.ops import layer_norm as ln
from hlx_vulkan.ops import softmax as sm

try:
    import torch
except ImportError:
    torch = None

HBM = {"H100": 3.35e12, "H200": 4.8e12}
ROW = 1024
IN_FLIGHT = 10
REPLAY_TARGET_S = 0.2



def cases(n: int, rng, dev):
    """(name, hlx call, torch call, bytes moved per call) for ``n`` float32 elements."""
    rows = n // ROW
    x, y, g = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    hx, hy, hg = hv.tensor(x), hv.tensor(y), hv.tensor(g)
    tx, ty, tg = (torch.from_numpy(a).to(dev) for a in (x, y, g))
    hx2, hg2 = hx.reshape(rows, ROW), hg.reshape(rows, ROW)
    tx2, tg2 = tx.reshape(rows, ROW), tg.reshape(rows, ROW)
    hw, hb = hv.tensor(rng.standard_normal(ROW).astype(np.float32)), hv.zeros(ROW)
    tw, tb = torch.ones(ROW, device=dev), torch.zeros(ROW, device=dev)
    hsm, tsm = F.softmax(hx2, -1), torch.softmax(tx2, -1)
    stats = hv.empty((rows, 2))
    ln._forward(hx2, hw, hb, stats, 1e-5)
    _, tmean, trstd = torch.ops.aten.native_layer_norm(tx2, [ROW], tw, tb, 1e-5)
    target = rng.integers(0, ROW, rows)
    ht, tt = hv.tensor(target), torch.from_numpy(target).to(dev)
    hl = hv.tensor(x.reshape(rows, ROW), requires_grad=True)
    tl = tx2.clone().requires_grad_(True)
    hp = hv.tensor(x, requires_grad=True)
    hp.grad = hg
    hopt = optim.AdamW([hp], lr=1e-3)
    tp = tx.clone().requires_grad_(True)
    tp.grad = tg.clone()
    topt = torch.optim.AdamW([tp], lr=1e-3)

    def h_ce_step():
        hl.grad = None
        F.cross_entropy(hl, ht).backward()

    def t_ce_step():
        tl.grad = None
        torch.nn.functional.cross_entropy(tl, tt).backward()

    b = 4 * n
    return [
        ("add", lambda: hx + hy, lambda: tx + ty, 3 * b),
        ("sum", lambda: hx.sum(), lambda: tx.sum(), b),
        ("softmax", lambda: F.softmax(hx2, -1), lambda: torch.softmax(tx2, -1), 2 * b),
        ("log_softmax", lambda: F.log_softmax(hx2, -1), lambda: torch.log_softmax(tx2, -1), 2 * b),
        ("softmax backward", lambda: sm._launch(hsm, -1, False, grad=hg2),
         lambda: torch._softmax_backward_data(tg2, tsm, -1, torch.float32), 3 * b),
        ("layer_norm", lambda: F.layer_norm(hx2, (ROW,), hw, hb),
         lambda: torch.nn.functional.layer_norm(tx2, (ROW,), tw, tb), 2 * b),
        ("layer_norm backward", lambda: ln._backward(hx2, hg2, hw, stats, True),
         lambda: torch.ops.aten.native_layer_norm_backward(tg2, tx2, [ROW], tmean, trstd, tw, tb,
                                                           [True, True, True]), 3 * b),
        ("cross_entropy (C=1024)", lambda: F.cross_entropy(hx2, ht),
         lambda: torch.nn.functional.cross_entropy(tx2, tt), b),
        ("cross_entropy fwd+bwd (C=1024)", h_ce_step, t_ce_step, 3 * b),
        ("AdamW step", hopt.step, topt.step, 7 * b),
    ]


def replayed(ten_h, ten_t, rt, cuda: bool, moved: int, hbm) -> dict:
    """The ten ops' rate replayed from a graph on each side (host time out of both): hlx through
    hv.capture, torch through a CUDA graph (on a CPU peer, torch's eager time stands in)."""
    out = {}
    try:
        with hv.capture() as graph:
            ten_h()
        t_h = replay_seconds(graph, rt.synchronize, IN_FLIGHT, REPLAY_TARGET_S)
        graph.destroy()
    except hv.HlxError as e:
        print(f"  hlx cannot capture it: {e}")
        return out
    try:
        if cuda:
            t_p = cuda_graph_seconds(capture_cuda_graph(ten_t), IN_FLIGHT, REPLAY_TARGET_S)
        else:
            t_p = median_seconds(ten_t, lambda: None, 3) / IN_FLIGHT
    except RuntimeError as e:  # torch's optimizer step without capturable=True, for one
        print(f"  torch cannot capture it: {str(e).splitlines()[0]}")
        return {"hlx_replay_s": t_h, "hlx_replay_gbs": moved / t_h / 1e9}
    return {"hlx_replay_s": t_h, "torch_replay_s": t_p, "hlx_replay_gbs": moved / t_h / 1e9,
            "torch_replay_gbs": moved / t_p / 1e9, "hlx_over_torch_replay": t_p / t_h,
            "hlx_replay_fraction_of_hbm": moved / t_h / hbm if hbm else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 and 16 MiB (for a CPU-only machine)")
    parser.add_argument("--out", default="benchmarks/results/bench_bandwidth.json")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--replay", action="store_true", help="also time the ten ops replayed from graphs")
    parser.add_argument("--sizes", default=None, help="MiB sizes, comma-separated (default 64,256,1024)")
    args = parser.parse_args(argv)
    if torch is None:
        raise SystemExit("bench_bandwidth needs torch (the peer)")
    rt = hv.default_runtime()
    info = rt.ctx.info
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    peer_sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.backends.cuda.matmul.allow_tf32 = False
    hbm = next((v for k, v in HBM.items() if k in info["device_name"]), None)
    rng = np.random.default_rng(0)
    rows = []
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else ([4, 16] if args.quick else [64, 256, 1024])
    for mib in sizes:
        n = mib * (1 << 20) // 4
        for name, hfn, tfn, moved in cases(n, rng, dev):
            def ten_h(fn=hfn):
                for _ in range(IN_FLIGHT):
                    fn()

            def ten_t(fn=tfn):
                for _ in range(IN_FLIGHT):
                    fn()
            t_h = median_seconds(ten_h, rt.synchronize, args.rounds) / IN_FLIGHT
            t_p = median_seconds(ten_t, peer_sync, args.rounds) / IN_FLIGHT
            row = {"what": f"{name} {mib} MiB", "op": name, "mib": mib, "bytes": moved, "hlx_s": t_h, "torch_s": t_p,
                   "hlx_gbs": moved / t_h / 1e9, "torch_gbs": moved / t_p / 1e9, "hlx_over_torch_rate": t_p / t_h,
                   "hlx_fraction_of_hbm": moved / t_h / hbm if hbm else None,
                   "torch_fraction_of_hbm": moved / t_p / hbm if hbm else None}
            if args.replay:
                row.update(replayed(ten_h, ten_t, rt, cuda, moved, hbm))
            rows.append(row)
            frac = f"{row['hlx_fraction_of_hbm']:.2f}" if hbm else "-"
            rep = (f"   replayed {row['hlx_replay_gbs']:9.1f} {row['torch_replay_gbs']:9.1f} "
                   f"{row['hlx_over_torch_replay']:7.2f}" if row.get("hlx_over_torch_replay") else "")
            print(f"{row['what']:42} {row['hlx_gbs']:9.1f} {row['torch_gbs']:9.1f} {row['hlx_over_torch_rate']:7.2f} "
                  f"{frac:>6}{rep}", flush=True)
        rt.synchronize()
        rt.memory.device_pool.trim()
        if cuda:
            torch.cuda.empty_cache()
    print(f"device: {info['device_name']}, driver {info['driver']}; peer: torch {torch.__version__} on {dev}; "
          f"{IN_FLIGHT} ops in flight per sync; columns: hlx GB/s, torch GB/s, hlx/torch rate, fraction of HBM")
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": f"torch-{dev}",
                   "hbm_bytes_per_s": hbm, "in_flight": IN_FLIGHT, "rows": rows}, f, indent=2)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
