import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_vector_add_example_runs_the_workflow_and_matches_numpy():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import vector_add
    finally:
        sys.path.pop(0)
    rel, bit_exact = vector_add.vector_add(n=(1 << 20), enable_validation=False, seed=3)
    assert bit_exact
    assert rel < 1e-7


def test_vector_add_script_exit_code():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "vector_add.py"), "--n", "5000"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "OK: matches numpy" in proc.stdout
