"""SPIR-V instructions of the strict GEMM's multiply-add, from the hardened modules (no device time).

Compiles matmul_tiled.comp (every tile, vector loads) and matmul_direct.comp in strict mode, as
ops/matmul.py launches them, disassembles each hardened module with spirv-dis, and counts the
instructions of every basic block that multiplies and adds (the innermost loop body: one vec4
multiply-add in the tiled kernel, one scalar in the direct one), by kind. The flushed path and
the unflushed one (strict.glsl's hlx_exact_mul / hlx_exact_add, where the kernel has them) are
both listed.

Run: python benchmarks/strict_gemm_spirv.py [--out results/strict_gemm_spirv.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from collections import Counter

import hlx_vulkan as hv
from hlx_vulkan.ops import matmul as mm

# The multiply-add's own instructions, its denormal flushes (strict_spirv.py: bitcast, and, equal,
# and, bitcast, select per result), and the rest (glslang's unoptimized loads, stores, addresses).
KINDS = {"mul_add": {"OpFMul", "OpFAdd", "OpVectorTimesScalar"},
         "flush": {"OpBitcast", "OpBitwiseAnd", "OpIEqual", "OpSelect"}}


def kernels() -> dict[str, bytes]:
    """name -> hardened SPIR-V of the strict matmul kernels, built by running one product each."""
    out = {}
    a, b = hv.randn(64, 64), hv.randn(64, 64)
    for tile in (*mm.TILES, None):
        mm.FORCE_TILE = tile
        rt = hv.default_runtime()
        rt.kernels.reset_usage()
        with hv.strict():
            (a @ b).numpy()
        for k in rt.kernels.used():
            if k.name.startswith("matmul/matmul_") and "splitk" not in k.name:
                out[f"{k.name} ({tile or 'device default'})"] = k.spirv
    mm.FORCE_TILE = None
    return out


def mac_blocks(spirv: bytes) -> list[Counter]:
    """Opcode counts of each block holding both an OpFMul and an OpFAdd."""
    with tempfile.NamedTemporaryFile(suffix=".spv") as f:
        f.write(spirv)
        f.flush()
        text = subprocess.run(["spirv-dis", "--raw-id", f.name], capture_output=True, text=True, check=True).stdout
    blocks, cur = [], None
    for line in text.splitlines():
        m = re.search(r"\b(Op\w+)", line)
        if not m:
            continue
        op = m.group(1)
        if op == "OpLabel":
            cur = Counter()
        elif cur is not None:
            cur[op] += 1
            if op in ("OpBranch", "OpBranchConditional", "OpReturn", "OpReturnValue", "OpSwitch"):
                if cur["OpFMul"] and cur["OpFAdd"]:
                    blocks.append(cur)
                cur = None
    return blocks


def summary(c: Counter) -> dict:
    row = {kind: sum(c[o] for o in ops) for kind, ops in KINDS.items()}
    row["other"] = sum(c.values()) - sum(row.values())
    row["total"] = sum(c.values())
    row["opcodes"] = dict(c)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON path")
    args = parser.parse_args(argv)
    rows = []
    for name, spirv in kernels().items():
        for c in mac_blocks(spirv):
            path = "flushed" if c["OpSelect"] else "unflushed"
            rows.append({"kernel": name, "path": path, **summary(c)})
    print(f"{'kernel':42} {'path':10} {'total':>6} {'mul+add':>8} {'flush':>6} {'other':>6}")
    for r in rows:
        print(f"{r['kernel']:42} {r['path']:10} {r['total']:6} {r['mul_add']:8} {r['flush']:6} {r['other']:6}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "note": "instructions of the innermost multiply-add block, hardened SPIR-V"},
                      f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
