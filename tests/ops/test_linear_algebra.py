import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan import errors
from opcheck import check, f64, randn

TOL = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
SHAPES = [((1, 1), (1, 1)), ((37, 29), (29, 53)), ((65, 1), (1, 130)), ((64, 64), (64, 64)),
          ((2, 1, 5, 7), (3, 7, 4)), ((4, 3, 9), (9, 2)), ((7,), (7, 3)), ((4, 7), (7,)), ((5,), (5,)),
          ((3, 70, 20), (3, 20, 17)), ((48, 32), (32, 80)), ((2, 64, 128), (128, 96))]


@pytest.fixture(autouse=True, params=[None, "small", "wide", "large"],
                ids=["device's choice", "small tile", "wide tile", "large tile"])
def matmul_kernel(request, monkeypatch):
    """Run every test with the device's own choice and with each shared-memory tile, which a
    CPU device (or a small problem) would otherwise never run."""
    from hlx_vulkan.ops import matmul
    monkeypatch.setattr(matmul, "FORCE_TILE", request.param)



@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("sa,sb", SHAPES, ids=str)
def test_matmul_matches_numpy(dtype, sa, sb, rng):
    a, b = randn(rng, sa, dtype), randn(rng, sb, dtype)
    got = hv.tensor(a) @ hv.tensor(b)
    ref = f64(a) @ f64(b)
    assert got.shape == ref.shape and got.dtype.name == dtype
    check(got.numpy(), ref, dtype, TOL[dtype])


def test_transposed_operands_need_no_copy(rng):
    a, b = randn(rng, (40, 30), "float32"), randn(rng, (50, 40), "float32")
    ta, tb = hv.tensor(a).T, hv.tensor(b).T
    dispatched = ta.runtime.stream.dispatches
    got = ta @ tb
    assert ta.runtime.stream.dispatches == dispatched + 1
    check(got.numpy(), f64(a).T @ f64(b).T, "float32", 1e-4)


def test_every_output_written_over_poison_and_k_zero(rng):
    a, b = randn(rng, (33, 17), "float32"), randn(rng, (17, 65), "float32")
    out = hv.full((33, 65), np.nan)
    hv.matmul(hv.tensor(a), hv.tensor(b), out=out)
    assert not np.isnan(out.numpy()).any()
    check(out.numpy(), f64(a) @ f64(b), "float32", 1e-4)
    z = hv.matmul(hv.zeros(3, 0), hv.zeros(0, 4))
    np.testing.assert_array_equal(z.numpy(), np.zeros((3, 4)))
    assert hv.matmul(hv.zeros(0, 5), hv.zeros(5, 2)).shape == (0, 2)


def test_matmul_is_deterministic(rng):
    a, b = hv.tensor(randn(rng, (130, 257), "float32")), hv.tensor(randn(rng, (257, 70), "float32"))
    assert (a @ b).digest() == (a @ b).digest()


def test_matmul_errors():
    with pytest.raises(errors.ShapeError, match=r"\(3, 4\) and \(5, 2\)"):
        hv.randn(3, 4) @ hv.randn(5, 2)
    with pytest.raises(errors.DTypeError, match="float32 and float16"):
        hv.randn(3, 4) @ hv.randn(4, 2, dtype=hv.float16)
    with pytest.raises(errors.DTypeError):
        hv.tensor([[1, 2]]) @ hv.tensor([[1], [2]])


def test_cooperative_matrix_kernel_is_valid_spirv():
    """It runs only where the device has cooperative matrices (not lavapipe); here, check what can be checked."""
    from hlx_vulkan.compiler import compile_file
    from hlx_vulkan.ops import matmul as mm
    from hlx_vulkan.vk.spirv import parse_spirv, validate_spirv
    defines = {"CT": "float", "OCT": "float", **{f"{s}_STORAGE": "float16_t" for s in "ABCO"},
               **{f"{s}_KIND": 0 for s in "ABCO"}}
    spirv = compile_file(mm.COOPMAT.path, defines, target_env="vulkan1.3")
    validate_spirv(spirv, "vulkan1.3")
    assert "CooperativeMatrixKHR" in parse_spirv(spirv).capabilities
    assert mm.coopmat_available(hv.default_runtime()) == bool(
        hv.default_runtime().ctx.info["features"]["cooperative_matrix"])
