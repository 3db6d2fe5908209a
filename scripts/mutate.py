"""Mutation testing: plant one small bug at a time and check that the tests named for it fail.

Each mutation is (name, file, exact old text, replacement, test paths). For each, the
repository's files (tracked, and untracked ones git does not ignore) are copied to a fresh
temporary directory: the working tree is never touched. The old text must occur exactly once
in the file; a mutation whose text is not found (or found twice) is an ERROR, so this list has
to keep up with refactors. The tests then run in the copy, with ``PYTHONPATH=<copy>``:

    python -m pytest -x -q -p no:randomly <test paths>

and the mutant is *caught* (they failed), *SURVIVED* (they passed) or an *ERROR* (the text was
not found, a test path does not exist, pytest found no tests). First, the same tests run on an
unmutated copy: if they fail there, nothing below means anything and the script stops.
Mutants run one after another (the tests use every core there is).

    python scripts/mutate.py                     # every mutant; a table, and JSON in scripts/mutation_results.json
    python scripts/mutate.py -k sin -k barrier   # those whose name contains any of the words
    python scripts/mutate.py --list              # the mutations, without running anything

Exit status: 0 when every mutant was caught, 1 otherwise. Target: none survives; a survivor
names a test to write (or, rarely, a mutation that changes nothing a user could see: then
replace it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutation:
    name: str
    layer: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


M = Mutation
MUTATIONS = [
    # --- forward formulas ---------------------------------------------------------------
    M("sin computes cos", "ops (forward)", "hlx_vulkan/ops/elementwise.py",
      '"sin": ("sin(x)", "y * cos(x)", "in")', '"sin": ("cos(x)", "y * cos(x)", "in")',
      ("tests/autograd/test_gradients.py",)),
    M("cos computes sin", "ops (forward)", "hlx_vulkan/ops/elementwise.py",
      '"cos": ("cos(x)", "-y * sin(x)", "in")', '"cos": ("sin(x)", "-y * sin(x)", "in")',
      ("tests/autograd/test_gradients.py",)),
    M("layer_norm eps 1e-5 -> 1e-6", "nn (forward)", "hlx_vulkan/nn/functional.py",
      "eps: float = 1e-5) -> Tensor:", "eps: float = 1e-6) -> Tensor:",
      ("tests/autograd/test_gradients.py", "tests/nn/test_functional.py")),
    M("relu swallows NaN again", "ops (forward)", "hlx_vulkan/ops/elementwise.py",
      'return launch("(x < CT(0) ? CT(0) : x)", [x])', 'return launch("(x > CT(0) ? x : CT(0))", [x])',
      ("tests/autograd/test_gradients.py",)),
    M("matmul drops the last k", "ops (forward)", "hlx_vulkan/ops/matmul/matmul_direct.comp",
      "for (uint k = 0u; k < p.K; ++k) {", "for (uint k = 0u; k + 1u < p.K; ++k) {",
      ("tests/ops/test_linear_algebra.py", "tests/autograd/test_gradients.py")),
    M("tiled matmul's running B index steps short of a K tile", "ops (forward)",
      "hlx_vulkan/ops/matmul/matmul_tiled.comp", "b_kstep = BK * p.sb_k / 4;", "b_kstep = (BK - 4) * p.sb_k / 4;",
      ("tests/ops/test_matmul_kernels.py",)),
    M("linear's fused bias skips the product's own rounding", "ops (forward)", "hlx_vulkan/ops/matmul/epilogue.glsl",
      "#define WITH_BIAS(v, n) (bf16_to_f32(O_STORE(v)) +", "#define WITH_BIAS(v, n) (float(v) +",
      ("tests/ops/test_matmul_kernels.py",)),
    M("split-K's fused bias takes the row's index", "ops (forward)", "hlx_vulkan/ops/matmul/matmul_splitk.comp",
      "t = EPILOGUE(t, i % p.cols);", "t = EPILOGUE(t, (i / p.cols) % p.cols);",
      ("tests/ops/test_matmul_kernels.py",)),
    M("split-K in one dispatch leaves its election counts behind", "ops (forward)", "hlx_vulkan/ops/matmul/elect.glsl",
      "if (elected) cnt[p.off_c + slot] = 0u;", "if (elected) cnt[p.off_c + slot] = 1u;",
      ("tests/ops/test_matmul_kernels.py",)),
    M("split-K's elected workgroup drops the first chunk", "ops (forward)", "hlx_vulkan/ops/matmul/matmul_tiled.comp",
      "acc[g * 4u + r][h] = s == 0u ? q :", "acc[g * 4u + r][h] = s == 1u ? q :",
      ("tests/ops/test_matmul_kernels.py",)),
    M("linear's fused relu skips the output's rounding", "ops (forward)", "hlx_vulkan/ops/matmul/epilogue.glsl",
      "#define O_ROUNDED(v) f16_to_f32(uint(float16BitsToUint16(O_STORE(v))))", "#define O_ROUNDED(v) float(v)",
      ("tests/ops/test_matmul_kernels.py",)),
    M("linear's fused relu swallows NaN", "ops (forward)", "hlx_vulkan/ops/matmul/epilogue.glsl",
      "return x < 0.0 ? 0.0 : x;", "return x > 0.0 ? x : 0.0;", ("tests/ops/test_matmul_kernels.py",)),
    M("linear_relu's backward skips relu's rule", "autograd (backward)", "hlx_vulkan/ops/linear.py",
      "return _linear_backward(ctx, pw.launch(ew.RELU_GRAD, [ctx.saved[2], g]))", "return _linear_backward(ctx, g)",
      ("tests/ops/test_matmul_kernels.py", "tests/nn/test_modules.py")),
    M("Sequential fuses a Linear whose forward was replaced", "nn (forward)", "hlx_vulkan/nn/modules.py",
      'return type(m) is cls and "forward" not in m.__dict__', "return isinstance(m, cls)",
      ("tests/nn/test_modules.py",)),
    M("float16 decode scales subnormals wrong", "ops (forward)", "hlx_vulkan/glsl/dtypes.glsl",
      "float(m) * 5.9604644775390625e-8", "float(m) * 1.1920928955078125e-7",
      ("tests/ops/test_attention_coopmat.py",)),
    M("softmax without the max subtracted", "ops (forward)", "hlx_vulkan/ops/softmax/softmax.comp",
      "s += exp(float(A_LOAD(a[base + int(r) * p.st_r])) - m);", "s += exp(float(A_LOAD(a[base + int(r) * p.st_r])));",
      ("tests/nn/test_functional.py", "tests/autograd/test_gradients.py")),
    # --- PyTorch's semantics (issue 13's silent wrong answers, planted back) ----------------
    M("sums of bools stay bool (counts wrap)", "ops (semantics)", "hlx_vulkan/ops/reduce.py",
      "out = x.dtype if x.dtype.is_float else default_int_dtype(x.runtime)\n    return _sum(",
      "out = x.dtype\n    return _sum(", ("tests/ops/test_torch_semantics.py",)),
    M("int / int truncates", "ops (semantics)", "hlx_vulkan/ops/elementwise.py",
      '_div_grads, saves=(0, 1), compute=_float_of)', '_div_grads, saves=(0, 1))',
      ("tests/ops/test_torch_semantics.py",)),
    M("comparisons give the operands' type, not bool", "ops (semantics)", "hlx_vulkan/ops/elementwise.py",
      'a, b,\n                     result_type(a, b), bool_)\n    op.__name__',
      'a, b,\n                     result_type(a, b))\n    op.__name__',
      ("tests/ops/test_torch_idioms.py",)),
    M("creation wraps values that do not fit", "ops (semantics)", "hlx_vulkan/ops/tensor.py",
      "    _check_fits(a, dt)\n", "", ("tests/ops/test_torch_semantics.py",)),
    M("x ** 0 has a NaN gradient at 0 again", "ops (semantics)", "hlx_vulkan/ops/elementwise.py",
      "if e == 0.0:  # torch: the gradient of x ** 0 is 0", "if False:  # torch: the gradient of x ** 0 is 0",
      ("tests/ops/test_torch_semantics.py",)),
    M("bool stores any nonzero byte", "ops (semantics)", "hlx_vulkan/glsl/dtypes.glsl",
      "#define O_STORE(v) uint8_t((v) != OCT(0) ? 1 : 0)", "#define O_STORE(v) uint8_t(v)",
      ("tests/ops/test_torch_semantics.py",)),
    # --- backward rules -------------------------------------------------------------------
    M("tanh backward 1 - y instead of 1 - y^2", "ops (backward)", "hlx_vulkan/ops/elementwise.py",
      '"y * (CT(1) - x * x)"', '"y * (CT(1) - x)"', ("tests/autograd/test_gradients.py",)),
    M("division's divisor gradient loses its sign", "ops (backward)", "hlx_vulkan/ops/elementwise.py",
      'launch("-z * x / (y * y)", [a, b, g], out_dtype=g.dtype)',
      'launch("z * x / (y * y)", [a, b, g], out_dtype=g.dtype)',
      ("tests/autograd/test_gradients.py",)),
    M("max/min reduction backward no longer splits ties", "ops (backward)", "hlx_vulkan/ops/reduce.py",
      'return launch("x * y / z", [hit, g.reshape(kept), ties]), None, None',
      'return launch("x * y", [hit, g.reshape(kept)]), None, None',
      ("tests/autograd/test_gradients.py",)),
    M("maximum/minimum backward no longer splits ties", "ops (backward)", "hlx_vulkan/ops/elementwise.py",
      'launch(f"x {first_wins} y ? z : (x == y ? CT(0.5) * z : CT(0))", [x, y, g], out_dtype=g.dtype)',
      'launch(f"x {first_wins} y ? z : (x == y ? z : CT(0))", [x, y, g], out_dtype=g.dtype)',
      ("tests/autograd/test_gradients.py",)),
    M("gradients overwrite instead of accumulating", "autograd", "hlx_vulkan/autograd/engine.py",
      'ew.launch("x + y", [t.grad, g], out=t.grad)', 'ew.launch("y", [t.grad, g], out=t.grad)',
      ("tests/autograd/test_engine.py", "tests/autograd/test_gradients.py")),
    M("AdamW bias correction of the second moment dropped", "optim", "hlx_vulkan/optim/kernels/update.comp",
      "T denom = HLX_DIV(sqrt(vi), sqrt(bc2)) + c.eps;", "T denom = sqrt(vi) + c.eps;",
      ("tests/optim/test_optimizers.py",)),
    # --- reduction order (same sums, other bits) ------------------------------------------
    M("reduction order: short axes fold with wider workgroups", "ops (reduction order)", "hlx_vulkan/ops/reduce.py",
      "for wg in (32, 64, 128):", "for wg in (64, 128):", ("tests/test_known_answers.py",)),
    M("reduction order: long axes cut into longer chunks", "ops (reduction order)", "hlx_vulkan/ops/reduce.py",
      "MIN_CHUNK = 2048", "MIN_CHUNK = 4096", ("tests/test_known_answers.py",)),
    M("matmul order: k summed from the top", "ops (reduction order)", "hlx_vulkan/ops/matmul/matmul_direct.comp",
      "for (uint k = 0u; k < p.K; ++k) {", "for (uint k = p.K - 1u; k < p.K; --k) {",
      ("tests/test_known_answers.py",)),
    # --- the stream's barriers -------------------------------------------------------------
    # The copy has no built C recorder (git ignores it), so dispatches take its cffi twin in
    # vk/record.py, which test_host_path.py holds to the same command stream as the C one.
    M("hazard barriers skipped", "runtime (barriers)", "hlx_vulkan/vk/record.py",
      "    if hazard:\n        barrier(cmd)\n", "    if hazard:\n        pass\n", ("tests/runtime/test_stream.py",)),
    M("the barrier records no vkCmdPipelineBarrier", "runtime (barriers)", "hlx_vulkan/vk/record.py",
      "    _lib.vkCmdPipelineBarrier(cmd, _COMPUTE | _TRANSFER, _COMPUTE | _TRANSFER, 0, 1, _HAZARD, 0, ffi.NULL, 0, ffi.NULL)",
      "    pass", ("tests/runtime/test_stream.py",)),
    M("write after read not seen as a hazard", "runtime (barriers)", "hlx_vulkan/vk/record.py",
      "any(keys[i] in written or keys[i] in read for i in writes)", "any(keys[i] in written for i in writes)",
      ("tests/runtime/test_stream.py",)),
    M("an upload into memory in use skips its barrier", "runtime (barriers)", "hlx_vulkan/runtime/stream.py",
      "            if key in self._written or key in self._read:\n                self.barrier()",
      "            if False:\n                self.barrier()", ("tests/runtime/test_stream.py",)),
    # --- memory reused in stream order ------------------------------------------------------
    M("a freed range forgets its last use", "memory (stream order)", "hlx_vulkan/memory/pool.py",
      "entries.append((self._block, self.offset, self.busy))", "entries.append((self._block, self.offset, 0))",
      ("tests/runtime/test_stream.py",)),
    M("the stream does not stamp the memory it uses", "runtime (stream order)", "hlx_vulkan/vk/record.py",
      "    for a in allocations:\n        a.busy = serial\n", "",
      ("tests/runtime/test_stream.py", "tests/optim/test_optimizers.py")),
    M("a live graph's memory written in place", "runtime (stream order)", "hlx_vulkan/runtime/runtime.py",
      "if alloc.host_visible and not alloc.pins and", "if alloc.host_visible and",
      ("tests/runtime/test_capture.py", "tests/test_jit.py")),
    # --- the kernel contract ---------------------------------------------------------------
    M("declarations not checked against the SPIR-V", "runtime (contract)", "hlx_vulkan/runtime/kernels.py",
      "        spec.check(self.shader.reflection)\n", "", ("tests/runtime/test_kernels.py",)),
    M("push constants skipped after a different push", "runtime (contract)", "hlx_vulkan/runtime/stream.py",
      "same_push = last is not None and last[1] is push and last[0] == layout",
      "same_push = last is not None and last[0] == layout", ("tests/ops/test_elementwise.py",)),
    M("the stream's lock does nothing", "runtime (threads)", "hlx_vulkan/runtime/stream.py",
      "        self.lock = threading.RLock()",
      "        self.lock = type('NoLock', (), {'__enter__': lambda s: s, '__exit__': lambda s, *a: None, "
      "'acquire': lambda s: True, 'release': lambda s: None})()",
      ("tests/runtime/test_threads.py",)),
    # --- memory: allocator offsets -----------------------------------------------------------
    M("allocator ignores alignment", "memory (allocator)", "hlx_vulkan/memory/ranges.py",
      "aligned = -(-start // alignment) * alignment", "aligned = start",
      ("tests/memory/test_ranges.py", "tests/memory/test_pool.py")),
    M("allocator merges a freed range with a non-adjacent one", "memory (allocator)", "hlx_vulkan/memory/ranges.py",
      "if prev + self._free[prev] == start:", "if prev + self._free[prev] <= start:",
      ("tests/memory/test_ranges.py", "tests/memory/test_pool.py")),
    M("element offset ignores a view's byte offset", "runtime (offsets)", "hlx_vulkan/runtime/kernels.py",
      "            values[pos] = buf.byte_offset // buf.dtype.itemsize", "            values[pos] = 0",
      ("tests/ops/test_shape.py", "tests/runtime/test_kernels.py")),
    # --- digests ------------------------------------------------------------------------------
    M("digest leaves the shape out", "memory (digest)", "hlx_vulkan/memory/digest.py",
      'b"\\0" + ",".join(str(int(s)) for s in shape).encode() + b"\\0"', 'b"\\0" + b"\\0"',
      ("tests/memory/test_digest.py",)),
    M("digest hashes big-endian bytes", "memory (digest)", "hlx_vulkan/memory/digest.py",
      'if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and sys.byteorder == "big"):',
      'if a.dtype.byteorder != "|":', ("tests/memory/test_digest.py", "tests/test_known_answers.py")),
    # --- checkpoints --------------------------------------------------------------------------
    M("checkpoint accepts trailing bytes", "checkpoint", "hlx_vulkan/checkpoint.py",
      "    if pos != size:\n", "    if pos > size:\n", ("tests/test_checkpoint.py",)),
    M("checkpoint skips the manifest's digests", "checkpoint", "hlx_vulkan/checkpoint.py",
      '        if digest != entry["digest"]:', "        if False:", ("tests/test_checkpoint.py",)),
    # --- capture and replay ---------------------------------------------------------------------
    M("replay skips the after-run hooks (draws repeat)", "runtime (replay)", "hlx_vulkan/runtime/capture.py",
      "            for hook in self.hooks.values():\n                hook.after_run()",
      "            for hook in ():\n                hook.after_run()", ("tests/runtime/test_capture.py",)),
    M("replay submits only the first command buffer", "runtime (replay)", "hlx_vulkan/vk/record.py",
      '"commandBufferCount": len(command_buffers),', '"commandBufferCount": 1,', ("tests/runtime/test_capture.py",)),
    M("each replay waits for the fence it has just submitted", "runtime (replay)", "hlx_vulkan/runtime/capture.py",
      "stream.track(_FenceWait(fence), depth=RING - 1)", "stream.track(_FenceWait(fence), depth=RING)",
      ("tests/runtime/test_capture.py",)),
    M("a fence wait never polls before it blocks", "vk (fences)", "hlx_vulkan/vk/commands.py",
      "            if now < spin_end:  # a poll", "            if False:  # a poll", ("tests/vk/test_commands.py",)),
    M("the device's feature chain is not held through vkCreateDevice", "vk (device)", "hlx_vulkan/vk/device.py",
      "            chain.append(head)\n            extensions.append(BFLOAT16_EXT)",
      "            extensions.append(BFLOAT16_EXT)", ("tests/vk/test_context.py",)),
    M("two-dispatch reductions take fresh partials (a barrier between reductions)", "runtime (barriers)",
      "hlx_vulkan/ops/reduce_flat.py", "    partial = _partials(rt, groups)\n",
      "    partial = contiguous_like((groups,), float32, rt).buf\n", ("tests/ops/test_bandwidth_kernels.py",)),
    # --- the validation gate --------------------------------------------------------------------
    M("exit gate never fires", "vk (validation gate)", "hlx_vulkan/vk/validation.py",
      "    errs = unclaimed_errors()\n    if not errs:\n        return",
      "    errs = []\n    if not errs:\n        return", ("tests/vk/test_validation_gate.py",)),
    M("messenger does not ask for errors", "vk (validation gate)", "hlx_vulkan/vk/validation.py",
      "messageSeverity=vkb.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT\n        | ",
      "messageSeverity=", ("tests/vk/test_validation_gate.py",)),
]


def repository_files(root: Path) -> list[str]:
    """Tracked files and untracked ones git does not ignore (what a commit of the tree would hold)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                         capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p and (root / p).is_file()]


def copy_tree(root: Path, files: list[str], dest: Path) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, target)


def run_tests(copy: Path, tests, timeout: float) -> tuple[int | None, str, float]:
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    env.setdefault("HLX_VALIDATION", "1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out, time.perf_counter() - t0
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def _summary(output: str) -> str:
    """The first failing test, or pytest's last line."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:160]
    lines = [ln for ln in output.splitlines() if ln.strip()]
    return lines[-1][:160] if lines else ""


def run_mutation(m: Mutation, files: list[str], timeout: float) -> dict:
    result = {**asdict(m), "tests": list(m.tests)}
    source = ROOT / m.file
    text = source.read_text() if source.is_file() else None
    count = text.count(m.old) if text is not None else 0
    missing = [t for t in m.tests if not (ROOT / t.split("::")[0]).exists()]
    if text is not None and m.file not in files:
        text = None  # ignored by git, so not in the copy
    if text is None or count != 1 or missing:
        why = (f"{m.file} does not exist (or git ignores it)" if text is None else
               f"old text found {count} times in {m.file} (must be exactly once)" if count != 1 else
               f"test paths not found: {missing}")
        return {**result, "status": "ERROR", "detail": why, "seconds": 0.0}
    with tempfile.TemporaryDirectory(prefix="hlx-mutant-") as tmp:
        copy = Path(tmp)
        copy_tree(ROOT, files, copy)
        (copy / m.file).write_text(text.replace(m.old, m.new))
        rc, output, seconds = run_tests(copy, m.tests, timeout)
    if rc is None:
        status, detail = "caught", f"the tests hung past {timeout:.0f} s"
    elif rc in (1, 2):  # tests failed, or collection/import failed
        status, detail = "caught", _summary(output)
    elif rc < 0:  # the mutant crashed the test process (a signal): the tests did not pass
        status, detail = "caught", f"the test process died of signal {-rc}"
    elif rc == 0:
        status, detail = "SURVIVED", _summary(output)
    else:  # 3 internal error, 4 usage error, 5 no tests collected
        status, detail = "ERROR", f"pytest exit status {rc}: {_summary(output)}"
    return {**result, "status": status, "detail": detail, "seconds": round(seconds, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", action="append", default=[], help="run mutations whose name contains this (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--json", default=str(ROOT / "scripts" / "mutation_results.json"), help="where to save the results")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per mutant's tests")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.k or any(k.lower() in m.name.lower() for k in args.k)]
    if args.list:
        for m in chosen:
            print(f"{m.layer:24} {m.name:55} {m.file}  ->  {' '.join(m.tests)}")
        return 0
    if not chosen:
        print("no mutation matches", file=sys.stderr)
        return 1
    files = repository_files(ROOT)
    if not args.no_baseline:
        tests = sorted({t for m in chosen for t in m.tests if (ROOT / t.split("::")[0]).exists()})
        with tempfile.TemporaryDirectory(prefix="hlx-baseline-") as tmp:
            copy_tree(ROOT, files, Path(tmp))
            rc, output, seconds = run_tests(Path(tmp), tests, args.timeout)
        print(f"baseline (no mutation): {len(tests)} test files, exit status {rc}, {seconds:.0f} s")
        if rc != 0:
            print(output[-4000:])
            print("the unmutated tests fail: fix that first", file=sys.stderr)
            return 1
    results = []
    width = max(len(m.name) for m in chosen)
    print(f"{'mutation':{width}}  {'layer':24} {'result':9} {'s':>6}  detail")
    for m in chosen:
        r = run_mutation(m, files, args.timeout)
        results.append(r)
        print(f"{m.name:{width}}  {m.layer:24} {r['status']:9} {r['seconds']:6.1f}  {r['detail']}", flush=True)
    caught = sum(r["status"] == "caught" for r in results)
    survived = [r["name"] for r in results if r["status"] == "SURVIVED"]
    errors = [r["name"] for r in results if r["status"] == "ERROR"]
    print(f"\n{caught}/{len(results)} caught; survived: {survived or 'none'}; errors: {errors or 'none'}")
    Path(args.json).write_text(json.dumps({"caught": caught, "total": len(results), "survived": survived,
                                           "errors": errors, "results": results}, indent=2) + "\n")
    print(f"saved {args.json}")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
