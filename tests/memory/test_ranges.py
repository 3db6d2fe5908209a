import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hlx_vulkan.memory import RangeAllocator

ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(1, 5000), st.sampled_from([1, 4, 16, 64, 256])),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.just(0)),
), max_size=120)


def _check(r: RangeAllocator, live: dict):
    used = sorted((off, size) for off, (size, _) in live.items())
    for (a, sa), (b, _) in zip(used, used[1:]):
        assert a + sa <= b, "overlapping allocations"
    for off, (size, align) in live.items():
        assert off % align == 0 and off + size <= r.capacity
    assert r.in_use == sum(s for s, _ in live.values())
    free = r.free_ranges()
    for (a, sa), (b, _) in zip(free, free[1:]):
        assert a + sa < b, "adjacent free ranges were not coalesced"
    covered = sum(s for _, s in free) + sum(s for _, s in r.used_ranges())
    assert covered <= r.capacity
    assert r.largest_free == max((s for _, s in free), default=0)


@settings(max_examples=200, deadline=None, derandomize=True)  # seeded: a failure reproduces
@given(ops)
def test_random_alloc_free_sequences(seq):
    r = RangeAllocator(64 * 1024)
    live = {}
    for kind, a, b in seq:
        if kind == "alloc":
            off = r.allocate(a, b)
            if off is not None:
                assert off not in live
                live[off] = (a, b)
        elif live:
            off = sorted(live)[a % len(live)]
            r.free(off)
            del live[off]
        _check(r, live)
    for off in list(live):
        r.free(off)
    assert r.free_ranges() == [(0, r.capacity)] and r.in_use == 0 and r.empty


def test_exact_fill_and_refusals():
    r = RangeAllocator(1024)
    offs = [r.allocate(256, 256) for _ in range(4)]
    assert offs == [0, 256, 512, 768]
    assert r.allocate(1) is None
    r.free(256)
    r.free(512)
    assert r.free_ranges() == [(256, 512)]
    assert r.allocate(512, 256) == 256
    with pytest.raises(ValueError, match="double free"):
        r.free(12345)
    with pytest.raises(ValueError, match="power of two"):
        r.allocate(8, 3)
    with pytest.raises(ValueError, match="positive"):
        r.allocate(0)


def test_soak_10000_cycles_does_not_fragment_away():
    rng = random.Random(7)
    r = RangeAllocator(1 << 24)
    live = []
    for _ in range(10_000):
        if live and (rng.random() < 0.5 or len(live) > 200):
            r.free(live.pop(rng.randrange(len(live))))
        else:
            off = r.allocate(rng.randint(1, 20_000), rng.choice([16, 256]))
            assert off is not None
            live.append(off)
    for off in live:
        r.free(off)
    assert r.free_ranges() == [(0, 1 << 24)]
