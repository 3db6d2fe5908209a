"""Check, then time, the cooperative-matrix-2 attention forward (ops/attention_cm2.py) on a GPU.

1. Correctness, with the kernel required ($HLX_ATTENTION_COOPMAT=2): check_attention_coopmat.py's
   cases (float16 and bfloat16 against the definition in float64, odd lengths, L != S, causal or
   not, masks, rows with no key, head dims 64/128 mixed, batch x heads > 1, NaN-poisoned outputs,
   gradients through the cooperative-matrix-1 backward from the saved logsumexp, the same bits
   twice and at batch 1). Each case must have run attention/attention_cm2.
   Then the same cases with gradients through the cm2 backward ($HLX_ATTENTION_COOPMAT_BWD=2).
2. Every block-size variant of the forward (BQ, BK, THREADS, ROWSUM_MMA) and of the backward (BR,
   BT, THREADS) on a subset of the cases.
3. Timing, float16, S = L in 512, 1024, 2048, 4096, head dims 64 and 128, causal and not: torch's
   SDPA; hlx with coopmat-1 forward and backward (cm1), the cm2 forward with the coopmat-1
   backward (cm2), and both on cm2 (cm2+bwd); forward, and forward + backward; the ratio
   torch / hlx and TFLOP/s; then the forward of every variant that passed.

Exit status 1 on any FAIL. Run: python benchmarks/check_attention_cm2.py [--quick] [--out F.json]
(--quick: small shapes for lavapipe, which has no cooperative matrices: it says cm2 is unavailable,
checks the fallback's answers and times the fused kernel against torch on the CPU.)
On the H100 (carry .gl, .whl, .glslang):
    bash benchmarks/device_run.sh "python3 benchmarks/check_attention_cm2.py --out \\$OUT/check_attention_cm2.json"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hlx_vulkan as hv  # noqa: E402
from hlx_vulkan import glslang_library  # noqa: E402
from hlx_vulkan.nn import functional as F  # noqa: E402
from hlx_vulkan.ops import attention_cm2 as cm2  # noqa: E402
from hlx_vulkan.ops import attention_coopmat as ac  # noqa: E402
import check_attention_coopmat as cac  # noqa: E402
from timing import capture_cuda_graph, mean_seconds  # noqa: E402

import torch  # noqa: E402

FWD = "attention/attention_cm2"
BWD = "attention/attention_cm2_bwd"
SHAPES = [(4, 16, 512), (2, 16, 1024), (1, 16, 2048), (1, 8, 4096)]  # (B, H, L); S = L
QUICK_SHAPES = [(1, 2, 128, 64), (1, 2, 256, 64)]  # (B, H, L, D)
VARIANT_CASES = {"odd causal", "L>S causal", "hd128 causal", "bool mask", "big scores", "hd64/128", "aligned causal",
                 "aligned hd128"}
# Beside check_attention_coopmat's cases: lengths that are multiples of every block (the unclamped loads).
CASES = cac.CASES + [
    ("aligned", "float16", (2, 3), 256, 256, 64, 64, False, None, True),
    ("aligned causal", "float16", (1, 4), 256, 512, 64, 64, True, None, True),
    ("aligned hd128", "float16", (2, 2), 128, 256, 128, 128, True, None, False),
    ("aligned mask", "float16", (2, 2), 128, 128, 64, 64, False, "float", True),
    ("aligned bf16", "bfloat16", (1, 3), 128, 256, 128, 128, True, None, True),
]
PEAK_TFLOPS = 989.0


def _mode(value, bwd=None):
    """Set (or with None, clear) $HLX_ATTENTION_COOPMAT and $HLX_ATTENTION_COOPMAT_BWD."""
    for env, v in ((cm2.ENV, value), (cm2.ENV_BWD, bwd)):
        if v is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = v


def why_unavailable(rt) -> str | None:
    feats = rt.device.enabled_features
    if not feats.get("cooperative_matrix2"):
        return "the device does not enable VK_NV_cooperative_matrix2"
    if not glslang_library.available():
        return "no glslang library (pip install slangpy, or $HLX_GLSLANG_LIBRARY)"
    if not cm2.available(rt, hv.float16, 64, 64):
        return "the default tile does not fit the device's limits or shapes"
    return None


def correctness(args, rt, results, backward=False) -> bool:
    """The cases with the cm2 forward (and with ``backward``, the cm2 backward: the cases with gradients)."""
    all_ok = True
    print(cac.header("cm2", 6))
    for case in CASES:
        name, dtype, batch, L, S, E, EV, causal, mkind, grad = case
        if backward and not grad:
            continue
        if not cm2.available(rt, getattr(hv, dtype), E, EV, backward):
            print(f"{name:<18}skipped: cm2 cannot run {dtype} at head dims {E}/{EV} here")
            continue
        try:
            ok, errs, used, same = cac.check_case(case, np.random.default_rng(zlib.crc32(name.encode())), rt, True,
                                                  fwd_name=FWD, bwd_name=BWD if backward else cac.BWD_NAME)
            err_text = ", ".join(f"{e:.1e}" for e in errs.values())
        except Exception as exc:  # noqa: BLE001 - a failing case must not end the run
            ok, errs, used, same = False, {}, None, None
            err_text = cac.failure_text(exc)
        all_ok &= ok
        print(cac.row(case, used, same, err_text, ok, 6), flush=True)
        results.append(cac.record(case, same, errs, ok, cm2=used, cm2_backward=backward))
    return all_ok


def variant_checks(rt, results) -> list:
    good = []
    for cfg in cm2.VARIANTS:
        cm2.FORCE_CONFIG = cfg
        errs, fails, count = [], [], 0
        try:
            for case in CASES:
                name, dtype, E, EV = case[0], case[1], case[5], case[6]
                if name not in VARIANT_CASES or dtype != "float16" or cm2.config(rt, hv.float16, E, EV) != cfg:
                    continue
                count += 1
                _variant_case(case, rt, f"variant {cfg}", errs, fails, fwd_name=FWD)
        finally:
            cm2.FORCE_CONFIG = None
        ok = count > 0 and not fails
        if ok:
            good.append(cfg)
        verdict = "fits no case here" if not count else "PASS" if ok else "FAIL " + ", ".join(fails)
        worst = f"{max(errs):.1e}" if errs else "-"
        print(f"variant BQ={cfg[0]:<4}BK={cfg[1]:<4}THREADS={cfg[2]:<4}ROWSUM_MMA={cfg[3]} {count} cases, max err "
              f"{worst}: {verdict}", flush=True)
        results.append({"variant": list(cfg), "cases": count, "max_err": max(errs) if errs else None,
                        "failed": fails, "pass": ok})
    return good


def _variant_case(case, rt, label: str, errs: list, fails: list, **names) -> None:
    """check_attention_coopmat's check of one case under a forced variant: its largest error into
    ``errs``, its name into ``fails`` where it failed or raised."""
    name = case[0]
    try:
        ok, e, _, _ = cac.check_case(case, np.random.default_rng(zlib.crc32(name.encode())), rt, True, **names)
        errs.append(max(e.values()))
    except Exception as exc:  # noqa: BLE001 - a variant that raises is a failed variant
        ok = False
        print(f"  {label} {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:100]}")
    if not ok:
        fails.append(name)


def bwd_variant_checks(rt, results) -> None:
    """Every backward variant (BR, BT, THREADS) on the cases with gradients among VARIANT_CASES."""
    for cfg in cm2.BWD_VARIANTS:
        cm2.FORCE_BWD_CONFIG = cfg
        errs, fails, count = [], [], 0
        try:
            for case in CASES:
                name, dtype, E, EV, grad = case[0], case[1], case[5], case[6], case[9]
                if (name not in VARIANT_CASES and name not in ("odd", "hd128")) or not grad or dtype != "float16" \
                        or cm2.bwd_config(rt, hv.float16, E, EV) != cfg:
                    continue
                count += 1
                _variant_case(case, rt, f"backward variant {cfg}", errs, fails, fwd_name=FWD, bwd_name=BWD)
        finally:
            cm2.FORCE_BWD_CONFIG = None
        verdict = "fits no case here" if not count else "PASS" if not fails else "FAIL " + ", ".join(fails)
        worst = f"{max(errs):.1e}" if errs else "-"
        print(f"backward variant BR={cfg[0]:<4}BT={cfg[1]:<4}THREADS={cfg[2]:<4} {count} cases, max err {worst}: "
              f"{verdict}", flush=True)
        results.append({"bwd_variant": list(cfg), "cases": count, "max_err": max(errs) if errs else None,
                        "failed": fails, "pass": count > 0 and not fails})


def _inputs(B, H, L, D, dev):
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((B, H, L, D)).astype(np.float16) for _ in range(4)]
    hs = [hv.tensor(x, requires_grad=i < 3) for i, x in enumerate(xs)]
    ts = [torch.tensor(x, device=dev).requires_grad_(i < 3) for i, x in enumerate(xs)]
    return hs, ts


def _torch_replayed(args, ts, causal, calls=10) -> float | None:
    """torch's forward a call from a CUDA graph of ``calls`` forwards (None off CUDA): the peer of
    hlx's replayed time, both without host work."""
    if not torch.cuda.is_available():
        return None
    with torch.no_grad():
        graph = capture_cuda_graph(lambda: torch.nn.functional.scaled_dot_product_attention(*ts[:3], is_causal=causal),
                                   calls)
    return mean_seconds(graph.replay, torch.cuda.synchronize, 1, max(1, args.reps // 2)) / calls


def _replayed(args, rt, hs, ts, causal, kinds, row, tt, calls=10) -> str:
    """The forward's time a call from a captured graph of ``calls`` forwards (what the kernels take
    without the eager host path), per kind; the ratio against torch's CUDA-graph time where there
    is CUDA, else against its eager time ``tt``."""
    t_graph = _torch_replayed(args, ts, causal, calls)
    if t_graph is not None:
        row["torch_replay_ms"] = 1e3 * t_graph
        tt = t_graph
    out = [f"torch {1e3 * tt:.3f} ms"]
    for kind, env, env_bwd in kinds:
        if kind == "cm2+bwd":
            continue
        _mode(env, env_bwd)
        graph = None
        try:
            with hv.no_grad():
                with hv.capture() as graph:
                    for _ in range(calls):
                        F.scaled_dot_product_attention(*hs[:3], is_causal=causal)
                t = mean_seconds(graph.replay, rt.synchronize, 1, max(1, args.reps // 2)) / calls
            row[f"{kind}_replay_ms"] = 1e3 * t
            row[f"{kind}_replay_ratio"] = tt / t
            out.append(f"{kind} {1e3 * t:.3f} ms ({tt / t:.3f})")
        except Exception as exc:  # noqa: BLE001
            out.append(f"{kind} {type(exc).__name__}: {str(exc).splitlines()[0][:60]}")
        finally:
            _mode(None)
            if graph is not None:
                graph.destroy()
    return ", ".join(out)


def timing(args, rt, rows, good_variants, have_cm2):
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sync_t = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    shapes = QUICK_SHAPES if args.quick else [(B, H, L, D) for D in (64, 128) for B, H, L in SHAPES]
    # (name, forward, backward): cm2+bwd only where the backward is timed
    kinds = [("cm1", "1", "1"), ("cm2", "2", "1"), ("cm2+bwd", "2", "2")] if have_cm2 else [("hlx", None, None)]
    print(f"\n{'B':>3}{'H':>4}{'L':>6}{'D':>5} {'causal':<7}{'mode':<9}{'torch ms':>10}"
          + "".join(f"{k + ' ms':>10}{'ratio':>7}{'TFLOP/s':>9}" for k, _, _ in kinds))
    for B, H, L, D in shapes:
        hs, ts = _inputs(B, H, L, D, dev)
        for causal in (False, True):
            flops = 4.0 * B * H * L * L * D * (0.5 if causal else 1.0)
            for mode_name, mult in (("fwd", 1.0), ("fwd+bwd", 3.5)):
                if mode_name == "fwd":
                    def t_fn():
                        with torch.no_grad():
                            torch.nn.functional.scaled_dot_product_attention(*ts[:3], is_causal=causal)

                    def h_fn():
                        with hv.no_grad():
                            F.scaled_dot_product_attention(*hs[:3], is_causal=causal)
                else:
                    def t_fn():
                        for t in ts[:3]:
                            t.grad = None
                        torch.nn.functional.scaled_dot_product_attention(*ts[:3], is_causal=causal).backward(ts[3])

                    def h_fn():
                        for t in hs[:3]:
                            t.grad = None
                        F.scaled_dot_product_attention(*hs[:3], is_causal=causal).backward(hs[3])
                tt = mean_seconds(t_fn, sync_t, args.warmup, args.reps)
                line = f"{B:>3}{H:>4}{L:>6}{D:>5} {str(causal):<7}{mode_name:<9}{1e3 * tt:>10.3f}"
                row = {"B": B, "H": H, "L": L, "D": D, "causal": causal, "mode": mode_name, "torch_ms": 1e3 * tt}
                if mode_name == "fwd":
                    with torch.no_grad():
                        ref = torch.nn.functional.scaled_dot_product_attention(*ts[:3], is_causal=causal)
                    ref = ref.float().cpu().numpy()
                for kind, env, env_bwd in kinds:
                    if mode_name == "fwd" and kind == "cm2+bwd":
                        line += f"{'':>26}"
                        continue
                    _mode(env, env_bwd)
                    try:
                        if mode_name == "fwd":  # the answer, beside torch's
                            with hv.no_grad():
                                got = F.scaled_dot_product_attention(*hs[:3], is_causal=causal).to(hv.float32).numpy()
                            err = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
                            row[f"{kind}_rel_err_vs_torch"] = err
                            if not err < 1e-2:
                                print(f"  {kind}: relative error {err:.1e} against torch: FAIL")
                                row["fail"] = True
                        t = mean_seconds(h_fn, rt.synchronize, args.warmup, args.reps)
                        tf = flops * mult / t / 1e12
                        line += f"{1e3 * t:>10.3f}{tt / t:>7.3f}{tf:>9.2f}"
                        row.update({f"{kind}_ms": 1e3 * t, f"{kind}_ratio": tt / t, f"{kind}_tflops": tf,
                                    f"{kind}_frac_peak": tf / PEAK_TFLOPS})
                    except Exception as exc:  # noqa: BLE001
                        line += f"{type(exc).__name__:>26}"
                        traceback.print_exc()
                    finally:
                        _mode(None)
                rows.append(row)
                print(line, flush=True)
                if mode_name == "fwd":
                    print("      replayed (no host work a call; torch: a CUDA graph): " + _replayed(args, rt, hs, ts, causal, kinds, row, tt),
                          flush=True)
    if not good_variants:
        return
    print("\ncm2 forward by variant (BQ, BK, THREADS, ROWSUM_MMA): ms (torch SDPA / hlx)")
    _mode("2", "1")
    try:
        for B, H, L, D in shapes:
            hs, ts = _inputs(B, H, L, D, dev)
            for causal in (False, True):
                with torch.no_grad():
                    tt = mean_seconds(lambda: torch.nn.functional.scaled_dot_product_attention(*ts[:3], is_causal=causal),
                                      sync_t, args.warmup, args.reps)
                line = f"  B{B} H{H} L{L} D{D} causal={causal!s:<5} torch {1e3 * tt:.3f}:"
                for cfg in good_variants:
                    cm2.FORCE_CONFIG = cfg
                    try:
                        if cm2.config(rt, hv.float16, D, D) != cfg:
                            continue
                        with hv.no_grad():
                            t = mean_seconds(lambda: F.scaled_dot_product_attention(*hs[:3], is_causal=causal),
                                             rt.synchronize, args.warmup, args.reps)
                        line += f"  {','.join(map(str, cfg))} {1e3 * t:.3f} ({tt / t:.3f})"
                        rows.append({"B": B, "H": H, "L": L, "D": D, "causal": causal, "mode": "fwd",
                                     "variant": list(cfg), "cm2_ms": 1e3 * t, "torch_ms": 1e3 * tt,
                                     "cm2_ratio": tt / t})
                    except Exception as exc:  # noqa: BLE001
                        line += f"  {cfg} {type(exc).__name__}"
                    finally:
                        cm2.FORCE_CONFIG = None
                print(line, flush=True)
    finally:
        _mode(None)


def main(argv=None) -> int:
    args = cac.parse_args(argv, __doc__, "the default block sizes only", "benchmarks/results/check_attention_cm2.json")
    t0 = time.perf_counter()
    rt = hv.default_runtime()
    info = rt.ctx.info
    limits = {k: v for k, v in rt.ctx.physical_device.limits.items() if k.startswith("cooperative_matrix2")}
    reason = why_unavailable(rt)
    print(f"attention on {info['device_name']} ({info['driver']}); glslang library: "
          f"{glslang_library.library_path()}; cm2 limits {limits}")
    for s in info.get("cooperative_matrix2_shapes") or []:
        print(f"  cm2 shape: {s}")
    print(f"cooperative-matrix-2 attention: {'available' if reason is None else 'unavailable: ' + reason}; "
          f"cooperative-matrix-1: {ac.coopmat_available(rt, hv.float16)}", flush=True)
    results, variants, rows = [], [], []
    ok, good = True, []
    if reason is None:
        _mode("2", "1")
        try:
            ok = correctness(args, rt, results)
        finally:
            _mode(None)
        print(f"\n[{time.perf_counter() - t0:.0f} s] correctness of the cm2 forward (coopmat-1 backward): "
              f"{'PASS' if ok else 'FAIL'} ({sum(r['pass'] for r in results)}/{len(results)} cases)\n", flush=True)
        bwd_results = []
        _mode("2", "2")
        try:
            bwd_ok = correctness(args, rt, bwd_results, backward=True)
        finally:
            _mode(None)
        print(f"\n[{time.perf_counter() - t0:.0f} s] correctness of the cm2 backward: {'PASS' if bwd_ok else 'FAIL'} "
              f"({sum(r['pass'] for r in bwd_results)}/{len(bwd_results)} cases)"
              + ("" if bwd_ok else "; set attention_cm2.BACKWARD = False until it passes"), flush=True)
        ok &= bwd_ok
        results += bwd_results
        if not args.no_variants:
            _mode("2", "1")
            try:
                good = variant_checks(rt, variants)
            finally:
                _mode(None)
            _mode("2", "2")
            try:
                bwd_variant_checks(rt, variants)
            finally:
                _mode(None)
            ok &= all(v["pass"] or not v["cases"] for v in variants)
    else:  # what runs instead must still be right
        qargs = argparse.Namespace(quick=True)
        ok = cac.correctness(qargs, rt, results)
        print(f"\ncorrectness of the fallback: {'PASS' if ok else 'FAIL'}", flush=True)
    if not args.no_bench:
        print(f"\n[{time.perf_counter() - t0:.0f} s] timing (float16; ratio = torch ms / hlx ms; FLOPs 4BHL^2D, "
              f"half causal, x3.5 with the backward)", flush=True)
        try:
            timing(args, rt, rows, good, reason is None)
            ok &= not any(r.get("fail") for r in rows)
        except Exception:  # noqa: BLE001 - the correctness verdict stands
            traceback.print_exc()
            print("timing: FAILED (see the traceback)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"device": info["device_name"], "driver": info["driver"], "torch": torch.__version__,
                   "quick": args.quick, "cm2": reason is None, "cm2_unavailable_because": reason,
                   "default_config": list(cm2.DEFAULT_CONFIG), "pass": ok, "cases": results, "variants": variants,
                   "timing": rows}, f, indent=2)
    print(f"[{time.perf_counter() - t0:.0f} s] wrote {args.out}: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
