"""The cost of strict mode: one training step in strict mode against the default mode, beside
PyTorch (CUDA where there is a GPU, else CPU) in the same run.

Strict mode (hlx_vulkan/strict_mode.py) computes division, exp, log, sqrt, tanh, ... in software,
flushes denormals in integer instructions after every float add and multiply, and never uses
cooperative matrices. Target: strict at most 3x the default step on the H100.

Steps are registered in STEPS by name: a function (args) -> (hlx step, torch step or None,
FLOPs per step): the MLP 784-H-H-10 (batch 512), the digits CNN of training/cnn.py (batch 128,
8x8 images) and training/transformer.py's TinyGPT (d_model 256, 4 heads, 4 layers, 128 tokens,
batch 32), each with AdamW and cross-entropy, and the same model in PyTorch beside it.

Prints a table (time per step, eager and replayed from a capture, strict / default, strict TFLOP/s and its fraction of the H100's
67 TFLOP/s fp32) and saves JSON under benchmarks/results/.

The row "matmul" times one strict product (512x1024 @ 1024x1024) alone.

Run: python benchmarks/bench_strict.py            # the three steps and the product at the sizes above
     python benchmarks/bench_strict.py --quick    # small, for lavapipe
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import nn, optim
from hlx_vulkan.nn import functional as F
from timing import mean_seconds

try:
    import torch
except ImportError:
    torch = None

H100_FP32_TFLOPS = 67.0
H100_BYTES_PER_S = 3.35e12


def mlp_steps(args):
    """(hlx step, torch step, FLOPs per step) for the MLP 784 -> H -> H -> 10 with AdamW."""
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.batch, 784)).astype(np.float32)
    y_np = rng.integers(0, 10, args.batch).astype(np.int32)
    h = args.hidden
    hv.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, 10))
    hlx_step = _hlx_step(model, hv.tensor(x_np), hv.tensor(y_np))
    torch_step = None
    if torch is not None:
        dev = _torch_device()
        tm = torch.nn.Sequential(torch.nn.Linear(784, h), torch.nn.ReLU(), torch.nn.Linear(h, h), torch.nn.ReLU(),
                                 torch.nn.Linear(h, 10)).to(dev)
        torch_step = _torch_step(tm, torch.tensor(x_np, device=dev), torch.tensor(y_np.astype(np.int64), device=dev))
    flops = 6 * args.batch * (784 * h + h * h + h * 10)
    return hlx_step, torch_step, flops


def cnn_steps(args):
    """(hlx step, torch step, FLOPs per step) for training/cnn.py's DigitsCNN on (B, 64) pixels."""
    from hlx_vulkan.training.cnn import DigitsCNN
    rng = np.random.default_rng(1)
    b, w = args.cnn_batch, args.cnn_width
    half = max(w // 2, 1)
    x_np = rng.standard_normal((b, 64)).astype(np.float32)
    y_np = rng.integers(0, 10, b).astype(np.int32)
    hv.manual_seed(0)
    hlx_step = _hlx_step(DigitsCNN(w), hv.tensor(x_np), hv.tensor(y_np))

    torch_step = None
    if torch is not None:
        tn, dev = torch.nn, _torch_device()
        tm = tn.Sequential(tn.Unflatten(1, (1, 8, 8)),
                           tn.Conv2d(1, half, 3, padding=1, bias=False), tn.BatchNorm2d(half), tn.ReLU(),
                           tn.Conv2d(half, w, 3, padding=1, bias=False), tn.BatchNorm2d(w), tn.ReLU(), tn.MaxPool2d(2),
                           tn.Conv2d(w, 2 * w, 3, padding=1, bias=False), tn.BatchNorm2d(2 * w), tn.ReLU(),
                           tn.MaxPool2d(2), tn.Flatten(), tn.Linear(8 * w, 10)).to(dev)
        torch_step = _torch_step(tm, torch.tensor(x_np, device=dev), torch.tensor(y_np.astype(np.int64), device=dev))
    # Multiply-adds of one forward: three 3x3 convolutions (8x8, 8x8, 4x4 outputs) and the classifier.
    macs = b * (64 * half * 9 + 64 * w * half * 9 + 16 * 2 * w * w * 9 + 8 * w * 10)
    return hlx_step, torch_step, 6 * macs


def transformer_steps(args):
    """(hlx step, torch step, FLOPs per step) for training/transformer.py's TinyGPT, next-token loss."""
    from hlx_vulkan.training.transformer import TinyGPT
    d, heads, layers, t, b, vocab = args.d_model, args.heads, args.layers, args.context, args.tf_batch, args.vocab
    rng = np.random.default_rng(2)
    x_np = rng.integers(0, vocab, (b, t)).astype(np.int32)
    y_np = rng.integers(0, vocab, b * t).astype(np.int32)
    hv.manual_seed(0)
    hlx_step = _hlx_step(TinyGPT(vocab, t, d, heads, layers), hv.tensor(x_np), hv.tensor(y_np), classes=vocab)

    torch_step = None
    if torch is not None:
        dev = _torch_device()
        tm = _TorchGPT(vocab, t, d, heads, layers).to(dev)
        torch_step = _torch_step(tm, torch.tensor(x_np.astype(np.int64), device=dev),
                                 torch.tensor(y_np.astype(np.int64), device=dev))
    # Matmul multiply-adds of one forward: q, k, v, out projections, the 4d feed-forward, the head,
    # and the attention's two (T x T x d) products per layer.
    macs = b * t * (layers * (4 * d * d + 8 * d * d + 2 * t * d) + d * vocab)
    return hlx_step, torch_step, 6 * macs


if torch is not None:
    class _TorchGPT(torch.nn.Module):
        """TinyGPT in PyTorch: embeddings, pre-norm GELU encoder layers with a causal mask, head."""

        def __init__(self, vocab, context, d, heads, layers):
            super().__init__()
            tn = torch.nn
            self.tok, self.pos = tn.Embedding(vocab, d), tn.Embedding(context, d)
            self.blocks = tn.ModuleList([tn.TransformerEncoderLayer(d, heads, 4 * d, 0.0, "gelu", batch_first=True,
                                                                    norm_first=True) for _ in range(layers)])
            self.ln, self.head = tn.LayerNorm(d), tn.Linear(d, vocab)

        def forward(self, idx):
            t = idx.shape[1]
            mask = torch.nn.Transformer.generate_square_subsequent_mask(t, device=idx.device)
            h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
            for block in self.blocks:
                h = block(h, src_mask=mask, is_causal=True)
            return self.head(self.ln(h)).reshape(-1, self.head.out_features)


def _torch_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _hlx_step(model, x, y, classes=None):
    """One AdamW training step of ``model`` on cross-entropy (logits flattened to ``classes`` columns if given)."""
    opt = optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        logits = model(x)
        F.cross_entropy(logits if classes is None else logits.reshape(-1, classes), y).backward()
        opt.step()
    return step


def _torch_step(model, x, y):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return step


def matmul_steps(args):
    """(hlx product, torch product, FLOPs) for one float32 matmul (M, K) @ (K, N): the strict GEMM alone."""
    m, k, n = args.mm
    rng = np.random.default_rng(3)
    a_np, b_np = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    a, b = hv.tensor(a_np), hv.tensor(b_np)
    torch_step = None
    if torch is not None:
        ta, tb = torch.tensor(a_np, device=_torch_device()), torch.tensor(b_np, device=_torch_device())
        torch_step = lambda: ta @ tb  # noqa: E731
    return (lambda: a @ b), torch_step, 2 * m * k * n


# name -> function(args) -> (hlx step, torch step or None, FLOPs per step)
STEPS = {"mlp": mlp_steps, "cnn": cnn_steps, "transformer": transformer_steps, "matmul": matmul_steps}
# name -> the sizes it runs at, for the table's JSON
CONFIG = {"mlp": lambda a: {"hidden": a.hidden, "batch": a.batch},
          "cnn": lambda a: {"width": a.cnn_width, "batch": a.cnn_batch},
          "transformer": lambda a: {"d_model": a.d_model, "heads": a.heads, "layers": a.layers, "context": a.context,
                                    "batch": a.tf_batch, "vocab": a.vocab},
          "matmul": lambda a: {"M": a.mm[0], "K": a.mm[1], "N": a.mm[2]}}


def torch_sync():
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and few steps (lavapipe)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--cnn-batch", type=int, default=128)
    parser.add_argument("--cnn-width", type=int, default=32)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--tf-batch", type=int, default=32)
    parser.add_argument("--vocab", type=int, default=64)
    parser.add_argument("--mm", type=lambda v: tuple(int(x) for x in v.split(",")), default=(512, 1024, 1024),
                        help="M,K,N of the matmul row")
    parser.add_argument("--tile", help="force a tile of ops/matmul.py's TILES (on lavapipe: the tiled kernel)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", default=",".join(STEPS), help=f"comma-separated, of {sorted(STEPS)}")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/bench_strict_<device>.json)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.batch, args.steps = 128, 64, 3
        args.cnn_batch, args.cnn_width = 16, 8
        args.d_model, args.heads, args.layers, args.context, args.tf_batch, args.vocab = 32, 2, 1, 16, 4, 16
        args.mm = (128, 256, 256)
    if args.tile:
        from hlx_vulkan.ops import matmul
        matmul.FORCE_TILE = args.tile
    rt = hv.default_runtime()
    device = rt.ctx.info["device_name"]
    peer = "none" if torch is None else ("torch CUDA" if torch.cuda.is_available() else "torch CPU")
    rows = []
    for name in args.models.split(","):
        t_torch = None
        for how in ("eager", "replay"):
            times = {}
            for strict in (False, True):
                with hv.strict(strict):
                    step, torch_step, flops = STEPS[name](args)
                    if how == "replay":  # the step captured once: the GPU's time, without the host's
                        step()
                        with hv.capture() as graph:
                            step()
                        step = graph.replay
                    times["strict" if strict else "default"] = mean_seconds(step, rt.synchronize, 2, args.steps)
                    if how == "replay":
                        graph.destroy()
            if t_torch is None and torch_step is not None:
                t_torch = mean_seconds(torch_step, torch_sync, 2, args.steps)
            rows.append({"model": name, "mode": how, "config": CONFIG[name](args),
                         "flops_per_step": flops, "default_ms": 1e3 * times["default"],
                         "strict_ms": 1e3 * times["strict"], "strict_over_default": times["strict"] / times["default"],
                         "torch_eager_ms": None if t_torch is None else 1e3 * t_torch,
                         "strict_over_torch": None if t_torch is None else times["strict"] / t_torch,
                         "strict_tflops": flops / times["strict"] / 1e12,
                         "strict_fraction_of_h100_fp32": flops / times["strict"] / 1e12 / H100_FP32_TFLOPS})
    print(f"{device}; peer: {peer} (eager)")
    print(f"{'model':11} {'mode':7} {'default ms':>11} {'strict ms':>10} {'strict/def':>10} {'peer ms':>10} "
          f"{'strict/peer':>11} {'strict TFLOP/s':>14} {'of 67 fp32':>10}")
    for r in rows:
        tm = "-" if r["torch_eager_ms"] is None else f"{r['torch_eager_ms']:.3f}"
        sp = "-" if r["strict_over_torch"] is None else f"{r['strict_over_torch']:.2f}"
        print(f"{r['model']:11} {r['mode']:7} {r['default_ms']:11.3f} {r['strict_ms']:10.3f} "
              f"{r['strict_over_default']:10.2f} {tm:>10} {sp:>11} {r['strict_tflops']:14.4f} "
              f"{100 * r['strict_fraction_of_h100_fp32']:9.2f}%")
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                   f"bench_strict_{'quick_' if args.quick else ''}"
                                   f"{device.split()[0].lower().replace('/', '_')}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"device": device, "driver": rt.ctx.info["driver"], "peer": peer, "quick": args.quick,
                   "tile": args.tile,
                   "target": "strict_over_default <= 3 on the H100", "rows": rows}, f, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
