"""Where the GEMM kernels' time goes on this device: each library kernel (the float32 register
tile and the float16 cooperative-matrix tile, the tiles the library picks at 4096^3) timed as it
is, without the global loads in its k loop (the shared tiles are reused: no operand traffic), and
without those loads and the shared stores and barriers (the multiply-adds and shared reads
alone). The variants are built from the library's own kernel text, so they follow it; their
results are garbage, only their times count. Also the register count the driver reports for each
(VK_KHR_pipeline_executable_properties, where offered). Prints a table and saves JSON.

Run: python benchmarks/probe_gemm_stages.py [--sizes 4096,8192] [--out benchmarks/results/probe_gemm_stages.json]
(On lavapipe the float32 row runs, slowly; the float16 one needs cooperative matrices.)
"""

from __future__ import annotations

import argparse
import os
import tempfile

os.environ.setdefault("HLX_PIPELINE_STATS", "1")  # before the runtime makes its device

import hlx_vulkan as hv  # noqa: E402
from hlx_vulkan.ops import matmul as mm  # noqa: E402
from hlx_vulkan.runtime import KernelSpec  # noqa: E402
from report import save_rows  # noqa: E402
from timing import capture_seconds  # noqa: E402

# (kernel, module attribute, tile, dtype, the loop's load line, the loop's store-and-barrier lines)
KERNELS = (
    ("matmul_tiled.comp", "TILED", "large", "float32",
     "        if (more) load_tile(k0 + BK, kend);  // in flight while this tile is multiplied\n",
     "        if (more) store_tile(s ^ 1u);\n        barrier();\n        s ^= 1u;\n"),
    ("matmul_coopmat.comp", "COOPMAT", "coop_large", "float16",
     "        if (more) fetch(k0 + BK, kend);  // in flight while this tile is multiplied\n",
     "#if STAGES == 2\n        if (more) stash(s ^ 1u);\n        barrier();\n        s ^= 1u;\n#endif\n    }"),
)
STAGES = ("as it is", "no global loads in the loop", "multiply-adds and shared reads only")


def variants(name: str, load: str, store: str, folder: str) -> list[str]:
    """Paths of the kernel as it is and its two cut-down copies."""
    text = (mm._DIR / name).read_text()
    if load not in text or store not in text:
        raise SystemExit(f"{name} changed: update this probe's markers")
    keep_loop_end = "    }" if store.endswith("    }") else ""
    texts = (text, text.replace(load, ""), text.replace(load, "").replace(store, keep_loop_end))
    paths = []
    for i, t in enumerate(texts):
        path = os.path.join(folder, f"{i}_{name}")
        with open(path, "w") as f:
            f.write(t)
        paths.append(path)
    return paths


def _matmul_seconds(a, b, c, reps: int) -> float:
    def record():
        for _ in range(reps):
            hv.matmul(a, b, out=c)
    return capture_seconds(record, reps, 0.5)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4096,8192")
    parser.add_argument("--out", default="benchmarks/results/probe_gemm_stages.json")
    args = parser.parse_args(argv)
    rt = hv.default_runtime()
    mm.CHUNK_K = {k: 1 << 30 for k in mm.CHUNK_K}  # one chunk: the kernel alone, no split-K pass
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, attr, tile, dtype, load, store in KERNELS:
            if dtype != "float32" and not mm.coopmat_available(rt, getattr(hv, dtype)):
                print(f"{name}: no cooperative matrices here")
                continue
            original = getattr(mm, attr)
            for n in (int(v) for v in args.sizes.split(",")):
                dt = getattr(hv, dtype)
                a, b, c = hv.randn(n, n).to(dt), hv.randn(n, n).to(dt), hv.empty((n, n), dtype=dt)
                for stage, path in zip(STAGES, variants(name, load, store, folder)):
                    setattr(mm, attr, KernelSpec(path, mm._BINDINGS, mm._PUSH))
                    mm.FORCE_TILE = tile
                    rt.plans.clear()  # else the first variant's plan (its kernel) serves them all
                    rt.kernels.reset_usage()
                    try:
                        hv.matmul(a, b, out=c)
                        rt.synchronize()
                        registers = [k.pipeline.statistics().get("CS", {}).get("Register Count")
                                     for k in rt.kernels.used()]
                        reps = max(1, min(10, int(4e11 / (2 * n ** 3))))
                        seconds = _matmul_seconds(a, b, c, reps)
                    finally:
                        setattr(mm, attr, original)
                        mm.FORCE_TILE = None
                    rows.append({"kernel": name, "tile": tile, "dtype": dtype, "n": n, "stage": stage,
                                 "tflops": 2 * n ** 3 / seconds / 1e12, "registers": registers})
                    print(f"{name:20} {tile:11} {n:5}^3  {stage:38} {rows[-1]['tflops']:7.1f} TFLOP/s  "
                          f"registers {registers}", flush=True)
                del a, b, c
    save_rows(args.out, rt, "none", rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
