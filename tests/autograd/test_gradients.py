"""Every differentiable op's gradient against PyTorch (CPU, float64, the same inputs) and
against central finite differences in float64 on the host."""

from __future__ import annotations

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional
TOL = 1e-4


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"gradient shape {a.shape} != reference {b.shape}"
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _inputs(rng, specs):
    out = []
    for spec in specs:
        shape, kind = spec if isinstance(spec, tuple) and isinstance(spec[-1], str) else (spec, "any")
        x = rng.standard_normal(shape)
        if kind == "pos":
            x = np.abs(x) + 0.5
        elif kind == "away0":  # keep clear of kinks at 0 (relu, abs)
            x = np.sign(x) * (np.abs(x) + 0.2)
        elif kind == "distinct":  # no ties for max/min/maximum
            x = rng.permutation(x.size).reshape(shape) * 0.37 - x.size * 0.15
        out.append(x.astype(np.float32))
    return out


def _finite_differences(fn, xs, w, eps=1e-6):
    grads = []
    for i, x in enumerate(xs):
        g = np.zeros_like(x)
        for j in range(x.size):
            plus = [t.copy() for t in xs]
            minus = [t.copy() for t in xs]
            plus[i].flat[j] += eps
            minus[i].flat[j] -= eps
            fp = (fn(*[torch.tensor(t) for t in plus]).numpy() * w).sum()
            fm = (fn(*[torch.tensor(t) for t in minus]).numpy() * w).sum()
            g.flat[j] = (fp - fm) / (2 * eps)
        grads.append(g)
    return grads


CASES = {
    "add_broadcast": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (4,)]),
    "sub_broadcast": (lambda a, b: a - b, lambda a, b: a - b, [(3, 1), (1, 4)]),
    "mul_broadcast": (lambda a, b: a * b, lambda a, b: a * b, [(2, 3, 4), (3, 1)]),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [(3, 4), ((4,), "pos")]),
    "scalar_ops": (lambda a: (2.0 - a) * 3.0 + a / 2.0 - 1.5, lambda a: (2.0 - a) * 3.0 + a / 2.0 - 1.5, [(5,)]),
    "rdiv": (lambda a: 2.0 / a, lambda a: 2.0 / a, [((6,), "pos")]),
    "neg": (lambda a: -a, lambda a: -a, [(5,)]),
    "pow3": (lambda a: a ** 3, lambda a: a ** 3, [(6,)]),
    "pow2": (lambda a: a ** 2, lambda a: a ** 2, [(6,)]),
    "pow_half": (lambda a: a ** 0.5, lambda a: a ** 0.5, [((6,), "pos")]),
    "pow_frac": (lambda a: a ** 1.7, lambda a: a ** 1.7, [((6,), "pos")]),
    "exp": (hv.exp, torch.exp, [(7,)]),
    "log": (hv.log, torch.log, [((7,), "pos")]),
    "sqrt": (hv.sqrt, torch.sqrt, [((7,), "pos")]),
    "rsqrt": (hv.rsqrt, torch.rsqrt, [((7,), "pos")]),
    "tanh": (hv.tanh, torch.tanh, [(7,)]),
    "sigmoid": (hv.sigmoid, torch.sigmoid, [(7,)]),
    "sin": (lambda a: a.sin(), torch.sin, [(7,)]),
    "cos": (lambda a: a.cos(), torch.cos, [(7,)]),
    "relu": (hv.relu, torch.relu, [((3, 5), "away0")]),
    "gelu_erf": (hv.gelu, TF.gelu, [(9,)]),
    "gelu_tanh": (lambda a: hv.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"), [(9,)]),
    "abs": (hv.abs, torch.abs, [((8,), "away0")]),
    "maximum": (hv.maximum, torch.maximum, [((3, 4), "distinct"), ((4,), "distinct")]),
    "minimum": (hv.minimum, torch.minimum, [((3, 4), "distinct"), ((3, 1), "distinct")]),
    "maximum_scalar": (lambda a: hv.maximum(a, 0.3), lambda a: torch.clamp(a, min=0.3), [((8,), "away0")]),
    "clamp": (lambda a: hv.clamp(a, -0.5, 0.7), lambda a: torch.clamp(a, -0.5, 0.7), [((9,), "away0")]),
    "where": (lambda a, b: hv.where(a > 0, a, b), lambda a, b: torch.where(a > 0, a, b), [((3, 4), "away0"), (4,)]),
    "sum_all": (lambda a: a.sum(), lambda a: a.sum(), [(3, 4)]),
    "sum_axis": (lambda a: a.sum(axis=1), lambda a: a.sum(1), [(2, 3, 4)]),
    "sum_axes_keepdim": (lambda a: a.sum(axis=(0, 2), keepdim=True), lambda a: a.sum((0, 2), keepdim=True),
                         [(2, 3, 4)]),
    "mean_axis": (lambda a: a.mean(axis=-1), lambda a: a.mean(-1), [(3, 5)]),
    "mean_all": (lambda a: a.mean(), lambda a: a.mean(), [(3, 5)]),
    "max_axis": (lambda a: a.amax(axis=1), lambda a: a.amax(1), [((3, 5), "distinct")]),
    "max_dim_values": (lambda a: a.max(dim=1).values, lambda a: a.max(dim=1).values, [((3, 5), "distinct")]),
    "min_dim_keepdim": (lambda a: a.min(0, keepdim=True)[0], lambda a: a.min(0, keepdim=True)[0],
                        [((4, 3), "distinct")]),
    "min_all": (lambda a: a.min(), lambda a: a.amin(), [((3, 5), "distinct")]),
    "var": (lambda a: a.var(axis=0), lambda a: a.var(0), [(5, 3)]),
    "matmul": (hv.matmul, torch.matmul, [(3, 4), (4, 5)]),
    "matmul_batched_broadcast": (hv.matmul, torch.matmul, [(2, 3, 4), (4, 5)]),
    "matmul_batch_both": (hv.matmul, torch.matmul, [(2, 1, 3, 4), (3, 4, 2)]),
    "matmul_vec_mat": (hv.matmul, torch.matmul, [(4,), (4, 3)]),
    "matmul_mat_vec": (hv.matmul, torch.matmul, [(3, 4), (4,)]),
    "matmul_transposed": (lambda a, b: a @ b.T, lambda a, b: a @ b.T, [(3, 4), (5, 4)]),
    "reshape": (lambda a: a.reshape(4, 3) * a.reshape(4, 3), lambda a: a.reshape(4, 3) * a.reshape(4, 3),
                [(3, 4)]),
    "reshape_noncontiguous": (lambda a: a.T.reshape(12), lambda a: a.T.reshape(12), [(3, 4)]),
    "permute": (lambda a: a.permute(2, 0, 1), lambda a: a.permute(2, 0, 1), [(2, 3, 4)]),
    "transpose": (lambda a: a.transpose(0, 1), lambda a: a.transpose(0, 1), [(3, 4)]),
    "expand": (lambda a: a.expand(3, 4), lambda a: a.expand(3, 4), [(1, 4)]),
    "unsqueeze_squeeze": (lambda a: a.unsqueeze(1).squeeze(), lambda a: a.unsqueeze(1).squeeze(), [(3, 4)]),
    "slice": (lambda a: a[1:, ::2], lambda a: a[1:, ::2], [(4, 5)]),
    "int_index": (lambda a: a[1], lambda a: a[1], [(3, 4)]),
    "index_select_repeats": (lambda a: a[[2, 0, 2, 2]], lambda a: a[[2, 0, 2, 2]], [(3, 4)]),
    "index_select_axis1": (lambda a: hv.index_select(a, 1, [3, 1, 1]),
                           lambda a: torch.index_select(a, 1, torch.tensor([3, 1, 1])), [(2, 4, 3)]),
    "concat": (lambda a, b: hv.concat([a, b, a], axis=1), lambda a, b: torch.cat([a, b, a], 1), [(2, 3), (2, 2)]),
    "stack": (lambda a, b: hv.stack([a, b]), lambda a, b: torch.stack([a, b]), [(3,), (3,)]),
    "softmax": (lambda a: F.softmax(a, axis=-1), lambda a: TF.softmax(a, -1), [(3, 5)]),
    "softmax_axis0": (lambda a: F.softmax(a, axis=0), lambda a: TF.softmax(a, 0), [(4, 3)]),
    "log_softmax": (lambda a: F.log_softmax(a, axis=1), lambda a: TF.log_softmax(a, 1), [(3, 6)]),
    "layer_norm": (lambda a, w, b: F.layer_norm(a, (5,), w, b), lambda a, w, b: TF.layer_norm(a, (5,), w, b),
                   [(3, 5), (5,), (5,)]),
    "cross_entropy": (lambda a: F.cross_entropy(a, hv.tensor([1, 0, 3])),
                      lambda a: TF.cross_entropy(a, torch.tensor([1, 0, 3])), [(3, 4)]),
    "mse_loss": (F.mse_loss, TF.mse_loss, [(3, 4), (3, 4)]),
    "cast_roundtrip": (lambda a: a.to(hv.float32) * 2.0, lambda a: a * 2.0, [(5,)]),
    # PyTorch-semantics ops: dim= forms, new differentiable ops, mixed types
    "silu": (hv.nn.functional.silu, TF.silu, [(9,)]),
    "leaky_relu": (lambda a: hv.nn.functional.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2),
                   [((9,), "away0")]),
    "reciprocal": (lambda a: a.reciprocal(), lambda a: a.reciprocal(), [((6,), "pos")]),
    "pow_tensor_exponent": (lambda a, b: a ** b, lambda a, b: a ** b, [((5,), "pos"), (5,)]),
    "rpow": (lambda a: 2.0 ** a, lambda a: 2.0 ** a, [(5,)]),
    "pow_zero_plus_square": (lambda a: a ** 0 + a ** 2, lambda a: a ** 0 + a ** 2, [(5,)]),
    "remainder": (lambda a, b: a % b, lambda a, b: a % b, [(6,), ((6,), "pos")]),
    "clamp_min_only": (lambda a: a.clamp(min=0.1), lambda a: a.clamp(min=0.1), [((7,), "away0")]),
    "masked_fill": (lambda a: a.masked_fill(a < 0, 0.5), lambda a: a.masked_fill(a < 0, 0.5), [((3, 4), "away0")]),
    "where_scalar": (lambda a: hv.where(a > 0, a, 0.0), lambda a: torch.where(a > 0, a, 0.0), [((3, 4), "away0")]),
    "where_int_condition_mixed": (lambda a, b: hv.where(a > 0, a * 2, b), lambda a, b: torch.where(a > 0, a * 2, b),
                                  [((3, 4), "away0"), (3, 4)]),
    "tril": (lambda a: a.tril(), lambda a: a.tril(), [(4, 5)]),
    "triu_batched": (lambda a: hv.triu(a, diagonal=1), lambda a: torch.triu(a, diagonal=1), [(2, 3, 3)]),
    "split": (lambda a: a.split(2, dim=1)[1] * a.split(2, dim=1)[2].sum(), lambda a: a.split(2, dim=1)[1] *
              a.split(2, dim=1)[2].sum(), [(3, 5)]),
    "chunk": (lambda a: hv.cat(a.chunk(3, dim=0)[::-1], dim=0), lambda a: torch.cat(a.chunk(3, dim=0)[::-1], dim=0),
              [(5, 2)]),
    "std": (lambda a: a.std(dim=1), lambda a: a.std(dim=1), [(3, 5)]),
    "std_biased_keepdim": (lambda a: a.std(dim=0, unbiased=False, keepdim=True),
                           lambda a: a.std(dim=0, unbiased=False, keepdim=True), [(4, 3)]),
    "logsumexp": (lambda a: a.logsumexp(dim=1), lambda a: a.logsumexp(dim=1), [(3, 5)]),
    "logsumexp_large": (lambda a: (a * 40).logsumexp(dim=0), lambda a: (a * 40).logsumexp(dim=0), [(4, 3)]),
    "repeat": (lambda a: a.repeat(2, 3), lambda a: a.repeat(2, 3), [(2, 3)]),
    "cumsum": (lambda a: a.cumsum(dim=1), lambda a: a.cumsum(dim=1), [(3, 70)]),
    "cumsum_strided": (lambda a: a.T.cumsum(0), lambda a: a.T.cumsum(0), [(3, 4)]),
    "flatten_unflatten": (lambda a: a.flatten(1).unflatten(1, (2, 6)) * a.reshape(2, 2, 6),
                          lambda a: a.flatten(1).unflatten(1, (2, 6)) * a.reshape(2, 2, 6), [(2, 3, 4)]),
    "bmm": (hv.bmm, torch.bmm, [(2, 3, 4), (2, 4, 5)]),
    "einsum_matmul": (lambda a, b: hv.einsum("ij,kj->ik", a, b), lambda a, b: torch.einsum("ij,kj->ik", a, b),
                      [(3, 4), (5, 4)]),
    "einsum_attention": (lambda a, b: hv.einsum("bhqd,bhkd->bhqk", a, b),
                         lambda a, b: torch.einsum("bhqd,bhkd->bhqk", a, b), [(2, 2, 3, 4), (2, 2, 5, 4)]),
    "einsum_outer_sum": (lambda a, b: hv.einsum("ij,k->jk", a, b), lambda a, b: torch.einsum("ij,k->jk", a, b),
                         [(3, 4), (2,)]),
    "cat_dim": (lambda a, b: hv.cat([a, b], dim=1), lambda a, b: torch.cat([a, b], dim=1), [(2, 3), (2, 2)]),
    "stack_dim": (lambda a, b: hv.stack([a, b], dim=-1), lambda a, b: torch.stack([a, b], dim=-1), [(3, 2), (3, 2)]),
    "softmax_dim_method": (lambda a: a.softmax(dim=0), lambda a: a.softmax(dim=0), [(4, 3)]),
    "log_softmax_dim_method": (lambda a: a.log_softmax(-1), lambda a: a.log_softmax(-1), [(3, 4)]),
    "mask_select": (lambda a: a[a > 0] * 3.0, lambda a: a[a > 0] * 3.0, [((4, 5), "away0")]),
    "mask_select_rows": (lambda a: a[hv.tensor([True, False, True])], lambda a: a[torch.tensor([True, False, True])],
                         [(3, 4)]),
    "index_second_dim": (lambda a: a[:, hv.tensor([2, 0, 2])], lambda a: a[:, torch.tensor([2, 0, 2])], [(3, 4)]),
    "int_times_float": (lambda a: hv.tensor([1, -2, 3]) * a, lambda a: torch.tensor([1, -2, 3]) * a, [(3,)]),
    "norm": (lambda a: a.norm(dim=1), lambda a: a.norm(dim=1), [(3, 4)]),
    "reused_input": (lambda a: a * a + a.exp() * a, lambda a: a * a + a.exp() * a, [(6,)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_matches_torch_and_finite_differences(name, rng):
    ours, ref, specs = CASES[name]
    xs = _inputs(rng, specs)
    ts = [hv.tensor(x, requires_grad=True) for x in xs]
    out = ours(*ts)
    w = rng.standard_normal(out.shape)
    (out * hv.tensor(w)).sum().backward()

    tt = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    (ref(*tt) * torch.tensor(w)).sum().backward()
    with torch.no_grad():
        fd = _finite_differences(ref, [x.astype(np.float64) for x in xs], w)
    for i, (t, r, f) in enumerate(zip(ts, tt, fd)):
        assert t.grad is not None, f"input {i} got no gradient"
        got = t.grad.numpy()
        assert _rel(got, r.grad.numpy()) < TOL, f"input {i}: vs torch {_rel(got, r.grad.numpy()):.3g}"
        assert _rel(got, f) < TOL, f"input {i}: vs finite differences {_rel(got, f):.3g}"
