"""Known answers (``tests/known_answers.py``): the digest of each fixed computation on this device
against the one recorded in ``tests/known_answers.json``. On lavapipe every one is compared."""

from __future__ import annotations

import pytest

import hlx_vulkan as hv
import known_answers as ka

RECORDED = ka.load()
NAMES = sorted(RECORDED.get(ka.LAVAPIPE, {}).get("digests", {}))
REGENERATE = ("if the change of bits is deliberate (a new reduction order, a new kernel), record it with "
              "`python -m tests.known_answers --update` and commit tests/known_answers.json")


@pytest.fixture(scope="module")
def here():
    key = ka.device_key(hv.default_runtime().ctx.info)
    digests, names = ka.reference(RECORDED, key)
    return key, ka.compute(), digests, names


def test_every_computation_is_recorded_and_every_record_computed(here):
    key, computed, digests, names = here
    assert NAMES, f"{ka.FILE.name} has no '{ka.LAVAPIPE}' entry"
    expected = set(digests) if names is None else set(names)
    assert set(computed) >= expected and (names is not None or set(computed) == expected), \
        f"computed but not recorded: {sorted(set(computed) - expected)}; recorded but not computed: " \
        f"{sorted(expected - set(computed))}; {REGENERATE}"
    assert ka.PORTABLE <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_known_answer(name, here):
    key, computed, digests, names = here
    if names is not None and name not in names:
        pytest.skip(f"'{key}' has no entry of its own and {name} may differ in the last bits across devices")
    assert computed[name] == digests[name], f"{name}: the bits changed on {key}; {REGENERATE}"
