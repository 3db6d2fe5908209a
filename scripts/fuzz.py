"""Fuzz the SPIR-V loader (on to pipeline creation) and the checkpoint loader, crash-isolated.

Every case is a mutation of a real input (the library's own compiled kernels; checkpoints and
manifests as ``hlx train`` writes them), made deterministically from (seed, target, index), and runs
in a worker process under an address-space cap and a per-case timeout. A worker that dies is a
crash, one that overruns is a hang; both are replaced and the case's input is saved to --crash-dir.
A worker whose address space has grown by half its headroom under the cap retires after its case and
is replaced (lavapipe keeps memory for every pipeline it builds: see :func:`recycle_budget`).
Each case ends as one of: refused cleanly (the library's typed error), accepted, crashed, hung, or a
foreign error (any other exception type; ``hlx verify`` also counts as foreign when it does not exit
0, or 2 with one ``hlx: ...`` line). Validation errors on accepted SPIR-V are counted too: the loader
should refuse before the driver sees anything invalid.

    python scripts/fuzz.py --spirv-seconds 360 --checkpoint-seconds 180        # what fits in 10 minutes
    python scripts/fuzz.py --spirv 1000000 --checkpoint 1000000                # the issue's million of each
    python scripts/fuzz.py --replay crashes/spirv-0-1234.spv                   # one saved case, in-process
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import platform
import random
import re
import resource
import struct
import sys
import tempfile
import time
from collections import Counter
from multiprocessing.connection import wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's hlx_vulkan, in the workers too
INTERESTING = [0, 1, 2, 3, 4, 7, 8, 31, 32, 33, 64, 255, 256, 1023, 1024, 1025, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]


# ---------------------------------------------------------------- inputs

def library_kernels() -> list[bytes]:
    """The SPIR-V of the library's own kernels, compiled by a short training run and a round of ops."""
    import numpy as np

    import hlx_vulkan as hv
    from hlx_vulkan.training.digits import train_digits
    train_digits(seed=0, epochs=1, hidden=32, batch_size=128, progress=False)
    x = hv.randn(33, 70)
    for dt in ("float16", "bfloat16", "int32", "uint8", "int8", "uint32", "int64", "bool"):
        with contextlib.suppress(hv.HlxError):
            t = hv.tensor(np.arange(12).reshape(3, 4).astype(hv.memory.dtype_of(dt).numpy))
            (t + t).numpy(), t.sum(axis=1).numpy(), t.amax(axis=0).numpy(), t.cumsum(1).numpy()
    for op in (lambda: hv.matmul(hv.randn(300, 260), hv.randn(260, 280)), lambda: x.var(axis=1),
               lambda: hv.nn.functional.log_softmax(x, axis=0), lambda: hv.concat([x, x], axis=1),
               lambda: hv.nn.functional.dropout(x, 0.3), lambda: hv.argmin(x, axis=1), lambda: hv.gelu(x).mean()):
        with contextlib.suppress(hv.HlxError):
            op().numpy()
    blobs = {k.spirv for k in hv.default_runtime().kernels.kernels()}
    return sorted(blobs, key=lambda b: (len(b), b))


def library_checkpoints(folder: Path) -> list[tuple[bytes, dict]]:
    """Checkpoints of every stored dtype, with the manifests ``hlx train`` writes beside them."""
    import numpy as np

    from hlx_vulkan.checkpoint import file_digest, save_checkpoint, state_digest
    from hlx_vulkan.memory import dtype_of
    rng = np.random.default_rng(0)
    states = [
        {"0.weight": rng.standard_normal((4, 3)).astype(np.float32), "0.bias": np.zeros(4, np.float32)},
        {f"t.{dt}": (rng.standard_normal((2, i + 1)) * 9).astype(dtype_of(dt).numpy)
         for i, dt in enumerate(["float32", "float16", "bfloat16", "int32", "uint32", "int8", "uint8"])},
        {"scalar": np.float32(2.5).reshape(()), "empty": np.zeros((0, 3), np.float32),
         "v": np.arange(5, dtype=np.int32)},
    ]
    out = []
    for i, state in enumerate(states):
        path = folder / f"seed{i}.safetensors"
        entries = save_checkpoint(path, state, {"weights_digest": "x"})
        manifest = {"seed": i, "weights_digest": state_digest(entries), "tensors": entries,
                    "checkpoint": {"file": "model.safetensors", "sha256": file_digest(path)}}
        out.append((path.read_bytes(), manifest))
    return out


# ---------------------------------------------------------------- mutations

def _words(spirv: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(spirv) // 4}I", spirv))


def _instructions(words: list[int]) -> list[tuple[int, int]]:
    """(start, word count) of each instruction the header's successors describe, as far as they parse."""
    out, i = [], 5
    while i < len(words):
        count = words[i] >> 16
        if count == 0 or i + count > len(words):
            break
        out.append((i, count))
        i += count
    return out


def mutate_spirv(corpus: list[bytes], rng: random.Random) -> bytes:
    words = _words(rng.choice(corpus))
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 5])):
        ins = _instructions(words)
        kind = rng.choice(["flip", "flip", "word", "operand", "operand", "operand", "truncate", "insert", "delete",
                           "duplicate", "splice", "swap"])
        at = rng.randrange(len(words))
        if kind == "flip":
            words[at] ^= 1 << rng.randrange(32)
        elif kind == "word":
            words[at] = rng.getrandbits(32)
        elif kind == "operand" and ins:
            start, count = rng.choice(ins)
            if count > 1:
                pos = start + rng.randrange(1, count)
                words[pos] = rng.choice(INTERESTING + [words[3] - 1, words[3], rng.randrange(words[3] or 1),
                                                       words[pos] + 1, words[pos] - 1]) & 0xFFFFFFFF
        elif kind == "truncate":
            words = words[:max(1, at)]
        elif kind == "insert":
            words[at:at] = [rng.getrandbits(32) for _ in range(rng.randint(1, 4))]
        elif kind == "delete" and ins:
            start, count = rng.choice(ins)
            del words[start:start + count]
        elif kind == "duplicate" and ins:
            start, count = rng.choice(ins)
            words[start:start] = words[start:start + count]
        elif kind == "splice":
            other = _words(rng.choice(corpus))
            donor = _instructions(other)
            if donor and ins:
                start, count = rng.choice(donor)
                pos = rng.choice(ins)[0]
                words[pos:pos] = other[start:start + count]
        elif kind == "swap" and len(ins) > 1:
            (a, na), (b, nb) = sorted(rng.sample(ins, 2))
            words[a:b + nb] = words[b:b + nb] + words[a + na:b] + words[a:a + na]
        if not words:
            words = [0]
    data = struct.pack(f"<{len(words)}I", *words)
    if rng.random() < 0.02:
        data += bytes(rng.randrange(1, 4))
    return data


def _deep(rng: random.Random) -> bytes:
    """A JSON object nesting deeper than any parser's recursion limit, or just below it."""
    nest = rng.choice([900, 5000, 100000])
    return b'{"deep": ' + b"[" * nest + b"]" * nest + b"}"


def _json_value(rng: random.Random, depth: int = 0):
    roll = rng.random()
    if depth > 2 or roll < 0.5:
        return rng.choice([None, True, False, 0, -1, 1, 2 ** 63, 2 ** 64 + 1, 1e308, -0.5, "", "F32", "bfloat16",
                           "U16", "\udcff", "x" * 300, "0" * 64, "a\nb"])
    if roll < 0.75:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["dtype", "shape", "data_offsets", "digest", "file", "k"]): _json_value(rng, depth + 1)
            for _ in range(rng.randint(0, 3))}


def _mutate_json(obj, rng: random.Random):
    """Replace, delete or add one value somewhere inside ``obj`` (a dict or list), in place."""
    path = [obj]
    while isinstance(path[-1], (dict, list)) and path[-1] and rng.random() < 0.7:
        node = path[-1]
        path.append(node[rng.choice(list(node))] if isinstance(node, dict) else rng.choice(node))
    node = path[-1] if isinstance(path[-1], (dict, list)) else path[-2] if len(path) > 1 else obj
    action = rng.choice(["replace", "replace", "delete", "add"])
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    if action == "delete" and keys:
        del node[rng.choice(keys)]
    elif action == "replace" and keys:
        node[rng.choice(keys)] = _json_value(rng)
    elif isinstance(node, dict):
        node[rng.choice(["__metadata__", "extra", "hlx.dtypes", "hlx.order", "tensors", "checkpoint"])] = \
            _json_value(rng)
    else:
        node.append(_json_value(rng))


def mutate_checkpoint(corpus: list[tuple[bytes, dict]], rng: random.Random) -> tuple[bytes, bytes]:
    """(checkpoint bytes, manifest.json bytes)."""
    data, manifest = rng.choice(corpus)
    data, manifest = bytearray(data), json.loads(json.dumps(manifest))
    (n,) = struct.unpack("<Q", data[:8])
    for _ in range(rng.choice([1, 1, 2, 3])):
        kind = rng.choice(["flip", "byte", "truncate", "trailing", "insert", "delete", "header", "header", "metadata",
                           "length", "duplicate_key", "deep", "manifest", "manifest"])
        at = rng.randrange(max(len(data), 1))
        if kind == "flip" and data:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == "byte" and data:
            data[at] = rng.choice(b'\x00\xff"{}[],:0123456789-e.tfn\\ ')
        elif kind == "truncate":
            del data[at:]
        elif kind == "trailing":
            data += bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        elif kind == "insert":
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 9)))
        elif kind == "delete":
            del data[at:at + rng.randint(1, 9)]
        elif kind in ("header", "metadata", "duplicate_key") and len(data) >= 8 + n:
            try:
                header = json.loads(data[8:8 + n])
            except (ValueError, RecursionError):
                continue
            if not isinstance(header, dict):
                continue
            if kind == "header":
                _mutate_json(header, rng)
            elif kind == "metadata":
                meta = header.get("__metadata__")
                if not isinstance(meta, dict):
                    meta = header["__metadata__"] = {}
                key = rng.choice(["hlx.dtypes", "hlx.order", "weights_digest"])
                meta[key] = json.dumps(_json_value(rng)) if rng.random() < 0.8 else _json_value(rng)
            raw = json.dumps(header).encode()
            if kind == "duplicate_key" and header:
                key = rng.choice([k for k in header])
                raw = raw[:-1] + b", " + json.dumps(key).encode() + b": " + json.dumps(header[key]).encode() + b"}"
            data[:8 + n] = struct.pack("<Q", len(raw)) + raw
            n = len(raw)
        elif kind == "deep":
            raw = _deep(rng)
            data[:8 + n] = struct.pack("<Q", len(raw)) + raw
            n = len(raw)
        elif kind == "length":
            data[:8] = struct.pack("<Q", rng.choice([0, 1, n - 1, n + 1, 2 ** 24, 2 ** 63, 2 ** 64 - 1]) % 2 ** 64)
        elif kind == "manifest":
            _mutate_json(manifest, rng)
    roll = rng.random()
    if roll < 0.03:
        return bytes(data), bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
    if roll < 0.05:
        return bytes(data), _deep(rng)
    return bytes(data), json.dumps(manifest, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")


def make_case(target: str, corpus, seed: int, index: int):
    rng = random.Random(f"{seed}:{target}:{index}")
    if target == "selftest":
        return index
    return mutate_spirv(corpus, rng) if target == "spirv" else mutate_checkpoint(corpus, rng)


# ---------------------------------------------------------------- running one case

class SpirvRunner:
    def __init__(self, validation: bool):
        from hlx_vulkan import VulkanContext
        from hlx_vulkan.vk import validation as layer
        self.ctx = VulkanContext(enable_validation=validation)
        self.layer = layer

    def __call__(self, blob: bytes) -> tuple[str, str]:
        from hlx_vulkan import ComputePipeline, DescriptorBindingBuilder, ShaderModule, errors
        mark = self.layer.mark()
        try:
            shader = ShaderModule(self.ctx.device, blob)
        except errors.InvalidShaderError as exc:
            return "refused", _stage(str(exc))
        except Exception as exc:  # noqa: BLE001 - what the fuzzer is looking for
            return "foreign", f"load: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:300]
        try:
            builder, seen = DescriptorBindingBuilder(), set()
            for b in shader.bindings:
                if b.set == 0 and b.binding not in seen:
                    seen.add(b.binding)
                    add = builder.add_uniform_buffer if b.descriptor_type == "uniform_buffer" \
                        else builder.add_storage_buffer
                    add(b.binding, max(b.count, 1))
            ComputePipeline(self.ctx.device, shader, builder.build(), -(-shader.push_constant_size // 4) * 4).destroy()
            outcome = ("accepted", "pipeline")
        except errors.HlxError as exc:
            outcome = ("refused", f"pipeline: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001
            outcome = ("foreign", f"pipeline: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:300])
        finally:
            shader.destroy()
        errs = self.layer.errors_since(mark)
        if errs:
            return "validation", errs[0].text[:300]
        return outcome


def _stage(message: str) -> str:
    if "spirv-val" in message:
        return "spirv-val"
    if "cannot follow this control flow" in message:
        return "control flow"
    if "cannot run this module" in message:
        return "device limits and features"
    if "driver refuses" in message:
        return "driver"
    return "parser"


class CheckpointRunner:
    def __init__(self, validation: bool):
        self.dir = Path(tempfile.mkdtemp(prefix="hlx-fuzz-"))

    def __call__(self, case: tuple[bytes, bytes]) -> tuple[str, str]:
        from hlx_vulkan import cli, errors
        from hlx_vulkan.checkpoint import load_checkpoint
        data, manifest = case
        (self.dir / "model.safetensors").write_bytes(data)
        (self.dir / "manifest.json").write_bytes(manifest)
        try:
            load_checkpoint(self.dir / "model.safetensors", self.dir / "manifest.json")
            outcome = ("accepted", "load")
        except errors.CheckpointError:
            outcome = ("refused", "load")
        except Exception as exc:  # noqa: BLE001
            return "foreign", f"load: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:300]
        out, err = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = cli.main(["verify", str(self.dir)])
        except BaseException as exc:  # noqa: BLE001 - SystemExit included: verify must return, not exit
            return "foreign", f"verify: {type(exc).__module__}.{type(exc).__name__}: {exc}"[:300]
        lines = err.getvalue().splitlines()
        if code == 2 and len(lines) == 1 and lines[0].startswith("hlx: "):
            return outcome
        if code == 0 and not lines and outcome[0] == "accepted":
            return outcome
        return "foreign", f"verify: exit {code}, stderr {err.getvalue()[:200]!r}".replace(str(self.dir), "<dir>")


class SelfTestRunner:
    """Crashes on every 7th case from the 3rd, hangs on every 7th from the 5th: the harness must count both.
    Keeps 8 MiB per case, as lavapipe keeps memory per pipeline: the worker must retire and be replaced."""

    def __init__(self, validation: bool):
        self.kept = []

    def __call__(self, index: int) -> tuple[str, str]:
        self.kept.append(bytearray(8 << 20))
        if index % 7 == 3:
            import ctypes
            ctypes.string_at(0)
        if index % 7 == 5:
            time.sleep(3600)
        return "refused", "selftest"


def _address_space() -> int:
    """This process's mapped address space in bytes (what RLIMIT_AS caps)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def recycle_budget(start: int, mem_bytes: int) -> int:
    """How far a worker's address space may grow before it retires: half its headroom under the cap.

    lavapipe (Mesa 22.3) keeps about 400 KiB of malloc'd memory for every compute pipeline created and
    destroyed (the same module's pipeline built and destroyed 200 times: +82 MB of heap in use, Python's
    heap flat, every Vulkan object destroyed), so a worker that lives for 150,000 cases reaches a 4 GiB
    cap and crashes there. Retiring early keeps the cap for what one case does."""
    return max(mem_bytes - start, 0) // 2 if mem_bytes else 1 << 30


def worker(target: str, corpus_file: str, seed: int, mem_bytes: int, validation: bool, conn,
           recycle_mib: int = 0) -> None:
    if mem_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.environ["HLX_VALIDATION"] = "1" if validation else "0"
    with open(corpus_file, "rb") as f:
        import pickle
        corpus = pickle.load(f)
    run = {"spirv": SpirvRunner, "checkpoint": CheckpointRunner, "selftest": SelfTestRunner}[target](validation)
    start = _address_space()
    retire_at = start + (recycle_mib << 20 if recycle_mib else recycle_budget(start, mem_bytes))
    conn.send(("ready", None, None, False))
    while True:
        index = conn.recv()
        if index is None:
            return
        try:
            case = make_case(target, corpus, seed, index)
        except Exception as exc:  # noqa: BLE001 - a bug of this script, reported as such
            conn.send((index, "harness", repr(exc), False))
            continue
        kind, detail = run(case)
        retire = _address_space() > retire_at
        conn.send((index, kind, detail, retire))
        if retire:
            return


# ---------------------------------------------------------------- the campaign

class Pool:
    """Worker processes, each running one case at a time; a dead or overdue one is replaced."""

    def __init__(self, args, target: str, corpus_file: str):
        self.args, self.target, self.corpus_file = args, target, corpus_file
        self.ctx = mp.get_context("spawn")
        self.workers = [self._start() for _ in range(args.workers)]
        self.retired = 0

    def _start(self):
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=worker, args=(self.target, self.corpus_file, self.args.seed,
                                                  self.args.mem_gib << 30, self.args.validation, child,
                                                  self.args.recycle_mib), daemon=True)
        p.start()
        child.close()
        try:
            ready = parent.poll(300) and parent.recv()[0] == "ready"
        except EOFError:  # it died starting: a Vulkan driver that maps more than --mem-gib of address space
            ready = False
        if not ready:
            raise RuntimeError(f"a fuzz worker did not start (exit status {p.exitcode}); if the Vulkan driver "
                               "reserves much address space, raise --mem-gib or pass --mem-gib 0 (no cap)")
        return {"proc": p, "conn": parent, "index": None, "deadline": None}

    def run(self, total: int, seconds: float | None, record) -> None:
        next_index, started = 0, time.monotonic()

        def feed(w):
            nonlocal next_index
            if next_index < total and (seconds is None or time.monotonic() - started < seconds):
                w["index"], w["deadline"] = next_index, time.monotonic() + self.args.case_timeout
                w["conn"].send(next_index)
                next_index += 1
            else:
                w["index"] = None

        for w in self.workers:
            feed(w)
        while any(w["index"] is not None for w in self.workers):
            busy = [w for w in self.workers if w["index"] is not None]
            ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy],
                         timeout=max(0.0, min(w["deadline"] for w in busy) - time.monotonic()))
            for i, w in enumerate(self.workers):
                if w["index"] is None:
                    continue
                if w["conn"] in ready:
                    try:
                        index, kind, detail, retire = w["conn"].recv()
                    except EOFError:
                        index, kind, detail = w["index"], "crashed", None
                    else:
                        record(index, kind, detail)
                        if retire:
                            w["proc"].join(60)
                            self.retired += 1
                            w = self.workers[i] = self._start()
                        feed(w)
                        continue
                elif w["proc"].sentinel in ready or not w["proc"].is_alive():
                    kind = "crashed"
                elif time.monotonic() > w["deadline"]:
                    kind = "hung"
                else:
                    continue
                w["proc"].kill()
                w["proc"].join()
                code = w["proc"].exitcode
                why = f"exit code {code}" if kind == "crashed" else f"over {self.args.case_timeout} s"
                record(w["index"], kind, why)
                self.workers[i] = self._start()
                feed(self.workers[i])

    def close(self) -> None:
        for w in self.workers:
            with contextlib.suppress(OSError):
                w["conn"].send(None)
            w["proc"].join(10)
            if w["proc"].is_alive():
                w["proc"].kill()


def campaign(args, target: str, corpus, total: int, seconds: float | None) -> dict:
    import pickle
    crash_dir = Path(args.crash_dir)
    with tempfile.NamedTemporaryFile(suffix=".pickle", delete=False) as f:
        pickle.dump(corpus, f)
    counts, details, examples = Counter(), Counter(), {}

    def record(index, kind, detail):
        if kind == "harness":
            raise RuntimeError(f"the fuzzer could not make {target} case {index}: {detail}")
        counts[kind] += 1
        if detail:
            detail = re.sub(r"0x[0-9a-f]{6,}", "0x...", detail)  # handles differ from process to process
        if kind != "accepted":
            details[f"{kind}: {detail}" if kind in ("refused", "foreign", "validation") else kind] += 1
        if kind in ("crashed", "hung", "foreign", "validation"):
            examples.setdefault(f"{kind}: {detail}", index)
            crash_dir.mkdir(parents=True, exist_ok=True)
            case = make_case(target, corpus, args.seed, index)
            if target == "spirv":
                (crash_dir / f"spirv-{args.seed}-{index}.spv").write_bytes(case)
            elif target == "checkpoint":
                (crash_dir / f"checkpoint-{args.seed}-{index}.safetensors").write_bytes(case[0])
                (crash_dir / f"checkpoint-{args.seed}-{index}.manifest.json").write_bytes(case[1])
        done = sum(counts.values())
        if done % 5000 == 0:
            print(f"  {target}: {done} cases, {dict(counts)}", flush=True)

    started = time.monotonic()
    pool = Pool(args, target, f.name)
    run_started = time.monotonic()
    try:
        pool.run(total, seconds, record)
    finally:
        pool.close()
        os.unlink(f.name)
    elapsed = time.monotonic() - run_started
    tried = sum(counts.values())
    rate = tried / elapsed if elapsed else 0.0
    return {
        "tried": tried, "refused_cleanly": counts["refused"], "accepted": counts["accepted"],
        "crashed": counts["crashed"], "hung": counts["hung"], "foreign_error_types": counts["foreign"],
        "validation_errors": counts["validation"], "seconds": round(elapsed, 1),
        "worker_start_seconds": round(run_started - started, 1), "workers_retired": pool.retired,
        "cases_per_second": round(rate, 1),
        "hours_for_a_million": round(1e6 / rate / 3600, 2) if rate else None,
        "outcomes": dict(details.most_common()), "first_case_of_each_problem": examples,
    }


def table(results: dict) -> str:
    cols = ["tried", "refused_cleanly", "accepted", "crashed", "hung", "foreign_error_types", "validation_errors",
            "cases_per_second", "hours_for_a_million"]
    names = [c.replace("_", " ") for c in cols]
    head = "target      " + "  ".join(names)
    rows = [f"{t:<12}" + "  ".join(f"{r[c]!s:>{len(n)}}" for c, n in zip(cols, names)) for t, r in results.items()]
    return "\n".join([head, *rows])


def replay(path: str, validation: bool) -> None:
    if path.endswith(".spv"):
        print(SpirvRunner(validation)(Path(path).read_bytes()))
    else:
        manifest = Path(path.replace(".safetensors", ".manifest.json")).read_bytes()
        print(CheckpointRunner(validation)((Path(path).read_bytes(), manifest)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spirv", type=int, default=10 ** 9, help="SPIR-V cases (default: as many as --spirv-seconds)")
    ap.add_argument("--checkpoint", type=int, default=10 ** 9, help="checkpoint cases")
    ap.add_argument("--spirv-seconds", type=float, default=None, help="stop starting SPIR-V cases after this long")
    ap.add_argument("--checkpoint-seconds", type=float, default=None)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mem-gib", type=int, default=4,
                    help="address-space cap of each worker; 0 for none (a GPU driver reserves more address space)")
    ap.add_argument("--recycle-mib", type=int, default=0,
                    help="retire a worker once its address space grew this much (default: half its headroom "
                         "under --mem-gib, 1024 without a cap)")
    ap.add_argument("--case-timeout", type=float, default=60.0, help="seconds before a case counts as hung")
    ap.add_argument("--no-validation", dest="validation", action="store_false")
    ap.add_argument("--crash-dir", default=str(ROOT / "benchmarks" / "results" / "fuzz_cases"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz_lavapipe.json"))
    ap.add_argument("--replay", metavar="FILE", help="run one saved case in this process and print its outcome")
    ap.add_argument("--selftest", action="store_true", help="check that the harness counts crashes and hangs")
    args = ap.parse_args()
    if args.replay:
        return replay(args.replay, args.validation)
    if args.selftest:
        args.case_timeout, args.workers, args.recycle_mib = 2.0, 1, 20
        result = campaign(args, "selftest", [], 14, None)
        print(table({"selftest": result}))
        assert (result["crashed"], result["hung"], result["refused_cleanly"]) == (2, 2, 10), result
        assert result["workers_retired"] >= 2, result
        return print(f"the harness counts crashes and hangs, and replaced {result['workers_retired']} workers "
                     "that outgrew --recycle-mib")
    if args.spirv >= 10 ** 9 and args.spirv_seconds is None:
        ap.error("give --spirv N or --spirv-seconds S (and the same for checkpoints)")

    results, info = {}, {}
    if args.spirv and (args.spirv_seconds is None or args.spirv_seconds > 0):
        corpus = _in_subprocess(library_kernels)
        info["spirv_corpus"] = f"{len(corpus)} kernels of the library, compiled by a short training run and ops"
        results["spirv"] = campaign(args, "spirv", corpus, args.spirv, args.spirv_seconds)
    if args.checkpoint and (args.checkpoint_seconds is None or args.checkpoint_seconds > 0):
        with tempfile.TemporaryDirectory() as tmp:
            corpus = library_checkpoints(Path(tmp))
        info["checkpoint_corpus"] = f"{len(corpus)} checkpoints and manifests (every stored dtype, 0-d and empty)"
        results["checkpoint"] = campaign(args, "checkpoint", corpus, args.checkpoint, args.checkpoint_seconds)

    print(table(results))
    report = {
        "command": "python scripts/fuzz.py " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": f"{platform.node()}, {os.cpu_count()} cores",
        "device": _in_subprocess(_device_name), "workers": args.workers, "seed": args.seed,
        "memory_cap_gib_per_worker": args.mem_gib, "case_timeout_s": args.case_timeout,
        "validation_layer": args.validation, **info, "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def _device_name() -> str:
    from hlx_vulkan import VulkanContext
    ctx = VulkanContext()
    try:
        return f"{ctx.info['device_name']} ({ctx.info['driver']})"
    finally:
        ctx.cleanup()


def _call_and_send(fn, conn) -> None:
    conn.send(fn())


def _in_subprocess(fn):
    """Run ``fn`` in a fresh process: Vulkan is never initialised in the parent, which forks nothing."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_call_and_send, args=(fn, child))
    p.start()
    value = parent.recv()
    p.join()
    return value


if __name__ == "__main__":
    main()
