import json
import struct

import numpy as np
import pytest

from hlx_vulkan import ComputePipeline, DescriptorBindingBuilder, CommandBufferPool, ShaderModule, compile_glsl
from hlx_vulkan.memory import Ledger, MemoryManager
from kernels import VECTOR_ADD


@pytest.fixture(scope="module")
def add_op(ctx):
    """c = a + b on the device, through the vector-add kernel; returns (run, kernel digest)."""
    mm = MemoryManager(ctx)
    shader = ShaderModule(ctx.device, compile_glsl(VECTOR_ADD))
    bindings = DescriptorBindingBuilder().add_storage_buffer(0).add_storage_buffer(1).add_storage_buffer(2).build()
    pipe = ComputePipeline(ctx.device, shader, bindings, 4, workgroup_size=(64,))
    pool = CommandBufferPool(ctx.device, ctx.compute_queue_family, 1)

    def run(params, inputs):
        a, b = inputs["a"], inputs["b"]
        c = mm.empty(a.shape, a.dtype)
        ds = pipe.allocate_descriptor_set()
        pipe.update_descriptor_set(ds, [(0, *a.descriptor()), (1, *b.descriptor()), (2, *c.descriptor())])
        cmd = pool.begin_command_buffer()
        pipe.record_dispatch(cmd, ds, struct.pack("<I", params["n"]), (-(-params["n"] // 64),))
        pool.end_command_buffer(cmd)
        pool.submit_and_wait(cmd)
        pipe.free_descriptor_set(ds)
        return {"c": c}

    yield mm, run, shader.digest
    pool.destroy(); pipe.destroy(); shader.destroy(); mm.destroy()


def _run_and_record(tmp_path, add_op):
    mm, run, kernel = add_op
    rng = np.random.default_rng(0)
    a = mm.from_numpy(rng.standard_normal(100).astype(np.float32))
    b = mm.from_numpy(rng.standard_normal(100).astype(np.float32))
    c = run({"n": 100}, {"a": a, "b": b})["c"]
    np.testing.assert_array_equal(c.numpy(), a.numpy() + b.numpy())
    d = run({"n": 100}, {"a": c, "b": a})["c"]
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.append("add", kernel, {"n": 100}, {"a": a, "b": b}, {"c": c})
    ledger.append("add", kernel, {"n": 100}, {"a": ("c", c), "b": ("a", a)}, {"c": ("d", d)})
    return ledger, {"a": a, "b": b, "c": c, "d": d}, run


def test_ledger_verifies_by_recomputing(tmp_path, add_op):
    ledger, tensors, run = _run_and_record(tmp_path, add_op)
    recs = ledger.records()
    assert len(recs) == 2 and recs[1].prev == recs[0].hash and recs[0].kernel == add_op[2]
    report = ledger.verify(tensors, {"add": run})
    assert report.ok, report.problems
    assert report.records == 2


def test_tampered_tensor_is_named(tmp_path, add_op):
    ledger, tensors, run = _run_and_record(tmp_path, add_op)
    c = tensors["c"]
    x = c.numpy()
    x[5] += 1
    c.write(x)
    problems = ledger.verify(tensors, {"add": run}).problems
    assert any("tensor 'c' does not match record 1" in p for p in problems), problems
    assert any("record 2" in p and "'c'" in p and "changed since" in p for p in problems), problems


def test_tampered_record_is_named(tmp_path, add_op):
    ledger, tensors, run = _run_and_record(tmp_path, add_op)
    lines = ledger.path.read_text().splitlines()
    rec = json.loads(lines[0])
    rec["params"]["n"] = 99
    lines[0] = json.dumps(rec)
    ledger.path.write_text("\n".join(lines) + "\n")
    problems = ledger.verify(tensors).problems
    assert any("record 1" in p and "altered" in p for p in problems), problems


def test_removed_or_garbled_records_are_reported(tmp_path, add_op):
    ledger, tensors, _ = _run_and_record(tmp_path, add_op)
    lines = ledger.path.read_text().splitlines()
    ledger.path.write_text(lines[1] + "\n{not json\n")
    problems = ledger.verify().problems
    assert any("does not follow" in p for p in problems), problems
    assert any("line 2" in p for p in problems), problems


def test_wrong_recomputation_is_reported(tmp_path, add_op):
    ledger, tensors, run = _run_and_record(tmp_path, add_op)
    mm = add_op[0]

    def wrong(params, inputs):
        out = run(params, inputs)["c"]
        x = out.numpy(); x[0] = 0
        return {"c": mm.from_numpy(x)}
    problems = ledger.verify(tensors, {"add": wrong}).problems
    assert any("recomputing record 1" in p and "'c'" in p for p in problems), problems
    assert any("recomputing record 2" in p and "'d'" in p for p in problems), problems
