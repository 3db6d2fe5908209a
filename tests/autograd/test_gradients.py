"""The op table: for every differentiable op, on the same float32 inputs,

- the forward against PyTorch's in float64,
- the gradient against PyTorch's (float64),
- the gradient against central finite differences of this library's own forward.

The library computes in float32 (no float64 on the device), so the finite differences are
of the float32 forward with a step and a tolerance derived from float32's epsilon: the
truncation error of a central difference grows with h**2, the rounding error with eps/h;
h = eps**(1/3) * scale makes both about eps**(2/3) ~ 2.4e-5 relative, and the tolerance
allows FD_SLACK times that. Each input element is perturbed to a float32 value and the
difference divided by the step actually taken.

Inputs are fresh and seeded per case (the ``rng`` fixture). Besides plain random values the
table has ties (max, min, maximum, minimum split the gradient evenly, as torch does), NaN and
infinities, empty tensors and size-1 dimensions; finite differences are left out where a
derivative does not exist (ties, NaN, infinities).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as F

TF = torch.nn.functional
FORWARD_TOL = 1e-5  # float32 forward vs float64 reference, relative (norm)
GRAD_TOL = 1e-4     # float32 backward vs float64 torch, relative (norm)
EPS32 = float(np.finfo(np.float32).eps)
FD_STEP = EPS32 ** (1 / 3)
FD_SLACK = 50
FD_TOL = FD_SLACK * EPS32 ** (2 / 3)  # ~1.2e-3


# --- inputs --------------------------------------------------------------------------------
def _distinct(rng, shape):
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.37 - n * 0.15 + rng.uniform(-0.1, 0.1)).astype(np.float64)


def _ties(rng, shape):
    """Distinct values, then each last-axis row's max and min repeated (the first row's max
    three times): every row has a tie at both extremes."""
    x = _distinct(rng, shape)
    rows = x.reshape(-1, shape[-1])
    for r, row in enumerate(rows):
        hi, lo = row.argmax(), row.argmin()
        free = [k for k in range(len(row)) if k not in (hi, lo)]
        row[free[0]] = row[hi]
        row[free[-1]] = row[lo]
        if r == 0 and len(free) > 2:
            row[free[1]] = row[hi]
    return x


def _special(rng, shape, values=(np.nan, np.inf, -np.inf), positive=False):
    """Random values (``positive``: at least 0.5) with each of ``values`` at random places."""
    x = rng.standard_normal(shape)
    if positive:
        x = np.abs(x) + 0.5
    flat = x.reshape(-1)
    places = rng.choice(flat.size, size=min(flat.size, 2 * len(values)), replace=False)
    for k, p in enumerate(places):
        flat[p] = values[k % len(values)]
    return x


def _away(*points, margin=0.2):
    """Random values kept ``margin`` away from the kinks at ``points``."""
    def draw(rng, shape):
        x = rng.standard_normal(shape)
        for p in points:
            d = x - p
            x = np.where(np.abs(d) < margin, p + np.where(d < 0, -margin, margin) + d, x)
        return x
    return draw


KINDS: dict[str, Callable] = {
    "any": lambda rng, shape: rng.standard_normal(shape),
    "pos": lambda rng, shape: np.abs(rng.standard_normal(shape)) + 0.5,
    "small": lambda rng, shape: rng.standard_normal(shape) * 0.01,  # variance ~1e-4: layer_norm's eps shows
    "away0": _away(0.0),
    "distinct": _distinct,
    "ties": _ties,
    "special": _special,
    "pos_special": lambda rng, shape: _special(rng, shape, (np.nan, np.inf, 0.0), positive=True),
    "inf": lambda rng, shape: _special(rng, shape, (np.inf, -np.inf)),
    "neg_inf": lambda rng, shape: _special(rng, shape, (-np.inf,)),
    "lattice": lambda rng, shape: rng.permutation(int(np.prod(shape))).reshape(shape) * 0.37 - 1.0,
    "lattice_half": lambda rng, shape: (rng.permutation(int(np.prod(shape))).reshape(shape) + 0.5) * 0.37 - 1.0,
}


def _inputs(rng, specs):
    out = []
    for spec in specs:
        shape, kind = spec if isinstance(spec[0], tuple) else (spec, "any")
        draw = KINDS[kind] if isinstance(kind, str) else kind  # a name, or a function (rng, shape)
        out.append(np.asarray(draw(rng, shape), np.float64).astype(np.float32))
    return out


class Case(NamedTuple):
    ours: Callable
    ref: Callable
    inputs: list            # per tensor argument: a shape, or (shape, kind)
    fd: bool = True         # finite differences apply: no ties, NaN or infinities in reach
    grad: bool = True       # False where the gradient at a NaN is a convention torch and we differ on


def _lin(fn):
    """The same expression for both libraries."""
    return fn, fn


# --- the table -----------------------------------------------------------------------------
CASES = {
    "add_broadcast": Case(*_lin(lambda a, b: a + b), [(3, 4), (4,)]),
    "add_size1_dims": Case(*_lin(lambda a, b: a + b), [(1, 1, 4), (3, 1, 1)]),
    "add_empty": Case(*_lin(lambda a, b: a + b), [(0, 3), (3,)]),
    "add_special": Case(*_lin(lambda a, b: a + b), [((3, 4), "special"), (4,)], fd=False),
    "sub_broadcast": Case(*_lin(lambda a, b: a - b), [(3, 1), (1, 4)]),
    "mul_broadcast": Case(*_lin(lambda a, b: a * b), [(2, 3, 4), (3, 1)]),
    "mul_special": Case(*_lin(lambda a, b: a * b), [((2, 5), "special"), (5,)], fd=False),
    "div": Case(*_lin(lambda a, b: a / b), [(3, 4), ((4,), "pos")]),
    "div_special": Case(*_lin(lambda a, b: a / b), [((3, 4), "special"), ((4,), "pos")], fd=False),
    "scalar_ops": Case(*_lin(lambda a: (2.0 - a) * 3.0 + a / 2.0 - 1.5), [(5,)]),
    "rdiv": Case(*_lin(lambda a: 2.0 / a), [((6,), "pos")]),
    "neg": Case(*_lin(lambda a: -a), [(5,)]),
    "pow3": Case(*_lin(lambda a: a ** 3), [(6,)]),
    "pow2": Case(*_lin(lambda a: a ** 2), [(6,)]),
    "pow_half": Case(*_lin(lambda a: a ** 0.5), [((6,), "pos")]),
    "pow_frac": Case(*_lin(lambda a: a ** 1.7), [((6,), "pos")]),
    "exp": Case(hv.exp, torch.exp, [(7,)]),
    "exp_special": Case(hv.exp, torch.exp, [((7,), "special")], fd=False),
    "exp_empty": Case(hv.exp, torch.exp, [(2, 0)]),
    "log": Case(hv.log, torch.log, [((7,), "pos")]),
    "log_special": Case(hv.log, torch.log, [((8,), "pos_special")], fd=False),
    "sqrt": Case(hv.sqrt, torch.sqrt, [((7,), "pos")]),
    "sqrt_special": Case(hv.sqrt, torch.sqrt, [((8,), "pos_special")], fd=False),
    "rsqrt": Case(hv.rsqrt, torch.rsqrt, [((7,), "pos")]),
    "tanh": Case(hv.tanh, torch.tanh, [(7,)]),
    "tanh_special": Case(hv.tanh, torch.tanh, [((7,), "special")], fd=False),
    "sigmoid": Case(hv.sigmoid, torch.sigmoid, [(7,)]),
    "sigmoid_special": Case(hv.sigmoid, torch.sigmoid, [((7,), "special")], fd=False),
    "sin": Case(lambda a: a.sin(), torch.sin, [(7,)]),
    "cos": Case(lambda a: a.cos(), torch.cos, [(7,)]),
    "relu": Case(hv.relu, torch.relu, [((3, 5), "away0")]),
    "relu_special": Case(hv.relu, torch.relu, [((3, 5), "special")], fd=False, grad=False),
    "relu_inf": Case(hv.relu, torch.relu, [((3, 5), "inf")], fd=False),
    "gelu_erf": Case(hv.gelu, TF.gelu, [(9,)]),
    "gelu_tanh": Case(lambda a: hv.gelu(a, approximate="tanh"), lambda a: TF.gelu(a, approximate="tanh"), [(9,)]),
    "abs": Case(hv.abs, torch.abs, [((8,), "away0")]),
    # Two lattices half a step apart: no ties, and no kink within a finite-difference step.
    "maximum": Case(hv.maximum, torch.maximum, [((3, 4), "lattice"), ((4,), "lattice_half")]),
    "minimum": Case(hv.minimum, torch.minimum, [((3, 4), "lattice"), ((3, 1), "lattice_half")]),
    # Row 1 ties everywhere with the broadcast operand; so does column 0 for minimum.
    "maximum_ties": Case(lambda a: hv.maximum(a, a[1]), lambda a: torch.maximum(a, a[1]), [(3, 4)], fd=False),
    "minimum_ties": Case(lambda a: hv.minimum(a[:, :1], a), lambda a: torch.minimum(a[:, :1], a), [(3, 4)],
                         fd=False),
    "maximum_self_ties": Case(lambda a: hv.maximum(a, a), lambda a: torch.maximum(a, a), [(6,)], fd=False),
    "maximum_special": Case(hv.maximum, torch.maximum, [((3, 4), "special"), ((4,), "any")], fd=False, grad=False),
    "maximum_inf": Case(hv.maximum, torch.maximum, [((3, 4), "inf"), ((4,), "any")], fd=False),
    "minimum_special": Case(hv.minimum, torch.minimum, [((4,), "any"), ((2, 4), "special")], fd=False, grad=False),
    "maximum_scalar": Case(lambda a: hv.maximum(a, 0.3), lambda a: torch.clamp(a, min=0.3),
                           [((8,), _away(0.3))]),
    "clamp": Case(lambda a: hv.clamp(a, -0.5, 0.7), lambda a: torch.clamp(a, -0.5, 0.7), [((9,), _away(-0.5, 0.7))]),
    "where": Case(lambda a, b: hv.where(a > 0, a, b), lambda a, b: torch.where(a > 0, a, b),
                  [((3, 4), "away0"), (4,)]),
    "sum_all": Case(*_lin(lambda a: a.sum()), [(3, 4)]),
    "sum_axis": Case(lambda a: a.sum(axis=1), lambda a: a.sum(1), [(2, 3, 4)]),
    "sum_axes_keepdim": Case(lambda a: a.sum(axis=(0, 2), keepdim=True), lambda a: a.sum((0, 2), keepdim=True),
                             [(2, 3, 4)]),
    "sum_size1_axis": Case(lambda a: a.sum(axis=0), lambda a: a.sum(0), [(1, 5)]),
    "sum_empty_axis": Case(lambda a: a.sum(axis=0), lambda a: a.sum(0), [(0, 3)]),
    "sum_of_empty_rows": Case(lambda a: a.sum(axis=1), lambda a: a.sum(1), [(0, 3)]),
    "sum_special": Case(lambda a: a.sum(axis=1), lambda a: a.sum(1), [((3, 4), "special")], fd=False),
    "mean_axis": Case(lambda a: a.mean(axis=-1), lambda a: a.mean(-1), [(3, 5)]),
    "mean_all": Case(*_lin(lambda a: a.mean()), [(3, 5)]),
    "mean_size1_keepdim": Case(lambda a: a.mean(axis=1, keepdim=True), lambda a: a.mean(1, keepdim=True), [(3, 1)]),
    # amax/amin (numpy's max/min) split the gradient among ties; max(dim) sends it to its index
    "max_axis": Case(lambda a: a.amax(axis=1), lambda a: a.amax(1), [((3, 5), "distinct")]),
    "max_axis_ties": Case(lambda a: a.amax(axis=1), lambda a: a.amax(1), [((3, 6), "ties")], fd=False),
    "max_all_ties": Case(lambda a: a.amax(), lambda a: a.amax(), [((2, 5), "ties")], fd=False),
    "max_axis0_ties": Case(lambda a: a.T.amax(axis=0), lambda a: a.T.amax(0), [((4, 5), "ties")], fd=False),
    "max_special": Case(lambda a: a.amax(axis=1), lambda a: a.amax(1), [((4, 5), "special")], fd=False),
    "max_size1_axis": Case(lambda a: a.amax(axis=1), lambda a: a.amax(1), [(4, 1)]),
    "max_dim_ties": Case(*_lin(lambda a: a.max(dim=1).values), [((3, 6), "ties")], fd=False),
    "max_dim_values": Case(*_lin(lambda a: a.max(dim=1).values), [((3, 5), "distinct")]),
    "min_dim_keepdim": Case(*_lin(lambda a: a.min(0, keepdim=True)[0]), [((4, 3), "distinct")]),
    "min_all": Case(lambda a: a.amin(), lambda a: a.amin(), [((3, 5), "distinct")]),
    "min_axis_ties": Case(lambda a: a.amin(axis=-1), lambda a: a.amin(-1), [((3, 6), "ties")], fd=False),
    "var": Case(lambda a: a.var(axis=0), lambda a: a.var(0), [(5, 3)]),
    "var_all": Case(*_lin(lambda a: a.var()), [(4, 3)]),
    "matmul": Case(hv.matmul, torch.matmul, [(3, 4), (4, 5)]),
    "matmul_batched_broadcast": Case(hv.matmul, torch.matmul, [(2, 3, 4), (4, 5)]),
    "matmul_batch_both": Case(hv.matmul, torch.matmul, [(2, 1, 3, 4), (3, 4, 2)]),
    "matmul_vec_mat": Case(hv.matmul, torch.matmul, [(4,), (4, 3)]),
    "matmul_mat_vec": Case(hv.matmul, torch.matmul, [(3, 4), (4,)]),
    "matmul_transposed": Case(*_lin(lambda a, b: a @ b.T), [(3, 4), (5, 4)]),
    "linear": Case(F.linear, TF.linear, [(3, 4), (5, 4), (5,)]),
    "linear_batched_no_bias": Case(F.linear, TF.linear, [(2, 3, 4), (5, 4)]),
    "linear_vector": Case(F.linear, TF.linear, [(4,), (5, 4), (5,)]),
    "matmul_size1_dims": Case(hv.matmul, torch.matmul, [(1, 4), (4, 1)]),
    "matmul_outer_k1": Case(hv.matmul, torch.matmul, [(5, 1), (1, 3)]),
    "matmul_empty_rows": Case(hv.matmul, torch.matmul, [(0, 4), (4, 3)]),
    "matmul_empty_k": Case(hv.matmul, torch.matmul, [(3, 0), (0, 2)]),
    "matmul_special": Case(hv.matmul, torch.matmul, [((3, 4), "special"), (4, 2)], fd=False),
    "reshape": Case(*_lin(lambda a: a.reshape(4, 3) * a.reshape(4, 3)), [(3, 4)]),
    "reshape_noncontiguous": Case(*_lin(lambda a: a.T.reshape(12)), [(3, 4)]),
    "reshape_empty": Case(*_lin(lambda a: a.reshape(3, 0) * 2.0), [(0, 3)]),
    "permute": Case(*_lin(lambda a: a.permute(2, 0, 1)), [(2, 3, 4)]),
    "transpose": Case(*_lin(lambda a: a.transpose(0, 1)), [(3, 4)]),
    "expand": Case(*_lin(lambda a: a.expand(3, 4)), [(1, 4)]),
    "unsqueeze_squeeze": Case(*_lin(lambda a: a.unsqueeze(1).squeeze()), [(3, 4)]),
    "slice": Case(*_lin(lambda a: a[1:, ::2]), [(4, 5)]),
    "int_index": Case(*_lin(lambda a: a[1]), [(3, 4)]),
    "index_select_repeats": Case(*_lin(lambda a: a[[2, 0, 2, 2]]), [(3, 4)]),
    "index_select_axis1": Case(lambda a: hv.index_select(a, 1, [3, 1, 1]),
                               lambda a: torch.index_select(a, 1, torch.tensor([3, 1, 1])), [(2, 4, 3)]),
    "concat": Case(lambda a, b: hv.concat([a, b, a], axis=1), lambda a, b: torch.cat([a, b, a], 1), [(2, 3), (2, 2)]),
    "concat_with_empty": Case(lambda a, b: hv.concat([a, b], axis=1), lambda a, b: torch.cat([a, b], 1),
                              [(2, 0), (2, 3)]),
    "stack": Case(lambda a, b: hv.stack([a, b]), lambda a, b: torch.stack([a, b]), [(3,), (3,)]),
    "softmax": Case(lambda a: F.softmax(a, axis=-1), lambda a: TF.softmax(a, -1), [(3, 5)]),
    "softmax_axis0": Case(lambda a: F.softmax(a, axis=0), lambda a: TF.softmax(a, 0), [(4, 3)]),
    "softmax_size1_axis": Case(lambda a: F.softmax(a, axis=1), lambda a: TF.softmax(a, 1), [(4, 1)]),
    "softmax_empty": Case(lambda a: F.softmax(a, axis=-1), lambda a: TF.softmax(a, -1), [(0, 5)]),
    "softmax_neg_inf": Case(lambda a: F.softmax(a, axis=-1), lambda a: TF.softmax(a, -1), [((3, 5), "neg_inf")],
                            fd=False),
    "log_softmax": Case(lambda a: F.log_softmax(a, axis=1), lambda a: TF.log_softmax(a, 1), [(3, 6)]),
    "log_softmax_neg_inf": Case(lambda a: F.log_softmax(a, axis=1), lambda a: TF.log_softmax(a, 1),
                                [((3, 6), "neg_inf")], fd=False),
    "layer_norm": Case(lambda a, w, b: F.layer_norm(a, (5,), w, b), lambda a, w, b: TF.layer_norm(a, (5,), w, b),
                       [(3, 5), (5,), (5,)]),
    # Variance ~1e-4: eps (1e-5) is a tenth of it, so a wrong eps shows.
    "layer_norm_small_variance": Case(lambda a: F.layer_norm(a, (6,)), lambda a: TF.layer_norm(a, (6,)),
                                      [((4, 6), "small")]),
    "layer_norm_size1": Case(lambda a, b: F.layer_norm(a, (1,), None, b), lambda a, b: TF.layer_norm(a, (1,), None, b),
                             [(3, 1), (1,)]),
    # The fused kernel's vector path (rows a multiple of 4) and several normalized dims.
    "layer_norm_vec4": Case(lambda a, w, b: F.layer_norm(a, (36,), w, b), lambda a, w, b: TF.layer_norm(a, (36,), w, b),
                            [(5, 36), (36,), (36,)]),
    "layer_norm_2d": Case(lambda a, w: F.layer_norm(a, (3, 7), w), lambda a, w: TF.layer_norm(a, (3, 7), w),
                          [(2, 3, 7), (3, 7)]),
    "cross_entropy": Case(lambda a: F.cross_entropy(a, hv.tensor([1, 0, 3])),
                          lambda a: TF.cross_entropy(a, torch.tensor([1, 0, 3])), [(3, 4)]),
    "cross_entropy_sum": Case(lambda a: F.cross_entropy(a, hv.tensor([2, 2]), reduction="sum"),
                              lambda a: TF.cross_entropy(a, torch.tensor([2, 2]), reduction="sum"), [(2, 5)]),
    "mse_loss": Case(F.mse_loss, TF.mse_loss, [(3, 4), (3, 4)]),
    "cast_roundtrip": Case(lambda a: a.to(hv.float32) * 2.0, lambda a: a * 2.0, [(5,)]),
    "reused_input": Case(*_lin(lambda a: a * a + a.exp() * a), [(6,)]),
    # PyTorch-semantics ops: dim= forms, the new differentiable ops, mixed types
    "silu": Case(F.silu, TF.silu, [(9,)]),
    "leaky_relu": Case(lambda a: F.leaky_relu(a, 0.2), lambda a: TF.leaky_relu(a, 0.2), [((9,), "away0")]),
    "reciprocal": Case(*_lin(lambda a: a.reciprocal()), [((6,), "pos")]),
    "pow_tensor_exponent": Case(*_lin(lambda a, b: a ** b), [((5,), "pos"), (5,)]),
    "rpow": Case(*_lin(lambda a: 2.0 ** a), [(5,)]),
    "pow_zero_plus_square": Case(*_lin(lambda a: a ** 0 + a ** 2), [(5,)]),
    "remainder": Case(*_lin(lambda a, b: a % b), [(6,), ((6,), "pos")]),
    "clamp_min_only": Case(*_lin(lambda a: a.clamp(min=0.1)), [((7,), _away(0.1))]),
    "masked_fill": Case(*_lin(lambda a: a.masked_fill(a < 0, 0.5)), [((3, 4), "away0")]),
    "where_scalar": Case(lambda a: hv.where(a > 0, a, 0.0), lambda a: torch.where(a > 0, a, 0.0),
                         [((3, 4), "away0")]),
    "where_mixed": Case(lambda a, b: hv.where(a > 0, a * 2, b), lambda a, b: torch.where(a > 0, a * 2, b),
                        [((3, 4), "away0"), (3, 4)]),
    "tril": Case(*_lin(lambda a: a.tril()), [(4, 5)]),
    "triu_batched": Case(lambda a: hv.triu(a, diagonal=1), lambda a: torch.triu(a, diagonal=1), [(2, 3, 3)]),
    "split": Case(*_lin(lambda a: a.split(2, dim=1)[1] * a.split(2, dim=1)[2].sum()), [(3, 5)]),
    "chunk": Case(lambda a: hv.cat(a.chunk(3, dim=0)[::-1], dim=0),
                  lambda a: torch.cat(a.chunk(3, dim=0)[::-1], dim=0), [(5, 2)]),
    "std": Case(*_lin(lambda a: a.std(dim=1)), [(3, 5)]),
    "std_biased_keepdim": Case(*_lin(lambda a: a.std(dim=0, unbiased=False, keepdim=True)), [(4, 3)]),
    "logsumexp": Case(*_lin(lambda a: a.logsumexp(dim=1)), [(3, 5)]),
    "logsumexp_large": Case(*_lin(lambda a: (a * 40).logsumexp(dim=0)), [(4, 3)]),
    "logsumexp_neg_inf": Case(*_lin(lambda a: a.logsumexp(dim=1)), [((3, 5), "neg_inf")], fd=False),
    "repeat": Case(*_lin(lambda a: a.repeat(2, 3)), [(2, 3)]),
    "cumsum": Case(*_lin(lambda a: a.cumsum(dim=1)), [(3, 70)]),
    "cumsum_strided": Case(*_lin(lambda a: a.T.cumsum(0)), [(3, 4)]),
    "cumsum_empty": Case(*_lin(lambda a: a.cumsum(dim=0)), [(0, 3)]),
    "flatten_unflatten": Case(*_lin(lambda a: a.flatten(1).unflatten(1, (2, 6)) * a.reshape(2, 2, 6)), [(2, 3, 4)]),
    "bmm": Case(hv.bmm, torch.bmm, [(2, 3, 4), (2, 4, 5)]),
    "einsum_matmul": Case(lambda a, b: hv.einsum("ij,kj->ik", a, b), lambda a, b: torch.einsum("ij,kj->ik", a, b),
                          [(3, 4), (5, 4)]),
    "einsum_attention": Case(lambda a, b: hv.einsum("bhqd,bhkd->bhqk", a, b),
                             lambda a, b: torch.einsum("bhqd,bhkd->bhqk", a, b), [(2, 2, 3, 4), (2, 2, 5, 4)]),
    "einsum_outer_sum": Case(lambda a, b: hv.einsum("ij,k->jk", a, b), lambda a, b: torch.einsum("ij,k->jk", a, b),
                             [(3, 4), (2,)]),
    "cat_dim": Case(lambda a, b: hv.cat([a, b], dim=1), lambda a, b: torch.cat([a, b], dim=1), [(2, 3), (2, 2)]),
    "stack_dim": Case(lambda a, b: hv.stack([a, b], dim=-1), lambda a, b: torch.stack([a, b], dim=-1),
                      [(3, 2), (3, 2)]),
    "softmax_dim_method": Case(*_lin(lambda a: a.softmax(dim=0)), [(4, 3)]),
    "log_softmax_dim_method": Case(*_lin(lambda a: a.log_softmax(-1)), [(3, 4)]),
    "mask_select": Case(*_lin(lambda a: a[a > 0] * 3.0), [((4, 5), "away0")]),
    "mask_select_rows": Case(lambda a: a[hv.tensor([True, False, True])],
                             lambda a: a[torch.tensor([True, False, True])], [(3, 4)]),
    "index_second_dim": Case(lambda a: a[:, hv.tensor([2, 0, 2])], lambda a: a[:, torch.tensor([2, 0, 2])],
                             [(3, 4)]),
    "int_times_float": Case(lambda a: hv.tensor([1, -2, 3]) * a, lambda a: torch.tensor([1, -2, 3]) * a, [(3,)]),
    "norm": Case(*_lin(lambda a: a.norm(dim=1)), [(3, 4)]),
    # ops branch: index ops, sorting, scans, activations, loss options
    "gather": Case(lambda a: hv.gather(a, 1, [[0, 2, 2], [1, 0, 3], [3, 3, 3]]),
                   lambda a: torch.gather(a, 1, torch.tensor([[0, 2, 2], [1, 0, 3], [3, 3, 3]])), [(3, 4)]),
    "scatter_add": Case(lambda a, b: hv.scatter_add(a, 0, [[1, 0, 1], [1, 2, 0]], b),
                        lambda a, b: torch.scatter_add(a, 0, torch.tensor([[1, 0, 1], [1, 2, 0]]), b),
                        [(3, 3), (2, 3)]),
    "scatter": Case(lambda a, b: hv.scatter(a, 1, [[2, 0], [1, 3]], b),
                    lambda a, b: torch.scatter(a, 1, torch.tensor([[2, 0], [1, 3]]), b), [(2, 4), (2, 2)]),
    "sort_values": Case(*_lin(lambda a: a.sort(dim=0, descending=True)[0]), [((5, 3), "distinct")]),
    "topk": Case(*_lin(lambda a: a.topk(2, dim=1).values), [((3, 5), "distinct")]),
    "cumprod": Case(*_lin(lambda a: a.cumprod(1)), [(3, 5)]),
    "flip_roll": Case(*_lin(lambda a: a.flip(0).roll(1, 1)), [(3, 4)]),
    "repeat_interleave": Case(*_lin(lambda a: a.repeat_interleave(2, dim=0)), [(2, 3)]),
    "elu": Case(F.elu, TF.elu, [((9,), "away0")]),
    "softplus": Case(F.softplus, TF.softplus, [(9,)]),
    "hardswish": Case(F.hardswish, TF.hardswish, [((9,), _away(-3.0, 3.0))]),
    "mish": Case(F.mish, TF.mish, [(9,)]),
    "erf": Case(hv.erf, torch.erf, [(9,)]),
    "cross_entropy_options": Case(
        lambda a: F.cross_entropy(a, hv.tensor([1, 0, 3]), weight=hv.tensor([0.5, 1.0, 2.0, 1.5]),
                                  label_smoothing=0.1, ignore_index=0),
        lambda a: TF.cross_entropy(a, torch.tensor([1, 0, 3]), weight=torch.tensor([0.5, 1.0, 2.0, 1.5],
                                                                                   dtype=torch.float64),
                                   label_smoothing=0.1, ignore_index=0), [(3, 4)]),
    "cross_entropy_nd": Case(lambda a: F.cross_entropy(a, hv.tensor([[0, 2], [1, 1]]), reduction="none"),
                             lambda a: TF.cross_entropy(a, torch.tensor([[0, 2], [1, 1]]), reduction="none"),
                             [(2, 3, 2)]),
    "bce_with_logits": Case(F.binary_cross_entropy_with_logits, TF.binary_cross_entropy_with_logits,
                            [(3, 4), ((3, 4), lambda rng, shape: rng.uniform(0, 1, shape))]),
    "huber_loss": Case(lambda a: F.huber_loss(a, hv.zeros(7), delta=0.5),
                       lambda a: TF.huber_loss(a, torch.zeros(7, dtype=torch.float64), delta=0.5),
                       [((7,), _away(0.5, -0.5))]),
    "kl_div": Case(lambda a, b: F.kl_div(a, b, reduction="batchmean"),
                   lambda a, b: TF.kl_div(a, b, reduction="batchmean"),
                   [(2, 3), ((2, 3), lambda rng, shape: rng.uniform(0.1, 1, shape))]),
    # Convolutional nets (ops/conv.py, ops/pool.py, ops/spatial.py, nn/normalization.py)
    "conv2d": Case(lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
                   lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1), [(2, 2, 5, 4), (3, 2, 3, 2), (3,)]),
    "conv2d_groups_dilation": Case(lambda x, w: F.conv2d(x, w, padding=(1, 2), dilation=(2, 1), groups=2),
                                   lambda x, w: TF.conv2d(x, w, padding=(1, 2), dilation=(2, 1), groups=2),
                                   [(1, 4, 5, 3), (4, 2, 2, 2)]),
    "conv1d_same": Case(lambda x, w: F.conv1d(x, w, padding="same"), lambda x, w: TF.conv1d(x, w, padding="same"),
                        [(2, 2, 7), (3, 2, 3)]),
    "conv_transpose2d": Case(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
                             lambda x, w: TF.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1),
                             [(1, 2, 3, 4), (2, 3, 3, 2)]),
    "max_pool2d": Case(lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
                       lambda x: TF.max_pool2d(x, 3, 2, 1, ceil_mode=True), [((2, 2, 5, 6), "distinct")]),
    "avg_pool2d": Case(lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
                       lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False), [(2, 2, 5, 6)]),
    "adaptive_avg_pool2d": Case(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), lambda x: TF.adaptive_avg_pool2d(x, (2, 3)),
                                [(1, 2, 5, 7)]),
    "pad_reflect": Case(lambda x: F.pad(x, (2, 1, 1, 2), "reflect"), lambda x: TF.pad(x, (2, 1, 1, 2), "reflect"),
                        [(1, 2, 4, 3)]),
    "pad_constant": Case(lambda x: F.pad(x, (1, -1, 2, 0), value=0.5), lambda x: TF.pad(x, (1, -1, 2, 0), value=0.5),
                         [(2, 3, 4)]),
    "interpolate_bilinear": Case(lambda x: F.interpolate(x, size=(5, 3), mode="bilinear"),
                                 lambda x: TF.interpolate(x, size=(5, 3), mode="bilinear"), [(1, 2, 3, 4)]),
    "interpolate_nearest": Case(lambda x: F.interpolate(x, scale_factor=2), lambda x: TF.interpolate(x, scale_factor=2),
                                [(1, 2, 3, 2)]),
    "batch_norm_train": Case(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
                             lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True),
                             [(3, 2, 2, 3), (2,), (2,)]),
    "group_norm": Case(lambda x, w, b: F.group_norm(x, 2, w, b), lambda x, w, b: TF.group_norm(x, 2, w, b),
                       [(2, 4, 3), (4,), (4,)]),
    # attention (fused kernel; tests/ops/test_attention.py has the rest)
    "sdpa": Case(F.scaled_dot_product_attention, TF.scaled_dot_product_attention, [(2, 3, 4), (2, 5, 4), (2, 5, 3)]),
    "sdpa_causal_scaled": Case(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
                               lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.7),
                               [(1, 2, 4, 3), (1, 2, 6, 3), (1, 2, 6, 2)]),
}


# --- comparison ----------------------------------------------------------------------------
def _compare(got, ref, tol: float, what: str) -> None:
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    nan_got, nan_ref = np.isnan(got), np.isnan(ref)
    assert np.array_equal(nan_got, nan_ref), f"{what}: NaN at {np.argwhere(nan_got)} but reference at " \
                                             f"{np.argwhere(nan_ref)}\n ours {got}\n ref {ref}"
    inf = np.isinf(ref)
    assert np.array_equal(np.isinf(got), inf) and np.array_equal(got[inf], ref[inf]), \
        f"{what}: infinities differ\n ours {got}\n ref {ref}"
    fin = np.isfinite(ref)
    err = np.linalg.norm(got[fin] - ref[fin]) / max(np.linalg.norm(ref[fin]), 1e-6)
    assert err < tol, f"{what}: relative error {err:.3g} >= {tol:g}\n ours {got}\n ref {ref}"


def _loss(out: np.ndarray, w: np.ndarray) -> float:
    return float((np.asarray(out, np.float64) * w).sum())


def _finite_differences(ours, xs, w) -> list[np.ndarray]:
    """d(sum(w * ours(xs)))/dx by central differences of this library's float32 forward.

    Every perturbed forward is recorded first and read back once at the end."""
    base = [hv.tensor(x) for x in xs]
    pending = []  # (input, element, step taken, out+, out-)
    with hv.no_grad():
        for i, x in enumerate(xs):
            scale = max(float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0, 1e-3)
            h = FD_STEP * scale
            for j in range(x.size):
                outs = []
                for sign in (1, -1):
                    xp = x.copy()
                    xp.flat[j] = np.float32(x.flat[j] + sign * h)
                    args = list(base)
                    args[i] = hv.tensor(xp)
                    outs.append(ours(*args))
                plus = x.copy()
                plus.flat[j] = np.float32(x.flat[j] + h)
                minus = x.copy()
                minus.flat[j] = np.float32(x.flat[j] - h)
                pending.append((i, j, float(plus.flat[j]) - float(minus.flat[j]), *outs))
    grads = [np.zeros(x.shape) for x in xs]
    for i, j, step, op, om in pending:
        grads[i].flat[j] = (_loss(op.numpy(), w) - _loss(om.numpy(), w)) / step
    return grads


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_and_gradients_match_torch_and_finite_differences(name, rng):
    case = CASES[name]
    xs = _inputs(rng, case.inputs)
    ts = [hv.tensor(x, requires_grad=True) for x in xs]
    out = case.ours(*ts)
    tt = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    ref = case.ref(*tt)
    _compare(out.numpy(), ref.detach().numpy(), FORWARD_TOL, "forward vs torch (float64)")

    if not case.grad:
        return
    w = rng.standard_normal(out.shape)
    (out * hv.tensor(w)).sum().backward()
    (ref * torch.tensor(w)).sum().backward()
    for i, (t, r) in enumerate(zip(ts, tt)):
        assert t.grad is not None, f"input {i} got no gradient"
        _compare(t.grad.numpy(), r.grad.numpy(), GRAD_TOL, f"input {i}: gradient vs torch (float64)")
    if case.fd:
        for i, (t, fd) in enumerate(zip(ts, _finite_differences(case.ours, xs, w))):
            _compare(t.grad.numpy(), fd, FD_TOL, f"input {i}: gradient vs finite differences of our forward")


def test_the_inputs_have_the_ties_and_special_values_they_claim(rng):
    x = _ties(rng, (3, 6))
    for row in x:
        assert (row == row.max()).sum() >= 2 and (row == row.min()).sum() >= 2
    assert (x[0] == x[0].max()).sum() == 3
    s = _special(rng, (3, 4))
    assert np.isnan(s).sum() == 2 and np.isposinf(s).sum() == 2 and np.isneginf(s).sum() == 2
    a = _away(-0.5, 0.7)(rng, (2000,))
    assert np.abs(a + 0.5).min() >= 0.2 - 1e-12 and np.abs(a - 0.7).min() >= 0.2 - 1e-12
