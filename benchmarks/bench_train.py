"""One training step of an MLP (784 -> H -> H -> 10, batch B, AdamW), eager, replayed and
through ``hv.jit``, beside PyTorch on the same machine in the same run (eager, and CUDA graphs
on a CUDA GPU).

Per mode: wall time per step (steps pipelined, one sync at the end) and host time per op
(eager: the Python time to record one step over its dispatches; replay: the time of one
``graph.replay()`` call over the dispatches it submits; jit: the time of one jitted call, the
numpy batch's feeding included, over the same dispatches). For jit, also the host time of one
whole call and of the feeding alone (copying the numpy x and y into device tensors in stream
order), per step. Prints a table, saves JSON.
The hlx model starts from the same weights as torch's, and the losses after the timed
steps are compared, so the two do the same work.

Run: python benchmarks/bench_train.py [--hidden 1024 --batch 512 --steps 20] [--out bench_train.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import hlx_vulkan as hv
from hlx_vulkan import nn, optim
from hlx_vulkan.nn import functional as F
from timing import capture_cuda_graph, mean_seconds, warm_clocks

try:
    import torch
except ImportError:
    torch = None


def hlx_model(hidden: int):
    hv.manual_seed(0)
    return nn.Sequential(nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 10))


def bench_hlx(args, x_np, y_np, rows):
    rt = hv.default_runtime()
    model = hlx_model(args.hidden)
    init = {k: v.numpy() for k, v in model.state_dict().items()}
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    x, y = hv.tensor(x_np), hv.tensor(y_np.astype(np.int32))
    losses = []

    def step_on(xb, yb):
        opt.zero_grad()
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss)
        return loss

    def step():
        step_on(x, y)

    step()
    rt.synchronize()
    before = rt.stream.dispatches
    t0 = time.perf_counter()
    step()
    record_s = time.perf_counter() - t0
    ops = rt.stream.dispatches - before
    rt.synchronize()
    warm_clocks()  # each timing below is tens of milliseconds: too short to raise an idle GPU's clock
    eager_s = mean_seconds(step, rt.synchronize, args.warmup, args.steps)
    rows.append({"mode": "hlx eager", "ms_per_step": 1e3 * eager_s, "host_us_per_op": 1e6 * record_s / ops,
                 "ops_per_step": ops})

    with hv.capture() as graph:
        step()
    rt.synchronize()
    warm_clocks()
    host, synced = [], []
    for _ in range(max(3, args.steps // 2)):
        t0 = time.perf_counter()
        graph.replay()
        host.append(time.perf_counter() - t0)
        rt.synchronize()
        synced.append(time.perf_counter() - t0)
    replay_s = mean_seconds(graph.replay, rt.synchronize, args.warmup, args.steps)
    rows.append({"mode": "hlx replay", "ms_per_step": 1e3 * replay_s,
                 "host_us_per_op": 1e6 * float(np.median(host)) / graph.dispatches, "ops_per_step": graph.dispatches})
    # One replay waited for alone: the GPU's time for the step plus one submit-and-wait round trip.
    rows.append({"mode": "hlx replay, each synced", "ms_per_step": 1e3 * float(np.min(synced)),
                 "host_us_per_op": None, "ops_per_step": graph.dispatches})
    steps_run = 2 + args.warmup + args.steps + 1 + len(host) + args.warmup + args.steps
    feed = []
    with hv.no_grad():
        for _ in range(max(3, args.steps // 2)):  # feeding alone: x and y are the live graph's, written in stream order
            t0 = time.perf_counter()
            x.copy_(x_np)
            y.copy_(y_np)
            feed.append(time.perf_counter() - t0)
            rt.synchronize()
    graph.destroy()

    jitted = hv.jit(step_on)

    def call():
        return jitted(x_np, y_np)  # the batch fed from numpy on every call, as from a data loader

    call()  # eager
    call()  # captured
    rt.synchronize()
    warm_clocks()
    host = []
    for _ in range(max(3, args.steps // 2)):
        t0 = time.perf_counter()
        call()
        host.append(time.perf_counter() - t0)
        rt.synchronize()
    jit_s = mean_seconds(call, rt.synchronize, args.warmup, args.steps)
    ops = jitted.graphs[0].dispatches
    rows.append({"mode": "hlx jit, numpy batch", "ms_per_step": 1e3 * jit_s,
                 "host_us_per_op": 1e6 * float(np.median(host)) / ops, "ops_per_step": ops,
                 "host_us_per_step": 1e6 * float(np.median(host)), "feed_us_per_step": 1e6 * float(np.median(feed))})
    steps_run += 2 + len(host) + args.warmup + args.steps
    final_loss = float(losses[-1].numpy())  # the loss captured in the graph, rewritten by each replay
    jitted.reset()
    return init, steps_run, (float(losses[0].numpy()), final_loss)


def bench_torch(args, x_np, y_np, init, steps_run, rows):
    cuda = torch.cuda.is_available()
    dev = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, args.hidden), torch.nn.ReLU(),
                                torch.nn.Linear(args.hidden, 10)).to(dev)
    model.load_state_dict({k: torch.tensor(v) for k, v in init.items()})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, capturable=cuda)
    x = torch.tensor(x_np, device=dev)
    y = torch.tensor(y_np.astype(np.int64), device=dev)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    holder = {}

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        holder["loss"] = loss.detach()  # keeping the graph alive would break CUDA graph capture

    step()
    first_loss = float(holder["loss"])
    step()
    sync()
    t0 = time.perf_counter()
    step()
    record_s = time.perf_counter() - t0
    sync()
    eager_s = mean_seconds(step, sync, args.warmup, args.steps)
    rows.append({"mode": f"torch eager ({dev})", "ms_per_step": 1e3 * eager_s, "host_us_per_op": None,
                 "host_ms_per_step": 1e3 * record_s})
    done = 3 + args.warmup + args.steps
    if cuda:
        g = capture_cuda_graph(step)
        done += 3  # its warm-up steps
        replay_s = mean_seconds(g.replay, sync, args.warmup, args.steps)
        done += args.warmup + args.steps
        rows.append({"mode": "torch CUDA graph", "ms_per_step": 1e3 * replay_s, "host_us_per_op": None})
    while done < steps_run:  # the same number of steps as hlx took, so the losses compare
        step()
        done += 1
    sync()
    return (first_loss, float(holder["loss"])), done


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=20,
                        help="steps before timing: the GPU clocks up over the first ones")
    parser.add_argument("--out", default="bench_train.json")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((args.batch, 784)).astype(np.float32)
    y_np = rng.integers(0, 10, args.batch)
    rows = []
    init, steps_run, hlx_loss = bench_hlx(args, x_np, y_np, rows)  # (first step's loss, last step's)
    info = hv.default_runtime().ctx.info
    result = {"device": info["device_name"], "driver": info["driver"], "hidden": args.hidden, "batch": args.batch,
              "steps": args.steps, "hlx_final_loss": hlx_loss, "rows": rows}
    if torch is not None:
        torch_loss, torch_steps = bench_torch(args, x_np, y_np, init, steps_run, rows)
        result.update(torch_final_loss=torch_loss, torch_steps=torch_steps, hlx_steps=steps_run)
        eager = next(r for r in rows if r["mode"].startswith("torch eager"))
        for r in rows:
            r["torch_eager_over_this"] = eager["ms_per_step"] / r["ms_per_step"]
    print(f"MLP 784-{args.hidden}-{args.hidden}-10, batch {args.batch}, AdamW, on {result['device']}")
    print(f"{'mode':<24}{'ms/step':>12}{'host us/op':>12}{'torch eager / this':>20}")
    for r in rows:
        host = f"{r['host_us_per_op']:.2f}" if r.get("host_us_per_op") is not None else "-"
        ratio = f"{r['torch_eager_over_this']:.2f}" if "torch_eager_over_this" in r else "-"
        print(f"{r['mode']:<24}{r['ms_per_step']:>12.3f}{host:>12}{ratio:>20}")
    jit = next(r for r in rows if r["mode"].startswith("hlx jit"))
    print(f"hlx jit: {jit['host_us_per_step']:.0f} us of host time per call, of which {jit['feed_us_per_step']:.0f} "
          f"us feed the numpy batch ({args.batch}x784 float32, {args.batch} int64 labels)")
    if torch is not None:
        t = result["torch_final_loss"]
        print(f"loss at step 1: hlx {hlx_loss[0]:.6f}, torch {t[0]:.6f}; after {steps_run} steps: hlx "
              f"{hlx_loss[1]:.6g}, torch {t[1]:.6g}")
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
