"""The README's Python examples run as written, from the repository's root."""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, assert_clean_exit, run_python

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path):
    script = tmp_path / f"readme_{index}.py"
    script.write_text(BLOCKS[index])
    assert_clean_exit(run_python([str(script)], cwd=ROOT))
