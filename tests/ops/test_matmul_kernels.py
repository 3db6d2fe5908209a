"""Matmul kernel choice, once per run rather than per forced tile: every kernel of a family gives
the same bits, every cooperative-matrix tile compiles to valid SPIR-V (it runs only where the
device has cooperative matrices), availability and tile choice."""

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.ops import matmul as mm
from test_linear_algebra import COOP, SPLITS, _bits, _coop, _operands, _short_chunks, _splits

@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chunk", [64, None], ids=["split", "one chunk"])
def test_every_kernel_of_a_family_gives_the_same_bits(dtype, chunk, monkeypatch, rng):
    """The tiled kernel's tiles and (on CPU devices) the direct kernel agree bit for bit; so do
    the cooperative-matrix tiles among themselves."""
    if chunk:
        _short_chunks(monkeypatch, chunk)
    ha, hb, _, _ = _operands(rng, 37, 45, 200, dtype, tb=True)
    families = {"tiled": list(mm.TILES)}
    if _coop(dtype):
        families["coop"] = list(mm.COOP_TILES)
    if mm.cm2_available(hv.default_runtime(), dtype):
        families["cm2"] = list(mm.CM2_TILES)
    elif hv.default_runtime().device.physical.type == "cpu":
        families["tiled"].append(None)  # the direct kernel
    for family, tiles in families.items():
        results = []
        for tile in tiles:
            monkeypatch.setattr(mm, "FORCE_TILE", tile)
            results.append(_bits(ha @ hb))
        for tile, r in zip(tiles[1:], results[1:]):
            np.testing.assert_array_equal(r, results[0], err_msg=f"{family}: {tile} against {tiles[0]}")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)],
                         ids=["A@B", "At@B", "A@Bt", "At@Bt"])
@pytest.mark.parametrize("chunk", SPLITS)
def test_gemm_tiles_inside_and_at_the_edges(dtype, ta, tb, chunk, monkeypatch, rng):
    """Aligned operands several tiles across: workgroups wholly inside M and N load their whole K
    tiles from running indices with no bounds checks, the last K tile (K = 200, no multiple of 16
    or 32) and the edge workgroups with them. Every tile of a kernel (the tiled one everywhere,
    coopmat-1 where the device has it) gives the same bits, close to float64, with every output
    written over NaN."""
    _splits(monkeypatch, chunk)
    M, N, K = 296, 520, 200
    ha, hb, a, b = _operands(rng, M, N, K, dtype, ta, tb)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    families = {"tiled": list(mm.TILES)}
    if _coop(dtype):
        families["coop"] = list(mm.COOP_TILES)
    for family, tiles in families.items():
        results = []
        for tile in tiles:
            monkeypatch.setattr(mm, "FORCE_TILE", tile)
            out = hv.full((M, N), np.nan, dtype=getattr(hv, dtype))
            hv.matmul(ha, hb, out=out)
            got = out.to(hv.float32).numpy().astype(np.float64)
            assert np.isfinite(got).all(), tile
            tol = 1e-4 if dtype == "float32" else 2e-2
            np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max(), err_msg=tile)
            results.append(_bits(out))
        for tile, r in zip(tiles[1:], results[1:]):
            np.testing.assert_array_equal(r, results[0], err_msg=f"{family}: {tile} against {tiles[0]}")


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chunk", SPLITS)
def test_linear_adds_its_bias_as_the_product_is_stored(dtype, chunk, monkeypatch, rng):
    """F.linear's bias, added by the kernel that stores the product (split-K: by its elected
    workgroup, or by its second pass), gives the bits of matmul then add for every kernel (each
    tiled tile, the direct one on CPU devices, coopmat-1 where the device has it): transposed and
    batched inputs, a strided bias, odd shapes, outputs written over NaN, close to float64; and the
    fused kernel is the one that ran.
    (On the H100 a float16 bias added in float32 gave other bits: matmul/epilogue.glsl says why.)"""
    from hlx_vulkan.nn import functional as F
    from opcheck import randn
    _splits(monkeypatch, chunk)
    rt = hv.default_runtime()
    dt = getattr(hv, dtype)
    tiles = [None, *mm.TILES] + (list(mm.COOP_TILES) if _coop(dtype) else [])
    cases = (((296, 200), 520, False), ((37, 45), 29, True), ((3, 17, 200), 67, False))
    for tile in tiles:
        monkeypatch.setattr(mm, "FORCE_TILE", tile)
        for x_shape, fout, x_transposed in cases:
            x = randn(rng, x_shape[::-1] if x_transposed else x_shape, dtype)
            w, b = randn(rng, (fout, x_shape[-1]), dtype), randn(rng, (2 * fout,), dtype)
            hx, hw, hb = hv.tensor(x), hv.tensor(w), hv.tensor(b)[::2]
            if x_transposed:
                hx, x = hx.T, x.T
            out_shape = x_shape[:-1] + (fout,)
            junk = [hv.full(out_shape, np.nan, dtype=dt) for _ in range(3)]  # the output is carved from these
            del junk
            rt.kernels.reset_usage()
            fused = F.linear(hx, hw, hb)
            fused_ran = any("Z" in k.spec.names for k in rt.kernels.used())
            # float16 is fused where the device has float16 arithmetic (lavapipe and the H100 do).
            assert fused_ran == (dtype != "float16" or rt.device.enabled_features.get("shader_float16", False)), tile
            again = F.linear(hx, hw, hb)  # the layer's plan
            composed = hv.matmul(hx, hw.T) + hb
            ref = x.astype(np.float64) @ w.astype(np.float64).T + b[::2].astype(np.float64)
            got = fused.to(hv.float32).numpy().astype(np.float64)
            assert fused.shape == out_shape and np.isfinite(got).all(), tile
            tol = 1e-4 if dtype == "float32" else 2e-2
            np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max(), err_msg=str(tile))
            np.testing.assert_array_equal(_bits(fused), _bits(composed), err_msg=str(tile))
            np.testing.assert_array_equal(_bits(again), _bits(composed), err_msg=str(tile))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("chunk", SPLITS)
def test_linear_relu_applies_relu_as_the_product_is_stored(dtype, chunk, monkeypatch, rng):
    """linear_relu (nn.Sequential's Linear then ReLU) in the kernel that stores the product gives
    the bits of F.relu(F.linear(...)) for every kernel, with and without a bias: relu of the value
    rounded to the output dtype, so a float16 output that rounds to -0.0 stays -0.0 (as relu keeps
    it) and NaN rows stay NaN; close to float64; one launch, the fused kernel; the plan's rerun the
    same; and its gradients the composed form's bits."""
    from hlx_vulkan.nn import functional as F
    from hlx_vulkan.ops.linear import linear_relu
    from opcheck import randn
    _splits(monkeypatch, chunk)
    rt = hv.default_runtime()
    dt = getattr(hv, dtype)
    # One tile a kernel (the epilogue is the kernel's store, whatever its tile): the default (the
    # direct kernel on CPU devices), the tiled kernel, coopmat-1 where the device has it.
    tiles = [None, "small"] + (["coop_small"] if _coop(dtype) else [])
    for tile in tiles:
        monkeypatch.setattr(mm, "FORCE_TILE", tile)
        two = chunk == -64 and not (tile is None and rt.device.physical.type == "cpu")
        # N a multiple of 4 (vector stores) with a bias, a ragged one without.
        for rows, fin, fout, with_bias in ((296, 200, 132, True), (37, 70, 29, False)):
            x, w = randn(rng, (rows, fin), dtype), randn(rng, (fout, fin), dtype)
            x[1] = np.nan  # a NaN row
            # Row 2's first three outputs negative and below float16's least subnormal: without a
            # bias they round to -0.0.
            x[2] = x[2] * np.float32(1e-4)
            w[:3] = -np.sign(x[2]) * np.abs(w[:3]) * np.float32(1e-6)
            b = randn(rng, (fout,), dtype) if with_bias else None
            hx, hw, hb = hv.tensor(x), hv.tensor(w), None if b is None else hv.tensor(b)
            dispatched = rt.stream.dispatches
            rt.kernels.reset_usage()
            fused = linear_relu(hx, hw, hb)
            assert rt.stream.dispatches - dispatched == (2 if two else 1), tile
            assert any(k.defines.get("ACT") == 1 for k in rt.kernels.used()), tile
            again = linear_relu(hx, hw, hb)  # the layer's plan
            composed = F.relu(F.linear(hx, hw, hb))
            ref = x.astype(np.float64) @ w.astype(np.float64).T + (0 if b is None else b.astype(np.float64))
            ref = np.where(ref < 0, 0, ref)
            got = fused.to(hv.float32).numpy().astype(np.float64)
            assert np.isnan(got[1]).all() and np.isfinite(np.delete(got, 1, 0)).all(), tile
            tol = 1e-4 if dtype == "float32" else 2e-2
            np.testing.assert_allclose(np.delete(got, 1, 0), np.delete(ref, 1, 0), rtol=0,
                                       atol=tol * np.abs(np.delete(ref, 1, 0)).max(), err_msg=str(tile))
            if dtype == "float16" and b is None:  # the -0.0s the rounding makes: relu keeps them
                assert (got[2, :3] == 0).all() and np.signbit(got[2, :3]).all(), tile
            np.testing.assert_array_equal(_bits(fused), _bits(composed), err_msg=str(tile))
            np.testing.assert_array_equal(_bits(again), _bits(composed), err_msg=str(tile))
    # The gradients: relu's rule on the saved output, then the layer's (one dispatch per rule).
    x, w, b = (randn(rng, s, dtype) for s in ((41, 70), (29, 70), (29,)))
    g = randn(rng, (41, 29), dtype)
    grads = []
    for fn in (lambda *a: linear_relu(*a), lambda *a: F.relu(F.linear(*a))):
        leaves = [hv.tensor(v).requires_grad_() for v in (x, w, b)]
        fn(*leaves).backward(hv.tensor(g))
        grads.append([_bits(t.grad) for t in leaves])
    for mine, theirs in zip(*grads):
        np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_split_k_in_one_dispatch_gives_the_two_dispatch_bits(dtype, monkeypatch, rng):
    """Split-K in one dispatch (the last of a tile's chunks to finish adds the partials,
    matmul/elect.glsl) against two dispatches, for every tile (the tiled kernel's, coopmat-1's where
    the device has it): several tiles and chunks, a ragged N (partials stored one by one) and a
    multiple of 4, a broadcast batch, an output at an odd offset; equal bits, close to float64,
    every output written over NaN, one dispatch; the election counts are zero again after every
    call, so the next call (the plan's run) gives the same bits."""
    import math
    from opcheck import randn
    _short_chunks(monkeypatch, 64)
    rt = hv.default_runtime()
    dt = getattr(hv, dtype)
    tiles = list(mm.TILES) + (list(mm.COOP_TILES) if _coop(dtype) else [])
    cases = (((296, 200), (200, 520)), ((37, 200), (200, 45)), ((3, 17, 200), (200, 64)))
    for tile in tiles:
        monkeypatch.setattr(mm, "FORCE_TILE", tile)
        for sa, sb in cases:
            a, b = randn(rng, sa, dtype), randn(rng, sb, dtype)
            ha, hb = hv.tensor(a), hv.tensor(b)
            shape = sa[:-1] + sb[-1:]
            ref = a.astype(np.float64) @ b.astype(np.float64)
            results = []
            for one in (False, True, True):  # two dispatches; one; one again, from the plan
                monkeypatch.setattr(mm, "SPLIT_ONE_DISPATCH", one)
                out = hv.full((math.prod(shape) + 1,), np.nan, dtype=dt)[1:].reshape(shape)
                dispatched = rt.stream.dispatches
                hv.matmul(ha, hb, out=out)
                assert rt.stream.dispatches - dispatched == (1 if one else 2), (tile, sa, sb)
                got = out.to(hv.float32).numpy().astype(np.float64)
                assert np.isfinite(got).all(), (tile, sa, sb, one)
                tol = 1e-4 if dtype == "float32" else 2e-2
                np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max(), err_msg=str(tile))
                results.append(_bits(out))
            for r in results[1:]:
                np.testing.assert_array_equal(r, results[0], err_msg=f"{tile}: {sa} @ {sb}")
    counts = rt.plans[("election counts", "matmul")][0]
    assert all(not c.any() for c in rt.read(counts))


def test_split_k_first_met_inside_a_capture(monkeypatch, rng):
    """The election counts are made by a host write, which a capture cannot hold: a split product
    first planned inside one (a fresh process's captured step) takes two dispatches there, with the
    same bits, and the plan serves after the capture too."""
    from opcheck import randn
    _short_chunks(monkeypatch, 64)
    monkeypatch.setattr(mm, "FORCE_TILE", "small")
    rt = hv.default_runtime()
    ha, hb = hv.tensor(randn(rng, (70, 300), "float32")), hv.tensor(randn(rng, (300, 45), "float32"))
    want = _bits(ha @ hb)
    rt.plans.clear()  # no plan and no counts, as in a fresh process
    out = hv.empty((70, 45))
    with hv.capture() as graph:
        dispatched = rt.stream.dispatches
        hv.matmul(ha, hb, out=out)
        assert rt.stream.dispatches - dispatched == 2
    graph.replay()
    np.testing.assert_array_equal(_bits(out), want)
    np.testing.assert_array_equal(_bits(hv.matmul(ha, hb, out=hv.empty((70, 45)))), want)
    graph.destroy()
    rt.plans.clear()
    assert mm.ELECT_MAX_OUTPUTS >= 70 * 45
    dispatched = rt.stream.dispatches
    np.testing.assert_array_equal(_bits(ha @ hb), want)  # outside a capture: one dispatch
    assert rt.stream.dispatches - dispatched == 1


def _coop_defines(dtype, **flags):
    from hlx_vulkan.runtime.kernels import slot_defines
    d = {"CT": "float", "OCT": "float"}
    out = hv.float32 if flags.get("SPLIT") == 1 else getattr(hv, dtype)
    d.update({**slot_defines("A", getattr(hv, dtype)), **slot_defines("B", getattr(hv, dtype)),
              **slot_defines("O", out)})
    d.update({k: 0 for k in ("A_COLS", "B_COLS", "A_VEC", "B_VEC", "O_VEC", "SPLIT")})
    d.update(flags)
    if dtype == "bfloat16":
        d["HLX_COOPMAT_BF16"] = 1
    return d


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("tile", COOP)
def test_cooperative_matrix_kernels_are_valid_spirv(dtype, tile):
    """They run only where the device has cooperative matrices (not lavapipe); here every tile is
    compiled, with a spread of layout, vector, split and epilogue flags, and checked by spirv-val."""
    from hlx_vulkan.compiler import compile_file
    from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
    sgm, sgn, fm, fn, bk, stages = mm.COOP_TILES[tile]
    geometry = {"SGM": sgm, "SGN": sgn, "FM": fm, "FN": fn, "BK": bk, "STAGES": stages}
    flag_sets = [{}, {"A_VEC": 1, "B_VEC": 1, "O_VEC": 1},
                 {"A_COLS": 1, "B_COLS": 1, "A_VEC": 1, "B_VEC": 1, "SPLIT": 1, "O_VEC": 1},
                 {"A_COLS": 1, "SPLIT": 1}, {"B_COLS": 1, "O_VEC": 1}, {"A_VEC": 1, "B_VEC": 1, "O_VEC": 1, "BIAS": 1},
                 {"B_COLS": 1, "BIAS": 1}, {"A_VEC": 1, "B_VEC": 1, "O_VEC": 1, "SPLIT": 2, "P_VEC": 1},
                 {"A_COLS": 1, "SPLIT": 2, "P_VEC": 0, "BIAS": 1}, {"A_VEC": 1, "B_VEC": 1, "O_VEC": 1, "ACT": 1},
                 {"B_COLS": 1, "BIAS": 1, "ACT": 1}, {"SPLIT": 2, "P_VEC": 1, "O_VEC": 1, "BIAS": 1, "ACT": 1}]
    for flags in flag_sets:
        spirv = compile_file(mm.COOPMAT.path, {**_coop_defines(dtype, **flags), **geometry}, target_env="vulkan1.3")
        validate_spirv(spirv, "vulkan1.3")
        reflection = parse_spirv(spirv)
        assert "CooperativeMatrixKHR" in reflection.capabilities
        assert ("BFloat16CooperativeMatrixKHR" in reflection.capabilities) == (dtype == "bfloat16")
        spec = mm._biased(mm.COOPMAT) if flags.get("BIAS") else mm.COOPMAT
        (mm._elected(spec) if flags.get("SPLIT") == 2 else spec).check(reflection)


def test_cooperative_matrix_availability():
    rt = hv.default_runtime()
    feats = rt.ctx.info["features"]
    if not feats["cooperative_matrix"]:
        assert not mm.coopmat_available(rt, hv.float16)
    assert not mm.coopmat_available(rt, hv.float32)
    if not feats.get("bfloat16_cooperative_matrix"):
        assert not mm.coopmat_available(rt, hv.bfloat16)


def test_tile_choice_follows_the_problem_size():
    tiles = {name: t[:2] for name, t in mm.TILES.items()}
    assert mm._pick(tiles, 512, 1024, 1, "small") == "small"
    assert mm._pick(tiles, 1024, 2048, 1, "small") == "small"
    assert mm._pick(tiles, 2048, 2048, 1, "small") == "huge"
    assert mm._pick(tiles, 4096, 4096, 1, "small") == "huge"
    assert mm._pick({"small": (64, 64), "large": (128, 128)}, 2048, 2048, 1, "small") == "large"
    assert mm._pick(tiles, 3000, 3000, 1, "small") == "huge"  # pads 4 % more than small: taken
    assert mm._pick(tiles, 430, 8018, 1, "small") == "huge"  # 14 % more: taken
    # Narrow products: a tile twice or four times as wide as the product is turned away.
    assert mm._pick(tiles, 65536, 128, 1, "small") == "large"
    assert mm._pick(tiles, 65536, 64, 1, "small") == "small"
    assert mm._pick(tiles, 512, 64, 256, "small") == "small"


def test_tiled_k_step_fits_the_devices_shared_memory():
    """BK halves only where a tile's two shared stages (and strict mode's marks) would not fit."""
    from types import SimpleNamespace
    def rt(budget):
        return SimpleNamespace(ctx=SimpleNamespace(physical_device=SimpleNamespace(
            limits={"max_compute_shared_memory_size": budget})))
    assert mm._tiled_k_step(rt(32768), 128, 128, 16, 0) == 16  # 32 KiB exactly
    assert mm._tiled_k_step(rt(32768), 128, 128, 16, 1) == 8
    assert mm._tiled_k_step(rt(1024), 128, 128, 16, 1) == 8  # never below 8
    with hv.strict():
        assert mm._tiled_k_step(rt(32768), 128, 128, 16, 0) == 8
        assert mm._tiled_k_step(rt(49152), 128, 128, 16, 0) == 16
