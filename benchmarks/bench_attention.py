"""Attention beside PyTorch in the same run: the fused ``F.scaled_dot_product_attention`` (forward,
and forward + backward) at sequence 512-4096, 8-16 heads, head dim 64 and 128, fp16 and fp32,
causal and not, against ``torch.nn.functional.scaled_dot_product_attention``; and one training
step of a transformer block (``TransformerEncoderLayer``, pre-norm, causal, AdamW), hlx eager and
replayed (``hv.capture``) against torch eager and a CUDA graph.

Per row: milliseconds, torch time / hlx time (target >= 0.3 for attention), achieved TFLOP/s and
the fraction of the H100's peak for the dtype (989 TFLOP/s fp16 dense, 67 fp32) and of its
3.35 TB/s for the bytes the fused kernel must move (inputs and outputs once). FLOPs: 4*B*H*L*S*D
forward (half of it causal), 2.5 times that again backward. The outputs are checked against
torch's (relative error in the table).

Run: python benchmarks/bench_attention.py [--quick] [--out benchmarks/results/bench_attention.json]
(--quick: small shapes, for lavapipe against torch on the CPU.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlx_vulkan as hv  # noqa: E402
from hlx_vulkan import nn, optim  # noqa: E402
from hlx_vulkan.nn import functional as F  # noqa: E402
from timing import capture_cuda_graph, mean_seconds  # noqa: E402

try:
    import torch
except ImportError:
    torch = None

PEAK_TFLOPS = {"float16": 989.0, "bfloat16": 989.0, "float32": 67.0}
PEAK_TBPS = 3.35

FULL = [  # (dtype, B, H, L, D); S = L
    ("float16", 4, 16, 512, 64), ("float16", 2, 16, 1024, 64), ("float16", 1, 16, 2048, 64),
    ("float16", 1, 8, 4096, 64), ("float16", 1, 16, 2048, 128), ("float16", 1, 8, 4096, 128),
    ("float32", 2, 8, 1024, 64), ("float32", 1, 8, 4096, 64), ("float32", 1, 16, 2048, 128),
]
QUICK = [("float32", 1, 2, 128, 32), ("float16", 1, 2, 256, 64), ("float32", 1, 2, 256, 128)]


def _torch_dev():
    return "cuda" if torch is not None and torch.cuda.is_available() else "cpu"


def _sync_torch():
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def bench_sdpa(cfg, causal: bool, args, rows):
    dtype, B, H, L, D = cfg
    rng = np.random.default_rng(0)
    npdt = hv.memory.dtype_of(dtype).numpy
    xs = [rng.standard_normal((B, H, L, D)).astype(np.float32) for _ in range(3)]
    g = rng.standard_normal((B, H, L, D)).astype(np.float32)
    rt = hv.default_runtime()
    hq, hk, hvv = (hv.tensor(x.astype(npdt), requires_grad=True) for x in xs)
    hg = hv.tensor(g.astype(npdt))
    fwd_flops = 4.0 * B * H * L * L * D * (0.5 if causal else 1.0)
    item = np.dtype(npdt).itemsize if npdt is not None else 2
    io_bytes = 4 * B * H * L * D * item

    def hlx_fwd():
        with hv.no_grad():
            return F.scaled_dot_product_attention(hq, hk, hvv, is_causal=causal)

    def hlx_fwd_bwd():
        hq.grad = hk.grad = hvv.grad = None
        F.scaled_dot_product_attention(hq, hk, hvv, is_causal=causal).backward(hg)

    out = hlx_fwd().to(hv.float32).numpy()
    times = {"fwd": mean_seconds(hlx_fwd, rt.synchronize, args.warmup, args.reps),
             "fwd+bwd": mean_seconds(hlx_fwd_bwd, rt.synchronize, args.warmup, args.reps)}
    peer, err = {}, None
    if torch is not None:
        dev = _torch_dev()
        tdt = getattr(torch, dtype)
        tq, tk, tv = (torch.tensor(x, device=dev).to(tdt).requires_grad_() for x in xs)
        tg = torch.tensor(g, device=dev).to(tdt)

        def t_fwd():
            with torch.no_grad():
                return torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal)

        def t_fwd_bwd():
            tq.grad = tk.grad = tv.grad = None
            torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=causal).backward(tg)

        ref = t_fwd().float().cpu().numpy()
        err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
        peer = {"fwd": mean_seconds(t_fwd, _sync_torch, args.warmup, args.reps),
                "fwd+bwd": mean_seconds(t_fwd_bwd, _sync_torch, args.warmup, args.reps)}
    for mode, t in times.items():
        flops = fwd_flops * (3.5 if mode == "fwd+bwd" else 1.0)
        nbytes = io_bytes * (2.0 if mode == "fwd+bwd" else 1.0)
        tflops = flops / t / 1e12
        rows.append({"what": "sdpa", "dtype": dtype, "B": B, "H": H, "L": L, "D": D, "causal": causal, "mode": mode,
                     "hlx_ms": 1e3 * t, "torch_ms": 1e3 * peer[mode] if mode in peer else None,
                     "torch_over_hlx": peer[mode] / t if mode in peer else None, "hlx_tflops": tflops,
                     "frac_peak_flops": tflops / PEAK_TFLOPS[dtype], "frac_peak_bw": nbytes / t / 1e12 / PEAK_TBPS,
                     "rel_err_vs_torch": err})


def bench_block(args, rows):
    d, H, ff, B, L = (64, 4, 256, 2, 32) if args.quick else (512, 8, 2048, 8, 512)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((B, L, d)).astype(np.float32)
    y_np = rng.standard_normal((B, L, d)).astype(np.float32)
    rt = hv.default_runtime()
    hv.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d, H, dim_feedforward=ff, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
    init = {k: v.numpy() for k, v in layer.state_dict().items()}
    opt = optim.AdamW(layer.parameters(), lr=1e-4)
    x, y = hv.tensor(x_np), hv.tensor(y_np)
    mask = nn.generate_square_subsequent_mask(L)
    holder = {}

    def step():
        opt.zero_grad()
        loss = F.mse_loss(layer(x, src_mask=mask, is_causal=True), y)
        loss.backward()
        opt.step()
        holder["loss"] = loss

    step()
    rt.synchronize()
    eager = mean_seconds(step, rt.synchronize, args.warmup, args.reps)
    with hv.capture() as graph:
        step()
    replay = mean_seconds(graph.replay, rt.synchronize, args.warmup, args.reps)
    graph.destroy()
    peer = {}
    if torch is not None:
        dev = _torch_dev()
        cuda = dev == "cuda"
        tl = torch.nn.TransformerEncoderLayer(d, H, ff, 0.0, "gelu", batch_first=True, norm_first=True).to(dev)
        tl.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
        topt = torch.optim.AdamW(tl.parameters(), lr=1e-4, capturable=cuda)
        tx, ty = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
        tmask = torch.nn.Transformer.generate_square_subsequent_mask(L, device=dev)

        def tstep():
            topt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(tl(tx, src_mask=tmask, is_causal=True), ty)
            loss.backward()
            topt.step()

        tstep()
        _sync_torch()
        peer["torch eager"] = mean_seconds(tstep, _sync_torch, args.warmup, args.reps)
        if cuda:
            g = capture_cuda_graph(tstep)
            peer["torch CUDA graph"] = mean_seconds(g.replay, _sync_torch, args.warmup, args.reps)
    # FLOPs of one step: 6 per parameter per token, plus attention's 3.5 * 4*B*H*L*L*(d/H) / 2 (causal)
    params = 4 * d * d + 2 * d * ff
    flops = 6.0 * params * B * L + 3.5 * 2.0 * B * L * L * d
    base = peer.get("torch eager")
    for mode, t in [("hlx eager", eager), ("hlx replay", replay)] + list(peer.items()):
        rows.append({"what": "block step", "dtype": "float32", "B": B, "L": L, "d": d, "H": H, "ff": ff, "mode": mode,
                     "ms": 1e3 * t, "torch_eager_over_this": base / t if base else None,
                     "tflops": flops / t / 1e12, "frac_peak_flops": flops / t / 1e12 / PEAK_TFLOPS["float32"]})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (lavapipe, torch on the CPU)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/bench_attention.json")
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    rows = []
    for cfg in QUICK if args.quick else FULL:
        for causal in (False, True):
            bench_sdpa(cfg, causal, args, rows)
    bench_block(args, rows)
    info = hv.default_runtime().ctx.info
    peer = "none" if torch is None else f"torch {torch.__version__} on {_torch_dev()}"
    print(f"attention on {info['device_name']} ({info['driver']}), peer {peer}")
    print(f"{'dtype':<9}{'B':>3}{'H':>4}{'L':>6}{'D':>5} {'causal':<7}{'mode':<9}{'hlx ms':>10}{'torch ms':>10}"
          f"{'torch/hlx':>10}{'TFLOP/s':>9}{'%peak':>7}{'%BW':>7}{'rel err':>9}")
    for r in rows:
        if r["what"] != "sdpa":
            continue
        tm = f"{r['torch_ms']:.3f}" if r["torch_ms"] is not None else "-"
        ratio = f"{r['torch_over_hlx']:.3f}" if r["torch_over_hlx"] is not None else "-"
        err = f"{r['rel_err_vs_torch']:.1e}" if r["rel_err_vs_torch"] is not None else "-"
        print(f"{r['dtype']:<9}{r['B']:>3}{r['H']:>4}{r['L']:>6}{r['D']:>5} {str(r['causal']):<7}{r['mode']:<9}"
              f"{r['hlx_ms']:>10.3f}{tm:>10}{ratio:>10}{r['hlx_tflops']:>9.3f}{100 * r['frac_peak_flops']:>7.2f}"
              f"{100 * r['frac_peak_bw']:>7.2f}{err:>9}")
    block = [r for r in rows if r["what"] == "block step"]
    b = block[0]
    print(f"\ntransformer block training step (d={b['d']}, heads {b['H']}, ff {b['ff']}, batch {b['B']}, seq {b['L']}, "
          "pre-norm, causal, AdamW, float32)")
    print(f"{'mode':<20}{'ms/step':>10}{'torch eager/this':>18}{'TFLOP/s':>9}{'%peak':>7}")
    for r in block:
        ratio = f"{r['torch_eager_over_this']:.3f}" if r["torch_eager_over_this"] is not None else "-"
        print(f"{r['mode']:<20}{r['ms']:>10.3f}{ratio:>18}{r['tflops']:>9.4f}{100 * r['frac_peak_flops']:>7.3f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": peer, "quick": args.quick,
                   "rows": rows}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
