"""The timing loops the benchmark scripts share."""

from __future__ import annotations

import statistics
import time

import hlx_vulkan as hv


def warm_clocks(seconds: float = 0.5) -> None:
    """Keep the device busy with throwaway products for about ``seconds``, so that a short timing
    after it runs at the clock a sustained load gets: an idle H100 sits at 345 MHz, reaches 1980
    after about 0.25 s of load and drops back about 2 s after the load ends
    (results/clock_ramp_h100_eleventh.json); a host-bound phase (eager steps) may not raise it."""
    a = hv.randn(1024, 1024)
    sync = hv.default_runtime().synchronize
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(8):
            a @ a
        sync()


def mean_seconds(fn, sync, warmup: int, reps: int) -> float:
    """Seconds per call of ``fn``: ``warmup`` calls, a sync, then ``reps`` calls pipelined and one sync."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    sync()
    return (time.perf_counter() - t0) / reps


def median_seconds(fn, sync, repeat: int, inner: int = 1) -> float:
    """Median seconds per call of ``fn`` (``inner`` calls between syncs, ``repeat`` times), after a warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def capture_cuda_graph(fn, calls: int = 1, warmup: int = 3):
    """A CUDA graph of ``calls`` calls of ``fn``, after ``warmup`` calls on a side stream (as capture
    wants: lazy allocations and algorithm choices happen outside the graph)."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return graph


def cuda_graph_seconds(graph, reps: int, target_s: float) -> float:
    """Seconds per call of a captured CUDA graph holding ``reps`` calls: replayed enough times for
    about ``target_s`` a trial, the median of three trials timed with CUDA events."""
    import torch
    graph.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    graph.replay()
    end.record()
    torch.cuda.synchronize()
    n = max(2, int(target_s / max(start.elapsed_time(end) / 1e3, 1e-6)))
    trials = []
    for _ in range(3):
        start.record()
        for _ in range(n):
            graph.replay()
        end.record()
        torch.cuda.synchronize()
        trials.append(start.elapsed_time(end) / 1e3 / (n * reps))
    return statistics.median(trials)


def replay_seconds(graph, sync, reps: int, target_s: float) -> float:
    """Seconds per call of an hlx graph holding ``reps`` calls, timed on the host: replayed enough
    times for about ``target_s`` a trial, the median of three trials."""
    sync()
    t0 = time.perf_counter()
    graph.replay()
    sync()
    n = max(2, int(target_s / max(time.perf_counter() - t0, 1e-6)))
    trials = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            graph.replay()
        sync()
        trials.append((time.perf_counter() - t0) / (n * reps))
    return statistics.median(trials)


def capture_seconds(record, reps: int, target_s: float) -> float:
    """Seconds per call of hlx work: ``record()``, which makes ``reps`` calls, captured into a
    graph once and timed as :func:`replay_seconds` times it; the graph is destroyed after."""
    with hv.capture() as graph:
        record()
    try:
        return replay_seconds(graph, hv.default_runtime().synchronize, reps, target_s)
    finally:
        graph.destroy()


def hlx_step_seconds(step, reps: int, target_s: float) -> float:
    """Seconds per call of ``step()`` (hlx work): ``reps`` calls captured once, timed as
    :func:`capture_seconds` times them."""
    def record():
        for _ in range(reps):
            step()
    return capture_seconds(record, reps, target_s)


def torch_step_seconds(step, reps: int, target_s: float, cuda: bool) -> float:
    """Seconds per call of ``step()`` (torch work): on CUDA a graph of ``reps`` calls timed as
    :func:`cuda_graph_seconds` times it; without CUDA (a smoke test of a script) one warm-up call,
    then ``reps`` calls on the host clock."""
    if not cuda:
        step()
        t0 = time.perf_counter()
        for _ in range(reps):
            step()
        return (time.perf_counter() - t0) / reps
    graph = capture_cuda_graph(step, reps)
    seconds = cuda_graph_seconds(graph, reps, target_s)
    del graph
    return seconds


def torch_matmul_tflops(dtype: str, n: int = 8192, reps: int = 3) -> float | None:
    """torch's n^3 matmul rate in TFLOP/s on CUDA (TF32 off for float32), or None without CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    x = torch.randn(n, n, device="cuda", dtype=getattr(torch, dtype))
    torch.matmul(x, x)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.matmul(x, x)
    torch.cuda.synchronize()
    return reps * 2 * n ** 3 / (time.perf_counter() - t0) / 1e12
