import sys

from conftest import ROOT, assert_clean_exit, run_python


def test_vector_add_example_runs_the_workflow_and_matches_numpy():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import vector_add
    finally:
        sys.path.pop(0)
    # With validation on: any error the layer reports fails this test (the conftest's gate).
    rel, bit_exact = vector_add.vector_add(n=(1 << 20), enable_validation=True, seed=3)
    assert bit_exact
    assert rel < 1e-7


def test_vector_add_script_exit_code():
    proc = run_python([str(ROOT / "examples" / "vector_add.py"), "--n", "5000"])
    assert_clean_exit(proc)
    assert "OK: matches numpy" in proc.stdout
