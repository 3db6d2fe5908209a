"""Check, then time, the cooperative-matrix-2 GEMM (ops/matmul/matmul_cm2.comp) on a GPU.

1. What the device offers: VK_NV_cooperative_matrix2, the glslang library, the workgroup-scope
   shapes it lists, which tiles of ops/matmul.py's CM2_TILES (and this script's sweep) it lists.
2. Correctness, float16 and bfloat16, for the device's choice ("auto"), every cm2 tile forced
   and coopmat-1 forced: odd shapes (1x1x1, 17x33x65, 129x257x511), transposed views, batches
   (and a broadcast B), operands and output at element offsets, an operand with no unit stride
   (copied for cm2), split-K (K past one chunk); against numpy float64 of the same inputs, into
   NaN-poisoned outputs; the same bits twice. Whether cm2's bits equal coopmat-1's is reported
   (not a failure: their multiply-adds may round differently).
3. A row's bits whatever the rows around it: rows of M, M/2 and 64-row products compared bit
   for bit (the device's choice may take another tile for each).
4. Timing beside torch cuBLAS (TF32 off), as bench_gemm.py times (replayed graphs, medians of
   three): the MLP's 512x1024x1024 and its two backward products, 1024^3 to 8192^3; the auto
   choice, coopmat-1 and every cm2 tile of the sweep; TFLOP/s, ratio to cuBLAS, fraction of
   989 TFLOP/s. The best cm2 tile of each row is printed, to set CM2_TILES / MIN_GROUPS.

Exit status 1 on a wrong value, NaN, or bits that change run to run or with the rows around them.
Run: python benchmarks/check_gemm_cm2.py [--quick] [--out F.json] [--no-bench] [--max-size 8192]
"auto" is the library's own choice: coopmat-1 unless $HLX_MATMUL_CM2=1 (ops/matmul.py's CM2_AUTO).
(--quick: small shapes for lavapipe, which has no cooperative matrices: checks that the
selection falls back, then times the small rows against torch on the CPU.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback

import ml_dtypes
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlx_vulkan as hv  # noqa: E402
from hlx_vulkan import glslang_library  # noqa: E402
from hlx_vulkan.ops import matmul as mm  # noqa: E402

import bench_gemm as bg  # noqa: E402
import torch  # noqa: E402

# Tiles timed beside CM2_TILES (BM, BN, BK, THREADS, GROUP_M); not used by the library unless moved there.
SWEEP = {"cm2_32x64": (32, 64, 64, 128, 0), "cm2_64x64_k32": (64, 64, 32, 128, 0),
         "cm2_64x128": (64, 128, 64, 128, 0), "cm2_128x64": (128, 64, 64, 128, 0),
         "cm2_128x128_t128": (128, 128, 64, 128, 8), "cm2_128x128_k32": (128, 128, 32, 256, 8),
         "cm2_128x128_g0": (128, 128, 64, 256, 0), "cm2_128x256_g0": (128, 256, 64, 256, 0),
         "cm2_256x128": (256, 128, 64, 256, 8), "cm2_128x256_k32": (128, 256, 32, 256, 8)}
COOP1 = "coop_small_k64"  # any coopmat-1 tile gives the same bits
# A FORCE_TILE no kernel knows: the device's choice, under a plan-cache key of its own (cm2 is set aside).
COOP1_AUTO = "coopmat-1 auto"
SET_ASIDE = "set aside by check_gemm_cm2"
TOL = {"float16": 4e-3, "bfloat16": 1.6e-2}  # relative, per element, beside 1e-3 * sqrt(K) absolute
NP = {"float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def _kernels(fn):
    """fn's result and the kernels it dispatched (names with their tile defines)."""
    rt = hv.default_runtime()
    rt.kernels.reset_usage()
    out = fn()
    rt.synchronize()
    used = []
    for k in rt.kernels.used():
        keys = [d for d in ("BM", "BN", "BK", "THREADS", "GROUP_M", "SGM", "SGN", "FM", "FN", "SPLIT")
                if d in k.defines]
        used.append(k.name.split("/")[-1] + "(" + ",".join(f"{d}={k.defines[d]}" for d in keys) + ")")
    return out, sorted(used)


def _bits(t) -> np.ndarray:
    return t.numpy().view(np.uint16).copy()


def _case_list(quick):
    """(name, (M, N, K), how the operands are laid out)."""
    aligned, mlp = ((64, 128, 256), (64, 128, 256)) if quick else ((256, 512, 1024), (512, 1024, 1024))
    return [("1x1x1", (1, 1, 1), {}), ("17x33x65", (17, 33, 65), {}), ("129x257x511", (129, 257, 511), {}),
            ("A^T 129x257x511", (129, 257, 511), {"ta": 1}), ("B^T 129x257x511", (129, 257, 511), {"tb": 1}),
            ("A^T B^T 65x31x200", (65, 31, 200), {"ta": 1, "tb": 1}),
            ("batched 3x33x47x129", (33, 47, 129), {"batch": 3}),
            ("broadcast B 3x33x47x129", (33, 47, 129), {"batch": 3, "bcast": 1}),
            ("offsets 70x90x130", (70, 90, 130), {"offset": 1}),
            ("no unit stride 40x24x72", (40, 24, 72), {"step": 1}),
            ("split-K 70x90x5000", (70, 90, 5000), {}),
            ("tall 1300x300x64", (1300, 300, 64), {}),  # 11 block rows of 128: a part group
            ("aligned %dx%dx%d" % aligned, aligned, {}),
            ("mlp x@W^T %dx%dx%d" % mlp, mlp, {"tb": 1})]


def _make(rng, dtype, M, N, K, ta=0, tb=0, batch=0, bcast=0, offset=0, step=0):
    """hlx A and B laid out as asked, their float64 values, the output's shape and element offset."""
    lead = (batch,) if batch else ()
    blead = () if bcast else lead

    def host(*shape):
        return rng.standard_normal(shape).astype(np.float32).astype(NP[dtype])

    if ta:
        a = host(*lead, K, M)
    else:
        a = host(*lead, M, K + 3 * offset + K * step)
    b = host(*blead, N, K) if tb else host(*blead, K + offset, N)
    ha, hb = hv.tensor(a), hv.tensor(b)
    if ta:
        ha, a = ha.transpose(-1, -2), np.swapaxes(a, -1, -2)
    if tb:
        hb, b = hb.transpose(-1, -2), np.swapaxes(b, -1, -2)
    if offset:  # views starting at odd elements, with row strides past their widths
        ha, a = ha[..., 3:3 + K], a[..., 3:3 + K]
        hb, b = hb[..., 1:1 + K, :], b[..., 1:1 + K, :]
    if step:  # every other column: no unit stride
        ha, a = ha[..., ::2], a[..., ::2]
    return ha, hb, a.astype(np.float64), b.astype(np.float64), (*lead, M, N), 5 if offset else 0


def _poisoned(dtype, shape, pad):
    """A NaN-filled buffer and the output view starting ``pad`` elements into it."""
    hold = hv.full((int(np.prod(shape)) + pad,), float("nan"), dtype=getattr(hv, dtype))
    return hold, hold[pad:].reshape(shape)


def _variants(rt, dtype):
    """(label, FORCE_TILE) to check: coopmat-1 first (the others' bits are compared with it), the
    device's choice, each cm2 tile where the device has cm2, else one (which must fall back)."""
    out = [("coopmat-1", COOP1)] if mm.coopmat_available(rt, dtype) else []
    out.append(("auto", None))
    if CHECK_AUTO_ONLY:
        return out
    tiles = _listed(rt, dtype) if mm.cm2_available(rt, dtype) else list(mm.CM2_TILES)[:1]
    return out + [(t, t) for t in tiles]


# --check auto: correctness of coopmat-1 and the device's choice only (every cm2 tile is a pipeline
# the driver compiles for each case's flags, seconds apiece on the H100).
CHECK_AUTO_ONLY = False


def _listed(rt, dtype):
    """The cm2 tiles (the library's and the sweep's) whose shapes the device lists: the others are
    not run (a device may refuse them), only reported."""
    return [t for t in mm.CM2_TILES if mm.cm2_tile_listed(rt, dtype, t)]


def correctness(args, rt, rows) -> bool:
    ok = True
    rng = np.random.default_rng(12)
    print(f"{'dtype':9} {'case':28} {'variant':18} {'err/tol':>8} {'rel err':>8} {'same':>5} {'=coop1':>6} "
          f"{'verdict':7} kernels", flush=True)
    for dtype in args.dtypes:
        cm2 = mm.cm2_available(rt, dtype)
        auto_cm2 = cm2 and mm.CM2_AUTO and any(mm.cm2_tile_listed(rt, dtype, t) for t in mm.CM2_TILES)
        for name, (M, N, K), kw in _case_list(args.quick):
            ha, hb, a, b, shape, pad = _make(rng, dtype, M, N, K, **kw)
            ref = a @ b
            tol = 1e-3 * np.sqrt(K) + TOL[dtype] * np.abs(ref)
            coop_bits = None
            for label, tile in _variants(rt, dtype):
                row = {"dtype": dtype, "case": name, "M": M, "N": N, "K": K, "variant": label}
                mm.FORCE_TILE = tile
                try:
                    hold, out = _poisoned(dtype, shape, pad)
                    _, used = _kernels(lambda: hv.matmul(ha, hb, out=out))
                    got = out.to(hv.float32).numpy().astype(np.float64)
                    first = _bits(out)
                    untouched = bool(np.isnan(hold[:pad].to(hv.float32).numpy()).all()) if pad else True
                    hv.matmul(ha, hb, out=out)
                    same = bool(np.array_equal(first, _bits(out)))
                    err = np.abs(got - ref)
                    ran_cm2 = any(u.startswith("matmul_cm2") for u in used)
                    # cm2 serves where the device has it (forced, or auto where a tile is listed), never elsewhere
                    expect_cm2 = cm2 and (tile in mm.CM2_TILES or (tile is None and auto_cm2))
                    row.update({"max_err_over_tol": float(np.max(err / tol)),
                                "rel_err": float(np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)),
                                "same_bits": same, "untouched_before_out": untouched, "kernels": used,
                                "ran_cm2": ran_cm2, "expected_cm2": expect_cm2})
                    if label == "coopmat-1":
                        coop_bits = first
                    elif coop_bits is not None:
                        row["equals_coopmat1"] = bool(np.array_equal(first, coop_bits))
                    row["pass"] = bool(row["max_err_over_tol"] <= 1.0 and not np.isnan(got).any() and same
                                       and untouched and ran_cm2 == expect_cm2)
                except Exception as exc:  # noqa: BLE001 - a failing variant is a FAIL of its row
                    row.update({"pass": False, "error": f"{type(exc).__name__}: {exc}"})
                    traceback.print_exc()
                finally:
                    mm.FORCE_TILE = None
                ok &= row["pass"]
                rows.append(row)
                if "error" in row:
                    print(f"{dtype:9} {name:28} {label:18} FAIL {row['error']}", flush=True)
                    continue
                print(f"{dtype:9} {name:28} {label:18} {row['max_err_over_tol']:8.3f} {row['rel_err']:8.1e} "
                      f"{str(same):>5} {str(row.get('equals_coopmat1', '-')):>6} "
                      f"{'PASS' if row['pass'] else 'FAIL':7} {'; '.join(used)}", flush=True)
    return ok


def row_independence(args, rt, rows) -> bool:
    """Rows of an M-row product, of its first M/2 rows and of its first 64, bit for bit."""
    ok = True
    rng = np.random.default_rng(5)
    shapes = [(128, 96, 160, 0)] if args.quick else [(512, 1024, 1024, 1), (4096, 4096, 1024, 0),
                                                      (1024, 512, 6000, 0)]
    for dtype in args.dtypes:
        for M, N, K, tb in shapes:
            a = hv.tensor(rng.standard_normal((M, K)).astype(np.float32).astype(NP[dtype]))
            b = hv.tensor(rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32).astype(NP[dtype]))
            b = b.transpose(0, 1) if tb else b
            for label, tile in [("auto", None)] + ([("coopmat-1", COOP1)] if mm.coopmat_available(rt, dtype) else []):
                mm.FORCE_TILE = tile
                try:
                    full, k_full = _kernels(lambda: a @ b)
                    half, k_half = _kernels(lambda: a[: M // 2] @ b)
                    few, k_few = _kernels(lambda: a[:64] @ b)
                    fb = _bits(full)
                    same = bool(np.array_equal(fb[: M // 2], _bits(half)) and np.array_equal(fb[:64], _bits(few)))
                    row = {"dtype": dtype, "check": "rows", "M": M, "N": N, "K": K, "variant": label, "pass": same,
                           "kernels": {"M": k_full, "M/2": k_half, "64": k_few}}
                except Exception as exc:  # noqa: BLE001
                    same, row = False, {"dtype": dtype, "check": "rows", "M": M, "N": N, "K": K, "variant": label,
                                        "pass": False, "error": f"{type(exc).__name__}: {exc}"}
                finally:
                    mm.FORCE_TILE = None
                ok &= same
                rows.append(row)
                print(f"{dtype:9} rows of {M}x{N}x{K}{' B^T' if tb else ''} ({label}): "
                      f"{'PASS' if same else 'FAIL'}  {row.get('kernels', row.get('error'))}", flush=True)
            del a, b
    return ok


def timing(args, rt, rows) -> None:
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cases = [("small 64x128x96", 64, 128, 96, "nt"), ("small 128x128x256", 128, 128, 256, "tn")] if args.quick \
        else [c for c in bg.CASES if max(c[1:4]) <= args.max_size]
    gen = torch.Generator(device=dev).manual_seed(0)
    print(f"{'dtype':9} {'case':15} {'M x N x K':16} {'variant':18} {'hlx TF/s':>9} {'torch':>7} {'ratio':>6} "
          f"{'peak':>5} {'err':>8}  kernel", flush=True)
    for dtype in args.dtypes:
        variants = [("auto", None)]
        if mm.coopmat_available(rt, dtype):
            variants.append(("coopmat-1 auto", COOP1_AUTO))
        if mm.cm2_available(rt, dtype):
            variants += [(t, t) for t in _listed(rt, dtype)]
        for name, M, N, K, layout in cases:
            ta, tb, ha, hb, ref, tout, hout, flop, reps = bg.operands(M, N, K, layout, dtype, dev, gen)
            t_torch = bg._torch_seconds(ta, tb, tout, reps)
            best = None
            for label, tile in variants:
                if tile in mm.CM2_TILES:  # small tiles for the small products, large ones for the large
                    area = mm.CM2_TILES[tile][0] * mm.CM2_TILES[tile][1]
                    if (max(M, N) >= 2048 and area < 128 * 128) or (max(M, N) < 2048 and area > 128 * 128):
                        continue
                mm.FORCE_TILE = tile
                if tile == COOP1_AUTO:  # coopmat-1 with its own tile choice: cm2 set aside for this row
                    mm.CM2_FAILED.setdefault(dtype, SET_ASIDE)
                try:
                    _, used = _kernels(lambda: hv.matmul(ha, hb, out=hout))
                    got = torch.from_numpy(hout.to(hv.float32).numpy()).to(dev)
                    err = bg._rel_err(got, ref)
                    t_hlx = bg._hlx_seconds(ha, hb, hout, reps)
                except Exception as exc:  # noqa: BLE001 - a variant that fails is reported, not fatal
                    print(f"{dtype:9} {name:15} {label:18} FAILED: {type(exc).__name__}: {exc}", flush=True)
                    rows.append({"dtype": dtype, "case": name, "variant": label, "error": repr(exc)})
                    continue
                finally:
                    mm.FORCE_TILE = None
                    if mm.CM2_FAILED.get(dtype) is SET_ASIDE:
                        del mm.CM2_FAILED[dtype]
                row = {"dtype": dtype, "case": name, "M": M, "N": N, "K": K, "layout": layout, "variant": label,
                       "hlx_tflops": flop / t_hlx / 1e12, "torch_tflops": flop / t_torch / 1e12,
                       "ratio": t_torch / t_hlx, "peak_fraction": flop / t_hlx / bg.PEAK[dtype],
                       "torch_peak_fraction": flop / t_torch / bg.PEAK[dtype], "err_hlx": err,
                       "hlx_us": t_hlx * 1e6, "torch_us": t_torch * 1e6, "kernels": used}
                rows.append(row)
                if tile in mm.CM2_TILES and (best is None or row["ratio"] > best["ratio"]):
                    best = row
                print(f"{dtype:9} {name:15} {f'{M}x{N}x{K}':16} {label:18} {row['hlx_tflops']:9.1f} "
                      f"{row['torch_tflops']:7.1f} {row['ratio']:6.2f} {row['peak_fraction']:5.2f} {err:8.1e}  "
                      f"{'; '.join(used)}", flush=True)
            if best is not None:
                print(f"{'':9} {name:15} best cm2 tile: {best['variant']} ({best['ratio']:.2f} of cuBLAS)", flush=True)
            del ta, tb, ref, tout, ha, hb, hout
            if dev == "cuda":
                torch.cuda.empty_cache()


def device_report(rt) -> dict:
    info = rt.ctx.info
    feats = rt.device.enabled_features
    limits = rt.ctx.physical_device.limits
    rep = {"device": info["device_name"], "driver": info["driver"], "torch": torch.__version__,
           "cooperative_matrix2": bool(feats.get("cooperative_matrix2")),
           "cooperative_matrix2_parts": {k: v for k, v in feats.items() if k.startswith("cooperative_matrix2_")},
           "limits": {k: v for k, v in limits.items() if k.startswith("cooperative_matrix2")},
           "glslang_library": str(glslang_library.library_path()),
           "shapes": info.get("cooperative_matrix2_shapes", []),
           "available": {d: mm.cm2_available(rt, d) for d in ("float16", "bfloat16")},
           "coopmat1": {d: mm.coopmat_available(rt, d) for d in ("float16", "bfloat16")},
           "listed_tiles": {d: _listed(rt, d) for d in ("float16", "bfloat16")}}
    print(f"GEMM on {rep['device']} ({rep['driver']}); VK_NV_cooperative_matrix2 {rep['cooperative_matrix2']} "
          f"{rep['cooperative_matrix2_parts']}; limits {rep['limits']}; glslang library {rep['glslang_library']}")
    print(f"workgroup-scope shapes the device lists: {[s for s in rep['shapes'] if s.get('scope') == 2]}")
    print(f"cm2 available {rep['available']} (coopmat-1 {rep['coopmat1']}); tiles listed {rep['listed_tiles']}",
          flush=True)
    return rep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (lavapipe, torch on the CPU)")
    parser.add_argument("--no-bench", action="store_true", help="no timing")
    parser.add_argument("--no-sweep", action="store_true", help="time CM2_TILES only, not this script's SWEEP")
    parser.add_argument("--max-size", type=int, default=8192)
    parser.add_argument("--check", choices=("all", "auto", "none"), default="all",
                        help="correctness of every listed tile, of coopmat-1 and the device's choice only, or none "
                             "(timing alone)")
    parser.add_argument("--dtypes", default="float16,bfloat16")
    parser.add_argument("--out", default="benchmarks/results/check_gemm_cm2.json")
    args = parser.parse_args(argv)
    args.dtypes = args.dtypes.split(",")
    global CHECK_AUTO_ONLY
    CHECK_AUTO_ONLY = args.check == "auto"
    rt = hv.default_runtime()
    t0 = time.perf_counter()
    library_tiles = list(mm.CM2_TILES)
    if not args.no_sweep:
        # checked and timed beside the library's own; its choice takes none (MIN_GROUPS names none)
        mm.CM2_TILES.update(SWEEP)
    report = {**device_report(rt), "library_tiles": library_tiles}
    results, rows_checks, timing_rows = [], [], []
    ok = True
    if args.check != "none":
        ok = correctness(args, rt, results)
        print(f"\n[{time.perf_counter() - t0:.0f} s] correctness: {'PASS' if ok else 'FAIL'} "
              f"({sum(r['pass'] for r in results)}/{len(results)})", flush=True)
        rows_ok = row_independence(args, rt, rows_checks)
        ok &= rows_ok
        print(f"[{time.perf_counter() - t0:.0f} s] rows: {'PASS' if rows_ok else 'FAIL'}; cm2 build failures: "
              f"{mm.CM2_FAILED or 'none'}", flush=True)
    if not args.no_bench:
        print(f"\n[{time.perf_counter() - t0:.0f} s] timing (TF32 off; peak 989 TFLOP/s)", flush=True)
        try:
            timing(args, rt, timing_rows)
        except Exception:  # noqa: BLE001 - the correctness verdict stands
            traceback.print_exc()
            print("timing: FAILED (see the traceback)")
        auto = [r for r in timing_rows if r.get("variant") == "auto"]
        if auto:
            print("\nsummary (auto):")
            for r in auto:
                print(f"  {r['dtype']:9} {r['case']:15} {r['hlx_tflops']:7.1f} TFLOP/s  torch {r['torch_tflops']:7.1f}"
                      f"  ratio {r['ratio']:.2f}  peak {r['peak_fraction']:.2f}  {'; '.join(r['kernels'])}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({**report, "quick": args.quick, "pass": ok, "cm2_failed": mm.CM2_FAILED,
                   "tiles": {k: list(v) for k, v in mm.CM2_TILES.items()}, "cases": results, "rows": rows_checks,
                   "timing": timing_rows}, f, indent=2, default=str)
    print(f"[{time.perf_counter() - t0:.0f} s] {'PASS' if ok else 'FAIL'}; wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
