"""What each rank runs under ``mpirun`` in tests/distributed (one mode per test); prints
``RESULT <json>`` lines that the tests read. Run directly (no mpirun) for the one-process side."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import numpy as np


def out(**kw) -> None:
    print("RESULT " + json.dumps(kw), flush=True)


def collectives() -> None:
    import hlx_vulkan as hv
    from hlx_vulkan import distributed as dist
    g = dist.init()
    r, w = g.rank, g.world_size
    rng = np.random.default_rng(100 + r)
    a = rng.standard_normal((3, 37)).astype(np.float32) * 10.0 ** rng.integers(-3, 4, (3, 37))
    b = rng.standard_normal((5, 7)).astype(np.float32)
    t = hv.from_numpy(a)
    gathered = dist.all_gather(t).numpy()
    dist.all_reduce(t, "sum")
    m = hv.from_numpy(b)
    dist.all_reduce(m, "mean")
    c = hv.from_numpy(np.full((4, 3), -1.0 - r, dtype=np.float32) if r else np.arange(12, dtype=np.float32).reshape(4, 3))
    dist.broadcast(c, root=0)
    ints = hv.from_numpy(np.arange(6, dtype=np.int32) * (r + 1))
    dist.all_reduce(ints)
    dist.barrier()
    out(rank=r, world=w, gathered=gathered.tolist(), sum=t.numpy().tolist(), mean=m.numpy().tolist(),
        bcast=c.numpy().tolist(), ints=ints.numpy().tolist(), a=a.tolist(), b=b.tolist())


def ddp_steps(data_parallel: bool, micro: int, steps: int = 3) -> None:
    """A tiny MLP (a tied weight used twice, so a leaf gets two gradient writes per backward)
    trained a few steps with ParallelStep; small buckets so that several start during backward."""
    import hlx_vulkan as hv
    from hlx_vulkan import nn
    from hlx_vulkan.checkpoint import state_digest
    from hlx_vulkan.optim import AdamW
    from hlx_vulkan.training.parallel import ParallelStep
    hv.manual_seed(5)
    model = nn.Sequential(nn.Linear(9, 13), nn.Tanh(), nn.Linear(13, 13), nn.Tanh(), nn.Linear(13, 4))
    act = nn.Tanh()
    drop = nn.Dropout(0.3) if os.environ.get("DROPOUT") else (lambda h: h)

    def forward(x):  # model[2] twice: its weight's gradient is written twice per backward
        h = model[1](model[0](x))
        h = act(model[2](model[3](model[2](drop(h)))))
        return model[4](h)
    if data_parallel and os.environ.get("PERTURB_RANK1") and int(os.environ.get("OMPI_COMM_WORLD_RANK", "0")) == 1:
        with hv.no_grad():
            model[0].weight.copy_(np.ones((13, 9), dtype=np.float32))  # rank 0's values must win
    world_rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    if os.environ.get("NO_IMPORT_RANK1") and world_rank == 1:  # ranks may mix the window's two ways
        os.environ["HLX_DIST_HOST_IMPORT"] = "0"
    box = []
    if os.environ.get("EXIT_EVENTS"):  # registered first, so it runs after the library's exit hook
        import atexit

        def report():
            ex, imports = box[0]
            print("EXIT " + json.dumps({"rank": world_rank, "events": ex.events,
                                        "imports_alive": sum(b.alive for b in imports)}), flush=True)
        atexit.register(report)
    par = ParallelStep(model, micro_batches=micro, data_parallel=data_parallel, bucket_bytes=400)
    if par.ddp is not None and par.ddp.exchange is not None:
        box.append((par.ddp.exchange, list(par.ddp.exchange.imports)))
    if os.environ.get("SMALL_PIECES"):  # buckets cut into pieces that travel on several threads at once
        from hlx_vulkan.distributed import ddp
        ddp.PIECE_BYTES = 16
    if par.ddp is not None and os.environ.get("EARLY_REDUCE"):  # each all-gather ends before backward goes on
        start = par.ddp._start
        par.ddp._start = lambda b: (start(b), b.job.done.wait())
    opt = AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 9)).astype(np.float32)
    y = rng.standard_normal((60, 4)).astype(np.float32)
    xd, yd = hv.from_numpy(x), hv.from_numpy(y)
    loss_fn = nn.MSELoss()  # (CrossEntropyLoss here trips a bug on main: see the dist branch's report)

    def loss_of(idx):
        h = forward(xd[int(idx[0]):int(idx[-1]) + 1])
        return loss_fn(h, yd[int(idx[0]):int(idx[-1]) + 1])

    for s in range(steps):
        if s == 1 and world_rank == 1 and os.environ.get("FAIL_AT_STEP") == "hang":
            time.sleep(120)
        if s == 1 and world_rank == 1 and os.environ.get("FAIL_AT_STEP") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        batch = np.arange(12 * s, 12 * s + 12)
        par.backward(batch, loss_of)
        opt.step()
    digest = state_digest({n: {"dtype": t.dtype.name, "shape": list(t.shape), "digest": t.digest()}
                           for n, t in model.state_dict().items()})
    early = par.ddp.started_during_backward if par.ddp is not None else 0
    summed = par.ddp.reduced_during_backward if par.ddp is not None else 0
    lanes = len(par.ddp.group.wire.lanes) if par.ddp is not None else 0
    pieces = par.ddp.pieces_sent if par.ddp is not None else 0
    path = par.ddp.path if par.ddp is not None else None
    reason = par.ddp.path_reason if par.ddp is not None else None
    stats = dict(par.ddp.stats) if par.ddp is not None else {}
    events = []
    if par.ddp is not None and os.environ.get("CLOSE"):  # the window's lifetime, explicitly ended
        ex = par.ddp.exchange
        imports = list(ex.imports) if ex is not None else []
        par.ddp.close()
        events = (ex.events if ex is not None else []) + [f"imports alive: {sum(b.alive for b in imports)}"]
    out(rank=par.rank, world=par.world_size, digest=digest, early=early, summed=summed, lanes=lanes, pieces=pieces,
        buckets=len(par.ddp.buckets) if par.ddp else 0, path=path, reason=reason, stats=stats,
        events=events)


def fail(how: str) -> None:
    import hlx_vulkan as hv
    from hlx_vulkan import distributed as dist
    g = dist.init()
    t = hv.from_numpy(np.arange(4, dtype=np.float32))
    dist.all_reduce(t)
    if g.rank == 1:
        if how == "raise":
            raise RuntimeError("deliberate failure in the test")
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if how == "hang":
            time.sleep(120)
    dist.all_reduce(t)
    dist.barrier()
    out(rank=g.rank, finished=True)


def mismatch(what: str) -> None:
    from hlx_vulkan import distributed as dist
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    if what == "version" and rank == 1:
        import hlx_vulkan.distributed.collectives as grp
        grp.__version__ = "0.0.0-other"
    g = dist.init()
    from hlx_vulkan import nn
    width = 8 if g.rank != 1 or what != "model" else 9
    dist.DistributedDataParallel(nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2)))
    out(rank=g.rank, finished=True)


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    if mode == "collectives":
        collectives()
    elif mode == "ddp":
        ddp_steps(data_parallel=rest[0] == "dp", micro=int(rest[1]), steps=int(rest[2]) if len(rest) > 2 else 3)
    elif mode == "fail":
        fail(rest[0])
    elif mode == "mismatch":
        mismatch(rest[0])
    else:
        raise SystemExit(f"unknown mode {mode}")
