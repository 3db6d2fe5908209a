"""Matmul kernel choice, once per run rather than per forced tile: every kernel of a family gives
the same bits, every cooperative-matrix tile compiles to valid SPIR-V (it runs only where the
device has cooperative matrices), availability and tile choice."""

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.ops import matmul as mm
from test_linear_algebra import COOP, _bits, _coop, _operands, _short_chunks

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


def _coop_defines(dtype, **flags):
    from hlx_vulkan.runtime.kernels import slot_defines
    d = {"CT": "float", "OCT": "float"}
    out = hv.float32 if flags.get("SPLIT") else getattr(hv, dtype)
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
    compiled, with a spread of layout, vector and split flags, and checked by spirv-val."""
    from hlx_vulkan.compiler import compile_file
    from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
    sgm, sgn, fm, fn, bk, stages = mm.COOP_TILES[tile]
    geometry = {"SGM": sgm, "SGN": sgn, "FM": fm, "FN": fn, "BK": bk, "STAGES": stages}
    flag_sets = [{}, {"A_VEC": 1, "B_VEC": 1, "O_VEC": 1},
                 {"A_COLS": 1, "B_COLS": 1, "A_VEC": 1, "B_VEC": 1, "SPLIT": 1, "O_VEC": 1},
                 {"A_COLS": 1, "SPLIT": 1}, {"B_COLS": 1, "O_VEC": 1}]
    for flags in flag_sets:
        spirv = compile_file(mm.COOPMAT.path, {**_coop_defines(dtype, **flags), **geometry}, target_env="vulkan1.3")
        validate_spirv(spirv, "vulkan1.3")
        reflection = parse_spirv(spirv)
        assert "CooperativeMatrixKHR" in reflection.capabilities
        assert ("BFloat16CooperativeMatrixKHR" in reflection.capabilities) == (dtype == "bfloat16")
        mm.COOPMAT.check(reflection)


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
    assert mm._pick(tiles, 4096, 4096, 1, "small") == "large"
