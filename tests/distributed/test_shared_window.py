"""Gradient buckets through the node's MPI shared-memory window (hlx_vulkan.distributed.shared):
with the window imported as Vulkan memory, with the memcpy fallback, with ranks mixing the two, and
the MPI all-gather path: every one the bits of one process with as many micro-batches. The window
outlives the Vulkan memory that imports it, whether closed or left to the exit; a stopped rank ends
the run in bounded time."""

from __future__ import annotations

import json

import pytest

from test_distributed import LIMIT_S, WORKER, _single, mpirun, results

_singles: dict = {}


def single(ranks: int) -> str:
    if ranks not in _singles:
        _singles[ranks] = _single(ranks)
    return _singles[ranks]


def exit_reports(proc) -> dict:
    return {r["rank"]: r for r in (json.loads(ln[5:]) for ln in proc.stdout.splitlines() if ln.startswith("EXIT "))}


@pytest.mark.parametrize("ranks, env, paths", [
    (2, {}, ["import", "import"]),
    (3, {}, ["import"] * 3),
    (2, {"HLX_DIST_HOST_IMPORT": "0"}, ["copy", "copy"]),
    (3, {"HLX_DIST_HOST_IMPORT": "0"}, ["copy"] * 3),
    (2, {"NO_IMPORT_RANK1": "1"}, ["import", "copy"]),
    (2, {"HLX_DIST_SHARED": "0"}, ["allgather", "allgather"]),
    (2, {"OMPI_MCA_osc": "^sm,ucx"}, ["allgather", "allgather"]),  # an MPI that cannot make the window
], ids=["import-2", "import-3", "copy-2", "copy-3", "mixed-2", "allgather-2", "no-window-2"])
def test_every_exchange_gives_the_bits_of_one_process(ranks, env, paths):
    proc, _ = mpirun(ranks, [WORKER, "ddp", "dp", "1"], env={"PERTURB_RANK1": "1", "CLOSE": "1", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = results(proc)
    assert [res[r]["path"] for r in range(ranks)] == paths
    reasons = {"import": "", "copy": "HLX_DIST_HOST_IMPORT=0", "allgather": "HLX_DIST_SHARED=0"}
    for r in range(ranks):
        want = reasons[paths[r]] if "OMPI_MCA_osc" not in env else "no shared window: rank 0: shared window allocation"
        assert res[r]["reason"].startswith(want) and (want or res[r]["reason"] == ""), res[r]["reason"]
    assert {r["digest"] for r in res.values()} == {single(ranks)}
    for r in res.values():
        assert r["early"] > 0 and r["stats"]["steps"] == 3
        if r["path"] == "allgather":
            assert r["stats"]["mpi_s"] > 0 and r["stats"]["peers_s"] == 0 and r["events"] == ["imports alive: 0"]
        else:  # the shared window: no MPI data movement, flags waited on
            assert r["stats"]["mpi_s"] == 0 and r["stats"]["peers_s"] > 0
            freed = ["imports destroyed", "window freed"] if r["path"] == "import" else ["window freed"]
            assert r["events"] == freed + ["imports alive: 0"]  # the Vulkan memory went first
    assert "OSC UCX" not in proc.stderr


@pytest.mark.parametrize("env", [{}, {"HLX_DIST_HOST_IMPORT": "0"}], ids=["import", "copy"])
def test_the_window_left_to_the_exit_outlives_its_imports(env):
    proc, _ = mpirun(2, [WORKER, "ddp", "dp", "1"], env={"EXIT_EVENTS": "1", **env})
    assert proc.returncode == 0, proc.stderr[-3000:]
    exits = exit_reports(proc)
    assert sorted(exits) == [0, 1]
    want = ["imports destroyed", "window freed"] if not env else ["window freed"]
    assert all(e["events"] == want and e["imports_alive"] == 0 for e in exits.values()), exits
    assert {r["digest"] for r in results(proc).values()} == {single(2)}


@pytest.mark.parametrize("how, needles", [
    ("hang", ["CollectiveTimeoutError", "rank 1 did not put step 2's gradient bucket", "within 5 s"]),
    ("kill", ["rank 1", "signal 9"]),
])
def test_a_rank_that_stops_mid_training_ends_the_run_in_bounded_time(how, needles):
    proc, seconds = mpirun(2, [WORKER, "ddp", "dp", "1"], env={"FAIL_AT_STEP": how, "HLX_DIST_TIMEOUT": "5"})
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "RESULT" not in proc.stdout  # no rank finished training
    for needle in needles:
        assert needle in text, text[-3000:]
    assert seconds < LIMIT_S / 2, f"{how}: took {seconds:.0f} s (rank 1 sleeps 120 s in 'hang')"


def test_the_window_is_taken_only_where_it_can_serve(monkeypatch):
    from types import SimpleNamespace

    from hlx_vulkan.distributed import shared
    monkeypatch.setattr(shared._g, "gather_objects", lambda mine: [mine, ""])  # rank 1 would take it
    monkeypatch.setattr(shared, "_free_bytes", lambda path: 4 << 30)
    monkeypatch.delenv("HLX_DIST_SHARED", raising=False)
    monkeypatch.setenv("OMPI_MCA_osc_sm_backing_directory", "/dev/shm")
    two = SimpleNamespace(world_size=2, local_size=2)
    assert shared.choose(two, [3 << 20, 1000]) == ""
    assert shared.segment_bytes([3 << 20, 1000]) == 4096 + 4096 + 2 * (3 << 20) + 2 * 4096
    assert shared.choose(two, [3 << 30]) == "/dev/shm has 4096 MiB free, the window needs 12288 MiB"  # 2 ranks, 2 slots
    assert shared.choose(SimpleNamespace(world_size=4, local_size=2), [64]) == "ranks on several hosts"
    assert shared.choose(SimpleNamespace(world_size=1, local_size=1), [64]) == "one rank"
    monkeypatch.setenv("HLX_DIST_SHARED", "0")
    assert shared.choose(two, [64]) == "HLX_DIST_SHARED=0"


def test_the_window_file_goes_where_there_is_room(monkeypatch):
    from hlx_vulkan.distributed import shared
    monkeypatch.delenv("OMPI_MCA_osc_sm_backing_directory", raising=False)
    monkeypatch.delenv("OMPI_MCA_osc", raising=False)
    monkeypatch.setattr(shared, "_free_bytes", lambda path: 64 << 20 if path == "/dev/shm" else 100 << 30)
    shared.prepare_environment()
    assert shared.backing_directory() == shared.tempfile.gettempdir() != "/dev/shm"
    assert shared.os.environ["OMPI_MCA_osc"] == "^ucx"
    monkeypatch.delenv("OMPI_MCA_osc_sm_backing_directory")
    monkeypatch.setattr(shared, "_free_bytes", lambda path: 8 << 30)
    shared.prepare_environment()
    assert shared.backing_directory() == "/dev/shm"
    monkeypatch.setenv("OMPI_MCA_osc_sm_backing_directory", "/mine")  # the user's choice stands
    shared.prepare_environment()
    assert shared.backing_directory() == "/mine"
