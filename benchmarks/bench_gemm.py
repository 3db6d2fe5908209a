"""GEMM throughput beside PyTorch (cuBLAS, TF32 off) on the same inputs, in the same process.

For float32, float16 and bfloat16: an MLP layer's three products (512x1024x1024 forward as
nn.Linear runs it, x @ W^T, and its two backward products G @ W and G^T @ X, the transposed
operands read as views), squares 1024 to 8192, and two weight gradients G^T @ X over a long K
(small outputs, K past one chunk: split-K). hlx is timed by replaying a captured graph
of R products into one output (each waits for the last, as on a CUDA stream), torch by
replaying a CUDA graph of the same R products; medians of three trials. Each row checks both
results against a float64 product of the same inputs (relative Frobenius error).

``--explore`` also times every tile, candidate tiles, and where K is split (see ops/matmul.py,
"Order") one chunk instead (other bits) and the split in two dispatches where the library makes
it one (the same bits), to choose the defaults. With ``HLX_PIPELINE_STATS=1``
each row's kernel also names the driver's statistics of it (the register count on NVIDIA: what
sets how many workgroups an SM holds). Prints a table, saves JSON.

Run: python benchmarks/bench_gemm.py [--explore [--tiles A,B,split]] [--min-size 2048] [--max-size 8192]
     [--out bench_gemm.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import hlx_vulkan as hv
from timing import hlx_step_seconds, torch_step_seconds
from hlx_vulkan.ops import matmul as mm

try:
    import torch
except ImportError:
    torch = None

# name, M, N, K, layout: "nn" A @ B; "nt" A @ (B stored N x K)^T; "tn" (A stored K x M)^T @ B
CASES = [("mlp fwd x@W^T", 512, 1024, 1024, "nt"), ("mlp bwd G@W", 512, 1024, 1024, "nn"),
         ("mlp bwd G^T@X", 1024, 1024, 512, "tn"), ("1024^3", 1024, 1024, 1024, "nn"),
         ("2048^3", 2048, 2048, 2048, "nn"), ("4096^3", 4096, 4096, 4096, "nn"), ("8192^3", 8192, 8192, 8192, "nn"),
         ("dW 256x256x4096", 256, 256, 4096, "tn"), ("dW 512x1024x1536", 512, 1024, 1536, "tn")]
PEAK = {"float32": 67e12, "float16": 989e12, "bfloat16": 989e12}  # H100 SXM, dense
TARGET_S = 0.1  # GPU time per timing trial


def _to_hlx(t):
    """A torch tensor's bytes as an hlx tensor of the same dtype."""
    if t.dtype == torch.float32:
        return hv.tensor(t.cpu().numpy())
    bits = t.cpu().view(torch.int16).numpy()
    import ml_dtypes
    return hv.tensor(bits.view(np.float16 if t.dtype == torch.float16 else ml_dtypes.bfloat16))


def _hlx_seconds(a, b, out, reps):
    return hlx_step_seconds(lambda: hv.matmul(a, b, out=out), reps, TARGET_S)


def _torch_seconds(a, b, out, reps):
    return torch_step_seconds(lambda: torch.matmul(a, b, out=out), reps, TARGET_S, a.is_cuda)


def _rel_err(got, ref) -> float:
    return float(torch.linalg.norm(got.double() - ref) / torch.linalg.norm(ref))


def _kernel_of(a, b, out) -> str:
    rt = hv.default_runtime()
    rt.kernels.reset_usage()
    hv.matmul(a, b, out=out)
    keys = ("BM", "BN", "BK", "TM", "TN", "SGM", "SGN", "FM", "FN", "STAGES", "A_COLS", "B_COLS", "A_VEC", "B_VEC",
            "PAD", "SPLIT")
    return "; ".join(f"{k.name.split('/')[-1]}(" + ",".join(f"{d}={k.defines[d]}" for d in keys if d in k.defines) + ")"
                     + _statistics(k) for k in rt.kernels.used())


def _statistics(kernel) -> str:
    """The driver's register count and the like, with HLX_PIPELINE_STATS=1 where the device has them."""
    return "".join(" [" + ", ".join(f"{name}={value}" for name, value in stats.items()) + "]"
                   for stats in kernel.pipeline.statistics().values())


# Candidates timed by --explore beside the library's own tiles (not used by the library).
EXTRA_TILES = {"small32": (32, 64, 16, 4, 4, 1), "small_bk32": (64, 64, 32, 4, 4, 1),
               "huge_t": (256, 128, 8, 16, 8, 1),
               # half the accumulators of "large" (a thread 8x4 or 4x8): more workgroups an SM (seventh stop)
               "large_8x4": (128, 64, 16, 8, 4, 1), "large_4x8": (64, 128, 16, 4, 8, 1),
               # the large tile before the eighth stop, and padded (a 32 KiB device halves its BK)
               "large_bk8": (128, 128, 8, 8, 8, 1), "large_pad": (128, 128, 16, 8, 8, 1),
               # 64 x 128 (128 threads), so more workgroups an SM (eighth stop)
               "large_64x128": (64, 128, 16, 8, 8, 1)}
EXTRA_COOP_TILES = {"coop_64x128_2sg": (1, 2, 4, 4, 32, 2), "coop_256x128_k16": (4, 2, 4, 4, 16, 2),
                    "coop_128x256_k16": (2, 4, 4, 4, 16, 2), "coop_128_8sg": (2, 4, 4, 2, 32, 2),
                    # more subgroups per tile (latency hidden by warps rather than fragments): fifth stop
                    "coop_64_8sg": (4, 2, 1, 2, 32, 2), "coop_64_8sg_k64": (4, 2, 1, 2, 64, 2),
                    "coop_64_8sg_t": (2, 4, 2, 1, 32, 2), "coop_128_16sg": (4, 4, 2, 2, 32, 2),
                    # one shared stage (the next tile in registers), so 128x256 and 256x128 keep BK 32
                    # within 48 KiB: a quarter less L2 traffic per multiply-add than 128x128 (sixth stop)
                    "coop_128x256_s1": (2, 4, 4, 4, 32, 1), "coop_256x128_s1": (4, 2, 4, 4, 32, 1),
                    "coop_large_s1": (2, 2, 4, 4, 32, 1)}
BIG = {"large", "huge", "huge_t", "large_8x4", "large_4x8", "large_bk8", "large_pad", "large_64x128", "coop_large",
       "coop_64x128_2sg", "coop_256x128_k16", "coop_128x256_k16", "coop_128_8sg", "coop_128_16sg", "coop_128x256_s1",
       "coop_256x128_s1", "coop_large_s1"}
SMALL = {"small", "small32", "small_bk32", "coop_small", "coop_small_k64", "coop_64x128_2sg", "coop_64_8sg",
         "coop_64_8sg_k64", "coop_64_8sg_t"}


TWO_DISPATCHES = "auto 2 dispatches"


def variants(dtype, M, N, K, explore, only=None):
    """(label, FORCE_TILE, CHUNK_K) to time; ``only``: these tiles (where they apply) instead of all."""
    chunk = mm.CHUNK_K[dtype]
    out = [("auto", None, chunk)]
    if not explore:
        return out
    tiles = list(mm.COOP_TILES) if mm.coopmat_available(hv.default_runtime(), dtype) else list(mm.TILES)
    size = max(M, N, K)
    tiles = [t for t in tiles if t in (BIG if size >= 2048 else SMALL) and (only is None or t in only)]
    out += [(t, t, chunk) for t in tiles]
    if only is not None and "split" not in only:
        return out
    if K > chunk:  # the cost of split-K (the order by K): one chunk instead; and two dispatches
        out.append(("auto one chunk", None, 1 << 30))
        if mm.SPLIT_ONE_DISPATCH and M * N <= mm.ELECT_MAX_OUTPUTS:
            out.append((TWO_DISPATCHES, None, chunk))
    elif K >= 1024 and size <= 4096:  # what split-K would buy: chunks of K / 2
        out.append(("auto 2 chunks", None, K // 2))
    return out


def _save(path, info, rows) -> None:
    with open(path, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "peer": f"torch {torch.__version__} cuBLAS",
                   "tf32": False, "chunk_k": mm.CHUNK_K, "max_chunks": mm.MAX_CHUNKS, "rows": rows}, f, indent=2)



def operands(M: int, N: int, K: int, layout: str, dtype: str, dev, gen):
    """One product's inputs, torch's and hlx's alike (a "t" in ``layout`` makes that operand a
    transposed view), the float64 reference, both outputs, its FLOPs and the replay count."""
    tdt = getattr(torch, dtype)
    ta = torch.randn((K, M) if layout[0] == "t" else (M, K), device=dev, generator=gen).to(tdt)
    tb = torch.randn((N, K) if layout[1] == "t" else (K, N), device=dev, generator=gen).to(tdt)
    ha, hb = _to_hlx(ta), _to_hlx(tb)
    if layout[0] == "t":
        ta, ha = ta.t(), ha.T
    if layout[1] == "t":
        tb, hb = tb.t(), hb.T
    ref = ta.double() @ tb.double()
    tout = torch.empty((M, N), device=dev, dtype=tdt)
    hout = hv.zeros(M, N, dtype=getattr(hv, dtype))
    flop = 2.0 * M * N * K
    return ta, tb, ha, hb, ref, tout, hout, flop, max(1, min(50, int(2e10 / flop)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_gemm.json")
    parser.add_argument("--max-size", type=int, default=8192)
    parser.add_argument("--dtypes", default="float32,float16,bfloat16")
    parser.add_argument("--explore", action="store_true", help="time every tile and the one-chunk order too")
    parser.add_argument("--explore-dtypes", default="float32,float16", help="the dtypes --explore covers")
    parser.add_argument("--tiles", default=None, help="with --explore: only these tiles, comma-separated ("
                        "'split' adds the one-chunk and two-dispatch variants of split products)")
    parser.add_argument("--min-size", type=int, default=0, help="skip products whose largest dimension is smaller")
    args = parser.parse_args(argv)
    only = set(args.tiles.split(",")) if args.tiles else None
    if torch is None:
        raise SystemExit("bench_gemm needs PyTorch (the peer)")
    dev = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: a smoke test of the script, small sizes
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    rt = hv.default_runtime()
    info = rt.ctx.info
    default_chunk = dict(mm.CHUNK_K)
    explore = args.explore_dtypes.split(",")
    if args.explore:
        mm.TILES.update(EXTRA_TILES)
        mm.COOP_TILES.update(EXTRA_COOP_TILES)
    gen = torch.Generator(device=dev).manual_seed(0)
    rows = []
    print(f"{'dtype':9} {'case':17} {'M x N x K':16} {'variant':16} {'hlx TF/s':>9} {'torch':>7} {'ratio':>6} "
          f"{'peak':>5} {'err hlx':>8} {'err torch':>9}  kernel", flush=True)
    for dtype in args.dtypes.split(","):
        for name, M, N, K, layout in CASES:
            if max(M, N, K) > args.max_size or max(M, N, K) < args.min_size:
                continue
            ta, tb, ha, hb, ref, tout, hout, flop, reps = operands(M, N, K, layout, dtype, dev, gen)
            t_torch = _torch_seconds(ta, tb, tout, reps)
            err_torch = _rel_err(tout, ref)
            for label, tile, chunk in variants(dtype, M, N, K, args.explore and dtype in explore, only):
                mm.FORCE_TILE, mm.CHUNK_K = tile, {**default_chunk, dtype: chunk}
                mm.SPLIT_ONE_DISPATCH = label != TWO_DISPATCHES
                try:
                    poisoned = hv.full((M, N), float("nan"), dtype=dtype)  # unwritten outputs would show as NaN
                    kernel = _kernel_of(ha, hb, poisoned)
                    got = torch.from_numpy(poisoned.to(hv.float32).numpy()).to(dev)
                    del poisoned
                    err = _rel_err(got, ref)
                    t_hlx = _hlx_seconds(ha, hb, hout, reps)
                except Exception as exc:  # a variant that fails to build or run is reported, not fatal
                    print(f"{dtype:9} {name:17} {label:16} FAILED: {type(exc).__name__}: {exc}", flush=True)
                    rows.append({"dtype": dtype, "case": name, "variant": label, "error": repr(exc)})
                    continue
                finally:
                    mm.FORCE_TILE, mm.CHUNK_K, mm.SPLIT_ONE_DISPATCH = None, default_chunk, True
                row = {"dtype": dtype, "case": name, "M": M, "N": N, "K": K, "layout": layout, "variant": label,
                       "hlx_tflops": flop / t_hlx / 1e12, "torch_tflops": flop / t_torch / 1e12,
                       "ratio": t_torch / t_hlx, "peak_fraction": flop / t_hlx / PEAK[dtype],
                       "torch_peak_fraction": flop / t_torch / PEAK[dtype], "err_hlx": err, "err_torch": err_torch,
                       "hlx_us": t_hlx * 1e6, "torch_us": t_torch * 1e6, "kernel": kernel}
                rows.append(row)
                print(f"{dtype:9} {name:17} {f'{M}x{N}x{K}':16} {label:16} {row['hlx_tflops']:9.1f} "
                      f"{row['torch_tflops']:7.1f} {row['ratio']:6.2f} {row['peak_fraction']:5.2f} {err:8.1e} "
                      f"{err_torch:9.1e}  {kernel}", flush=True)
            del ta, tb, ref, tout, ha, hb, hout
            _save(args.out, info, rows)  # after every case, so a run cut short keeps what it measured
            if dev == "cuda":
                torch.cuda.empty_cache()
    _save(args.out, info, rows)
    auto = [r for r in rows if r.get("variant") == "auto"]
    print("\nsummary (auto):")
    for r in auto:
        print(f"  {r['dtype']:9} {r['case']:17} {r['hlx_tflops']:7.1f} TFLOP/s  torch {r['torch_tflops']:7.1f}  "
              f"ratio {r['ratio']:.2f}  peak {r['peak_fraction']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
