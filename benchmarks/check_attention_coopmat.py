"""Check, then time, the cooperative-matrix attention forward (ops/attention_coopmat.py) on a GPU.

1. Correctness: float16 (and bfloat16 where the device multiplies it) attention against the
   definition in float64 (torch), on odd sequence lengths (not multiples of 64), L != S, causal or
   not, bool / float / broadcast masks and rows with every key masked out, head dims 64 and 128 (and
   64 / 128 mixed), batch x heads > 1; outputs land on NaN-poisoned memory; most cases check the
   gradients too (the cooperative-matrix backward, or where it fails, the fused one beside it for
   comparison); the same bits twice and whatever the batch. Each case prints its max error,
   whether the cooperative-matrix kernels ran (forward, and backward where gradients are checked;
   they must, where the device has cooperative matrices) and PASS or FAIL; an exception is a FAIL
   of its case, not the end of the run.
   Then every variant of the kernel (subgroups a workgroup, prefetch, keys a tile) on a subset.
2. Timing: bench_attention's float16 rows (forward, forward + backward) beside torch's SDPA, and
   the forward of every variant that passed.

Exit status 1 on any FAIL. Run: python benchmarks/check_attention_coopmat.py [--quick] [--out F.json]
(--quick: small shapes for lavapipe, which has no cooperative matrices: the fused kernel is checked.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlx_vulkan as hv  # noqa: E402
from hlx_vulkan.nn import functional as F  # noqa: E402
from hlx_vulkan.ops import attention_coopmat as ac  # noqa: E402
from timing import mean_seconds  # noqa: E402

import torch  # noqa: E402

TOL = {"float16": 1e-2, "bfloat16": 5e-2}  # max error / max(1, max |reference|)
# (name, dtype, batch, L, S, E, EV, causal, mask, grad): mask None, "bool", "float", "bcast" (bool over
# (L, S) for every batch and head) or "dead" (bool, some rows with no key at all)
CASES = [
    ("base", "float16", (2, 3), 64, 64, 64, 64, False, None, False),
    ("odd", "float16", (2, 3), 77, 131, 64, 64, False, None, True),
    ("odd causal", "float16", (2, 3), 77, 77, 64, 64, True, None, True),
    ("long causal", "float16", (1, 4), 300, 300, 64, 64, True, None, False),
    ("L>S causal", "float16", (1, 2), 150, 70, 64, 64, True, None, True),
    ("hd128", "float16", (2, 2), 97, 200, 128, 128, False, None, True),
    ("hd128 causal", "float16", (1, 3), 130, 130, 128, 128, True, None, False),
    ("hd64/128", "float16", (2, 2), 33, 45, 64, 128, False, None, True),
    ("hd128/64", "float16", (2, 2), 70, 45, 128, 64, True, None, True),
    ("bool mask", "float16", (2, 3), 77, 90, 64, 64, False, "bool", True),
    ("float mask", "float16", (2, 2), 65, 129, 128, 128, False, "float", True),
    ("bcast mask", "float16", (3, 2), 50, 99, 64, 64, False, "bcast", True),
    ("dead rows", "float16", (2, 2), 40, 70, 64, 64, False, "dead", True),
    ("no batch", "float16", (), 100, 100, 64, 64, True, None, False),
    ("one row", "float16", (2, 1), 1, 1, 64, 64, False, None, False),
    ("big scores", "float16", (1, 2), 80, 80, 64, 64, False, None, False),
    ("bf16", "bfloat16", (2, 3), 77, 131, 64, 64, True, None, True),
    ("bf16 hd128 mask", "bfloat16", (2, 2), 70, 90, 128, 128, False, "float", False),
]
QUICK = {"base", "odd causal", "bool mask", "dead rows", "bf16"}
# The forward kernel's variants (ops/attention_coopmat.py: subgroups, prefetch, keys a tile, 16-row blocks a
# subgroup), each checked on these.
VARIANTS = [(nsg, prefetch, bk, rm) for rm in (1, 2) for nsg in (4, 8) for prefetch in (0, 1) for bk in (64, 32)]
VARIANT_CASES = {"odd causal", "L>S causal", "hd128 causal", "bool mask", "big scores"}


def _mask(kind, batch, L, S, rng):
    if kind is None:
        return None
    if kind == "float":
        return rng.standard_normal(batch + (L, S)).astype(np.float32) * 2
    if kind == "bcast":
        return rng.random((L, S)) > 0.3
    m = rng.random(batch + (L, S)) > 0.3
    if kind == "dead":
        m[..., ::7, :] = False  # every 7th row sees no key
    return m


def _reference(q, k, v, mask, causal, grad_out):
    """The definition in float64: softmax(q k^T / sqrt(E) + mask) v; a row with no key gives zeros."""
    tq, tk, tv = (torch.tensor(x.astype(np.float64), requires_grad=grad_out is not None) for x in (q, k, v))
    s = tq @ tk.transpose(-1, -2) / math.sqrt(q.shape[-1])
    L, S = s.shape[-2:]
    allowed = torch.ones(s.shape, dtype=torch.bool)
    if causal:
        allowed = allowed & torch.ones(L, S, dtype=torch.bool).tril()
    if mask is not None and mask.dtype == bool:
        allowed = allowed & torch.tensor(mask)
    elif mask is not None:
        s = s + torch.tensor(mask.astype(np.float64))
    live = allowed.any(-1, keepdim=True)
    s = s.masked_fill(~(allowed | ~live), -math.inf)  # dead rows unmasked here, zeroed below
    out = torch.softmax(s, -1) * live @ tv
    grads = None
    if grad_out is not None:
        out.backward(torch.tensor(grad_out.astype(np.float64)))
        grads = [t.grad.numpy() for t in (tq, tk, tv)]
    return out.detach().numpy(), grads


def _poison(nbytes):
    junk = hv.full((nbytes // 4 + 1024,), np.nan)
    del junk  # its range goes back to the pool: the next outputs take it, NaN-filled


def _err(got, ref):
    got = np.asarray(got, np.float64)
    if not np.all(np.isfinite(got)):
        return math.inf
    return float(np.max(np.abs(got - ref)) / max(1.0, float(np.max(np.abs(ref)))))


BWD_NAME = "attention/attention_coopmat_bwd"


def check_case(case, rng, rt, expect_coop, fwd_name="attention/attention_coopmat", bwd_name=BWD_NAME):
    name, dtype, batch, L, S, E, EV, causal, mkind, grad = case
    q = rng.standard_normal(batch + (L, E)).astype(np.float32)
    if name == "big scores":
        q *= 8  # scores of +-hundreds: the running maximum moves tile after tile
    k = rng.standard_normal(batch + (S, E)).astype(np.float32)
    v = rng.standard_normal(batch + (S, EV)).astype(np.float32)
    mask = _mask(mkind, batch, L, S, rng)
    hd = getattr(hv, dtype)
    hq, hk, hvv = (hv.tensor(x).to(hd) for x in (q, k, v))
    # the reference sees the rounded inputs
    q, k, v = (t.to(hv.float32).numpy() for t in (hq, hk, hvv))
    g = rng.standard_normal(batch + (L, EV)).astype(np.float32) if grad else None
    if grad:
        g = hv.tensor(g).to(hd).to(hv.float32).numpy()
    ref, ref_grads = _reference(q, k, v, mask, causal, g)
    hm = None if mask is None else hv.tensor(mask)
    rt.kernels.reset_usage()
    _poison(ref.size * 4 * 2)
    if grad:
        for t in (hq, hk, hvv):
            t.requires_grad = True
    out = F.scaled_dot_product_attention(hq, hk, hvv, attn_mask=hm, is_causal=causal)
    coop = any(kern.name == fwd_name for kern in rt.kernels.used())
    errs = {"out": _err(out.to(hv.float32).numpy(), ref)}
    if grad:
        _poison(ref.size * 4 * 6)
        rt.kernels.reset_usage()
        out.backward(hv.tensor(g).to(hd))
        bwd = any(kern.name == bwd_name for kern in rt.kernels.used())
        coop = coop and (bwd or not (ac.BACKWARD and expect_coop))
        for nm, t, r in zip("qkv", (hq, hk, hvv), ref_grads):
            errs["d" + nm] = _err(t.grad.to(hv.float32).numpy(), r)
    with hv.no_grad():
        again = F.scaled_dot_product_attention(hq, hk, hvv, attn_mask=hm, is_causal=causal)
        same = np.array_equal(out.to(hv.float32).numpy(), again.to(hv.float32).numpy())
        if batch and batch[0] > 1:  # the first batch alone gives the same bits
            m1 = hm if hm is None or mkind == "bcast" else hm[:1]
            one = F.scaled_dot_product_attention(hq[:1], hk[:1], hvv[:1], attn_mask=m1, is_causal=causal)
            same = same and np.array_equal(one.to(hv.float32).numpy(), out[:1].to(hv.float32).numpy())
    ok = all(e <= TOL[dtype] for e in errs.values()) and same and (coop or not expect_coop)
    return ok, errs, coop, same


def header(column: str, width: int) -> str:
    """The correctness table's header, ``column`` (the kernel used) ``width`` wide (check_attention_cm2 too)."""
    return (f"{'case':<18}{'dtype':<10}{'batch':<8}{'L':>5}{'S':>5}{'E':>5}{'EV':>5} {'causal':<7}{'mask':<7}"
            f"{column:<{width}}{'same':<6}{'max err (out, dq, dk, dv)':<36}result")


def row(case, used, same, err_text: str, ok: bool, width: int) -> str:
    """A case's line of the correctness table."""
    name, dtype, batch, L, S, E, EV, causal, mkind, _ = case
    return (f"{name:<18}{dtype:<10}{str(batch):<8}{L:>5}{S:>5}{E:>5}{EV:>5} {str(causal):<7}{str(mkind):<7}"
            f"{str(used):<{width}}{str(same):<6}{err_text:<36}{'PASS' if ok else 'FAIL'}")


def record(case, same, errs: dict, ok: bool, **used) -> dict:
    """A case's JSON row; ``used``: which kernels ran (by the caller's names)."""
    name, dtype, batch, L, S, E, EV, causal, mkind, _ = case
    return {"case": name, "dtype": dtype, "batch": list(batch), "L": L, "S": S, "E": E, "EV": EV, "causal": causal,
            "mask": mkind, **used, "same_bits": same, "errors": errs, "pass": ok}


def failure_text(exc: Exception) -> str:
    """A case that raised: its traceback printed, one line for the table (a failing case must not end the run)."""
    traceback.print_exc()
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"


def correctness(args, rt, results) -> bool:
    all_ok = True
    print(header("coopmat", 8))
    for case in CASES:
        name, dtype = case[0], case[1]
        if args.quick and name not in QUICK:
            continue
        expect = ac.coopmat_available(rt, getattr(hv, dtype))
        if dtype == "bfloat16" and not expect and not args.quick:
            print(f"{name:<18}skipped: no bfloat16 cooperative matrices on this device")
            continue
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        try:
            ok, errs, coop, same = check_case(case, rng, rt, expect)
            err_text = ", ".join(f"{e:.1e}" for e in errs.values())
            if not ok and case[9] and ac.BACKWARD and expect:  # which backward fails?
                ac.BACKWARD = False
                try:
                    ok2, errs2, _, _ = check_case(case, np.random.default_rng(zlib.crc32(name.encode())), rt, expect)
                finally:
                    ac.BACKWARD = True
                print(f"  {name}: with the fused backward instead: "
                      f"{', '.join(f'{e:.1e}' for e in errs2.values())} {'PASS' if ok2 else 'FAIL'}")
        except Exception as exc:  # noqa: BLE001 - a failing case must not end the run
            ok, errs, coop, same = False, {}, None, None
            err_text = failure_text(exc)
        all_ok &= ok
        print(row(case, coop, same, err_text, ok, 8), flush=True)
        results.append(record(case, same, errs, ok, coopmat=coop, expect_coopmat=expect))
    return all_ok


def variant_checks(args, rt, results) -> bool:
    """Every kernel variant (NSG, PREFETCH, BK, RM) that fits, on the cases of VARIANT_CASES."""
    all_ok = True
    for cfg in VARIANTS:
        errs, fails, count = [], [], 0
        ac.FORCE_CONFIG = cfg
        try:
            for case in CASES:
                name, E, EV = case[0], case[5], case[6]
                if name not in VARIANT_CASES or ac.config(rt, E, EV) != cfg:
                    continue
                rng = np.random.default_rng(zlib.crc32(name.encode()))
                count += 1
                try:
                    ok, e, coop, same = check_case(case, rng, rt, True)
                    errs.append(max(e.values()))
                except Exception as exc:  # noqa: BLE001
                    ok = False
                    print(f"  variant {cfg} {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
                if not ok:
                    fails.append(name)
        finally:
            ac.FORCE_CONFIG = None
        ok = not fails
        all_ok &= ok
        worst = f"{max(errs):.1e}" if errs else "-"
        verdict = "fits no case here" if not count else "PASS" if ok else "FAIL " + ", ".join(fails)
        print(f"variant NSG={cfg[0]} PREFETCH={cfg[1]} BK={cfg[2]:<3} RM={cfg[3]} {count} cases, max err {worst}: "
              f"{verdict}", flush=True)
        results.append({"variant": list(cfg), "cases": count, "max_err": max(errs) if errs else None,
                        "failed": fails, "pass": ok and count > 0})
    return all_ok


def variant_timing(args, rt, rows, good):
    """The float16 forward of every variant that passed, beside torch's SDPA (ms, torch / hlx)."""
    import bench_attention as ba
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync_t = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    print("\nforward by variant (NSG, PREFETCH, BK, RM): ms (torch SDPA / hlx)")
    for dtype, B, H, L, D in [c for c in ba.FULL if c[0] == "float16"]:
        for causal in (False, True):
            rng = np.random.default_rng(0)
            xs = [rng.standard_normal((B, H, L, D)).astype(np.float16) for _ in range(3)]
            hs = [hv.tensor(x) for x in xs]
            ts = [torch.tensor(x, device=dev) for x in xs]
            with torch.no_grad():
                tt = mean_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(*ts, is_causal=causal),
                                  sync_t, args.warmup, args.reps)
            line = f"  B{B} H{H} L{L} D{D} causal={causal!s:<5} torch {1e3 * tt:.3f}:"
            for cfg in good:
                ac.FORCE_CONFIG = cfg
                try:
                    if ac.config(rt, D, D) != cfg:
                        continue
                    with hv.no_grad():
                        t = mean_seconds(lambda: F.scaled_dot_product_attention(*hs, is_causal=causal),
                                         rt.synchronize, args.warmup, args.reps)
                    line += f"  {','.join(map(str, cfg))} {1e3 * t:.3f} ({tt / t:.3f})"
                    rows.append({"B": B, "H": H, "L": L, "D": D, "causal": causal, "variant": list(cfg),
                                 "hlx_ms": 1e3 * t, "torch_ms": 1e3 * tt, "torch_over_hlx": tt / t})
                except Exception as exc:  # noqa: BLE001
                    line += f"  {cfg} {type(exc).__name__}"
                finally:
                    ac.FORCE_CONFIG = None
            print(line, flush=True)


def parse_args(argv, doc: str, variants_help: str, out: str):
    """The options of this script and of check_attention_cm2.py, with their defaults filled in."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (lavapipe, torch on the CPU)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--no-bench", action="store_true", help="no timing")
    parser.add_argument("--no-variants", action="store_true", help=variants_help)
    parser.add_argument("--out", default=out)
    args = parser.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    return args


def main(argv=None) -> int:
    args = parse_args(argv, __doc__, "the default kernel only", "benchmarks/results/check_attention_coopmat.json")
    rt = hv.default_runtime()
    info = rt.ctx.info
    print(f"attention on {info['device_name']} ({info['driver']}); cooperative matrices: float16 "
          f"{ac.coopmat_available(rt, hv.float16)}, bfloat16 {ac.coopmat_available(rt, hv.bfloat16)}; shared "
          f"memory {rt.ctx.physical_device.limits['max_compute_shared_memory_size']} bytes")
    t0 = time.perf_counter()
    results, variants, timing, tiles = [], [], [], []
    ok = correctness(args, rt, results)
    print(f"\ncorrectness: {'PASS' if ok else 'FAIL'} ({sum(r['pass'] for r in results)}/{len(results)} cases)",
          flush=True)
    if ac.coopmat_available(rt, hv.float16) and not args.no_variants:
        print(f"\n[{time.perf_counter() - t0:.0f} s] the kernel's variants (the default is the first of ops/attention_coopmat.py's CONFIGS that fits):")
        variants_ok = variant_checks(args, rt, variants)
        print(f"variants: {'PASS' if variants_ok else 'FAIL'}", flush=True)
        ok &= variants_ok
    if not args.no_bench:
        print(f"\n[{time.perf_counter() - t0:.0f} s] timing", flush=True)
        try:
            import bench_attention as ba
            if not args.quick:
                ba.FULL = [c for c in ba.FULL if c[0] == "float16"]
            ba_args = argparse.Namespace(quick=args.quick, reps=args.reps, warmup=args.warmup)
            for cfg in (ba.QUICK if args.quick else ba.FULL):
                for causal in (False, True):
                    ba.bench_sdpa(cfg, causal, ba_args, timing)
            print(f"\n{'dtype':<9}{'B':>3}{'H':>4}{'L':>6}{'D':>5} {'causal':<7}{'mode':<9}{'hlx ms':>10}"
                  f"{'torch ms':>10}{'torch/hlx':>10}{'TFLOP/s':>9}{'%peak':>7}{'%BW':>7}{'rel err':>9}")
            for r in timing:
                tm = f"{r['torch_ms']:.3f}" if r["torch_ms"] is not None else "-"
                ratio = f"{r['torch_over_hlx']:.3f}" if r["torch_over_hlx"] is not None else "-"
                err = f"{r['rel_err_vs_torch']:.1e}" if r["rel_err_vs_torch"] is not None else "-"
                print(f"{r['dtype']:<9}{r['B']:>3}{r['H']:>4}{r['L']:>6}{r['D']:>5} {str(r['causal']):<7}"
                      f"{r['mode']:<9}{r['hlx_ms']:>10.3f}{tm:>10}{ratio:>10}{r['hlx_tflops']:>9.3f}"
                      f"{100 * r['frac_peak_flops']:>7.2f}{100 * r['frac_peak_bw']:>7.2f}{err:>9}")
            if ac.coopmat_available(rt, hv.float16) and not args.no_variants:
                variant_timing(args, rt, tiles, [tuple(v["variant"]) for v in variants if v["pass"]])
        except Exception:  # noqa: BLE001 - the correctness verdict stands
            traceback.print_exc()
            print("timing: FAILED (see the traceback)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "torch": torch.__version__,
                   "quick": args.quick, "pass": ok, "cases": results, "variants": variants, "timing": timing,
                   "variant_timing": tiles}, f,
                  indent=2)
    print(f"[{time.perf_counter() - t0:.0f} s] wrote {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
