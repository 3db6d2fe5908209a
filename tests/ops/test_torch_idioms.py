"""Common PyTorch idioms, run side by side in torch (CPU) and hlx_vulkan on the same random
inputs: the same result types, dtypes and shapes as torch run in the inputs' own dtypes, and
the same values as torch run in float64 (float32 inputs widened).

Each idiom is written once, against ``T`` (``torch`` or ``hlx_vulkan``) and ``F`` (their
``nn.functional``). Inputs are drawn per test from the seeded ``rng`` fixture: ``f`` normal
floats (never zero), ``p`` positive floats, ``i`` integers in [-9, 9] without 0, ``b``
booleans, ``n`` floats holding NaN and +-inf, ``c`` class indices; views (transposes, strided
slices) and empty and size-1 dims are made inside the idioms.
"""

from __future__ import annotations

import numpy as np
import pytest

import hlx_vulkan as hv
from hlx_vulkan.nn import functional as HF
from opcheck import rel_err

torch = pytest.importorskip("torch")
TF = torch.nn.functional


def _make(rng, kind, shape):
    if kind == "f":
        x = rng.standard_normal(shape)
        return (np.sign(x) * (np.abs(x) + 0.05)).astype(np.float32)
    if kind == "p":
        return (np.abs(rng.standard_normal(shape)) + 0.5).astype(np.float32)
    if kind == "i":
        x = rng.integers(1, 10, shape) * rng.choice([-1, 1], shape)
        return x.astype(np.int64)
    if kind == "b":
        return rng.random(shape) < 0.5
    if kind == "n":
        x = _make(rng, "f", shape)
        x.flat[rng.choice(x.size, min(x.size, 3), replace=False)] = [np.nan, np.inf, -np.inf][:min(x.size, 3)]
        return x
    if kind == "c":
        return rng.integers(0, shape[1], shape[0]).astype(np.int64)
    raise ValueError(kind)


def i_(*shape):
    return ("i", shape)


def f_(*shape):
    return ("f", shape)


def p_(*shape):
    return ("p", shape)


def b_(*shape):
    return ("b", shape)


# name: (idiom(T, F, *inputs), input specs)
IDIOMS = {
    # --- dim= and keepdim= on reductions -----------------------------------------------------
    "sum_dim": (lambda T, F, x: x.sum(dim=1), [f_(3, 4)]),
    "sum_dims_keepdim": (lambda T, F, x: x.sum(dim=(0, 2), keepdim=True), [f_(2, 3, 4)]),
    "sum_positional": (lambda T, F, x: x.sum(1), [f_(3, 4)]),
    "sum_function": (lambda T, F, x: T.sum(x, dim=0), [f_(3, 4)]),
    "mean_dim_keepdim": (lambda T, F, x: x.mean(dim=-1, keepdim=True), [f_(3, 5)]),
    "mean_all": (lambda T, F, x: x.mean(), [f_(3, 5)]),
    "max_all": (lambda T, F, x: x.max(), [f_(3, 5)]),
    "max_dim_values": (lambda T, F, x: x.max(dim=1).values, [f_(3, 5)]),
    "max_dim_indices": (lambda T, F, x: x.max(dim=1).indices, [f_(3, 5)]),
    "min_dim_tuple": (lambda T, F, x: tuple(x.min(0)), [f_(4, 3)]),
    "max_dim_keepdim": (lambda T, F, x: tuple(T.max(x, 1, keepdim=True)), [f_(3, 5)]),
    "max_of_two": (lambda T, F, x, y: T.max(x, y), [f_(3, 4), f_(3, 4)]),
    "amax_dim": (lambda T, F, x: x.amax(dim=0), [f_(3, 5)]),
    "amin_dims": (lambda T, F, x: T.amin(x, dim=(0, 1)), [f_(3, 5, 2)]),
    "argmax_dim": (lambda T, F, x: x.argmax(dim=1), [f_(4, 6)]),
    "argmax_flat": (lambda T, F, x: x.argmax(), [f_(4, 6)]),
    "argmin_keepdim": (lambda T, F, x: x.argmin(dim=0, keepdim=True), [f_(4, 6)]),
    "var_dim": (lambda T, F, x: x.var(dim=0), [f_(5, 3)]),
    "var_biased": (lambda T, F, x: x.var(unbiased=False), [f_(5, 3)]),
    "std_keepdim": (lambda T, F, x: x.std(dim=1, keepdim=True), [f_(3, 6)]),
    "logsumexp_method": (lambda T, F, x: x.logsumexp(dim=1), [f_(3, 6)]),
    "logsumexp_function": (lambda T, F, x: T.logsumexp(x * 30, dim=0, keepdim=True), [f_(4, 3)]),
    "cumsum_float": (lambda T, F, x: x.cumsum(dim=1), [f_(3, 70)]),
    "cumsum_int": (lambda T, F, i: T.cumsum(i, dim=0), [i_(9, 2)]),
    "cumsum_long_row": (lambda T, F, x: x.cumsum(0), [f_(1000)]),
    "count_true": (lambda T, F, x: (x > 0).sum(), [f_(700)]),
    "count_item_past_255": (lambda T, F, x: (T.ones(1000) > 0).sum().item() + (x > 0).sum().item(), [f_(300)]),
    "accuracy": (lambda T, F, x, c: (x.argmax(dim=1) == c).float().mean(), [f_(300, 4), ("c", (300, 4))]),
    "correct_count": (lambda T, F, x, c: (x.argmax(1) == c).sum().item(), [f_(600, 3), ("c", (600, 3))]),
    "any_all": (lambda T, F, x: ((x > 0).any(), (x > 0).all(dim=1), (x > -9).all()), [f_(4, 3)]),
    "int_sum_is_int64": (lambda T, F, i: i.int().sum(), [i_(50)]),
    "bool_sum_dim": (lambda T, F, b: b.sum(dim=0), [b_(6, 4)]),
    "norm": (lambda T, F, x: (x.norm(), x.norm(dim=1)), [f_(3, 4)]),
    # --- functional and method forms ---------------------------------------------------------
    "softmax_F": (lambda T, F, x: F.softmax(x, dim=-1), [f_(3, 5)]),
    "log_softmax_F": (lambda T, F, x: F.log_softmax(x, dim=1), [f_(3, 5)]),
    "softmax_method": (lambda T, F, x: x.softmax(-1), [f_(2, 3, 5)]),
    "log_softmax_method": (lambda T, F, x: x.log_softmax(dim=0), [f_(4, 3)]),
    "softmax_function_dim0": (lambda T, F, x: T.softmax(x, dim=0), [f_(4, 3)]),
    "relu_forms": (lambda T, F, x: (F.relu(x), x.relu(), T.relu(x)), [f_(3, 4)]),
    "silu": (lambda T, F, x: F.silu(x), [f_(3, 4)]),
    "leaky_relu": (lambda T, F, x: F.leaky_relu(x, 0.1), [f_(3, 4)]),
    "gelu": (lambda T, F, x: F.gelu(x), [f_(3, 4)]),
    "sigmoid_tanh": (lambda T, F, x: (T.sigmoid(x), x.tanh(), x.sigmoid()), [f_(5)]),
    "cross_entropy": (lambda T, F, x, c: F.cross_entropy(x, c), [f_(6, 4), ("c", (6, 4))]),
    "mse_loss": (lambda T, F, x, y: F.mse_loss(x, y), [f_(3, 4), f_(3, 4)]),
    "one_hot": (lambda T, F, c: F.one_hot(c, num_classes=4), [("c", (5, 4))]),
    "linear": (lambda T, F, x, w, b: F.linear(x, w, b), [f_(3, 4), f_(5, 4), f_(5)]),
    "embedding": (lambda T, F, c, w: F.embedding(c, w), [("c", (6, 4)), f_(4, 3)]),
    # --- PyTorch's type promotion -----------------------------------------------------------
    "int_true_divide": (lambda T, F, i, j: i / j, [i_(5), i_(5)]),
    "int_divide_scalar": (lambda T, F, i: i / 2, [i_(5)]),
    "int_floor_divide": (lambda T, F, i, j: (i // j, i // 3, 7 // j), [i_(8), i_(8)]),
    "int_remainder": (lambda T, F, i, j: (i % j, i % 4, -7 % j), [i_(8), i_(8)]),
    "float_floor_divide": (lambda T, F, x, y: (x // y, x % y), [f_(8), p_(8)]),
    "half_times_float_scalar": (lambda T, F, x: x.half() * 2.0, [f_(4)]),
    "int_plus_float_scalar": (lambda T, F, i: i + 1.5, [i_(4)]),
    "int32_plus_int64": (lambda T, F, i, j: i.int() + j, [i_(4), i_(4)]),
    "bool_plus_int": (lambda T, F, b, i: b + i, [b_(4), i_(4)]),
    "bool_times_float": (lambda T, F, b, x: b * x, [b_(4), f_(4)]),
    "bool_plus_scalar": (lambda T, F, b: b + 1, [b_(4)]),
    "int_plus_float_tensor": (lambda T, F, i, x: i + x, [i_(4), f_(4)]),
    "half_plus_float_tensor": (lambda T, F, x, y: x.half() + y, [f_(4), f_(4)]),
    "half_plus_0dim_float": (lambda T, F, x: x.half() + T.tensor(2.5), [f_(4)]),
    "int_plus_0dim_float": (lambda T, F, i: i + T.tensor(2.5), [i_(4)]),
    "int8_times_large": (lambda T, F, i: i.char() * 100, [i_(6)]),
    "bool_ops": (lambda T, F, b, c: (b & c, b | c, ~b, b ^ c), [b_(6), b_(6)]),
    "logical_ops": (lambda T, F, b, x: (T.logical_and(b, x > 0), T.logical_not(b), T.logical_or(b, x < 0)),
                    [b_(6), f_(6)]),
    "int_bitwise": (lambda T, F, i, j: (i & j, i | 3, ~i), [i_(6), i_(6)]),
    "add_alpha": (lambda T, F, x, y: (x.add(y, alpha=2), x.sub(y, alpha=0.5), x.mul(y), x.div(y)), [f_(4), p_(4)]),
    "div_rounding": (lambda T, F, x, y: (x.div(y, rounding_mode="floor"), x.div(y, rounding_mode="trunc")),
                     [f_(6), p_(6)]),
    "pow_forms": (lambda T, F, x, y: (x ** 2, 2 ** x, x.abs() ** y, x.pow(3)), [f_(5), f_(5)]),
    "int_pow": (lambda T, F, i: (i ** 2, i ** 0, 2 ** i.abs()), [i_(5)]),
    "int_exp_gives_float": (lambda T, F, i: (T.exp(i), i.abs().sqrt()), [i_(4)]),
    "clamp_forms": (lambda T, F, x: (x.clamp(min=0), x.clamp(-0.5, 0.5), T.clamp(x, max=0.1), x.clip(0, 1)),
                    [f_(7)]),
    "clamp_int": (lambda T, F, i: i.clamp(-3, 3), [i_(8)]),
    "maximum_minimum": (lambda T, F, x, y: (T.maximum(x, y), T.minimum(x, y)), [f_(3, 4), f_(4)]),
    "where_scalar": (lambda T, F, x: T.where(x > 0, x, 0.0), [f_(3, 4)]),
    "where_tensors": (lambda T, F, b, x, y: T.where(b, x, y), [b_(3, 4), f_(3, 4), f_(4)]),
    "where_int_float": (lambda T, F, b, i: T.where(b, i, 0.5), [b_(5), i_(5)]),
    "masked_fill": (lambda T, F, x: x.masked_fill(x < 0, 0.0), [f_(3, 4)]),
    "masked_fill_int": (lambda T, F, i: (i.masked_fill(i > 1, 0.5), i.masked_fill(i < 0, T.tensor(7))), [i_(6)]),
    "masked_fill_broadcast": (lambda T, F, x, b: x.masked_fill(b, -1e9), [f_(2, 3, 4), b_(3, 4)]),
    "nan_inf_tests": (lambda T, F, z: (T.isnan(z), T.isinf(z), T.isfinite(z), z.isnan().any()), [("n", (10,))]),
    "relu_keeps_nan": (lambda T, F, z: (F.relu(z), T.maximum(z, T.zeros(10)), z.clamp(-1, 1)), [("n", (10,))]),
    "unary_misc": (lambda T, F, x: (x.abs(), -x, x.neg(), x.sign(), x.floor(), x.ceil(), x.round(), x.reciprocal(),
                                    x.square()), [f_(6)]),
    "exp_log_sqrt": (lambda T, F, x: (x.exp(), x.log(), x.sqrt(), x.rsqrt()), [p_(6)]),
    # --- dtypes, host access, the tensor's description ------------------------------------
    "dtype_conversions": (lambda T, F, x: (x.float(), x.half(), x.bfloat16(), (x * 3).int(), (x * 3).long(),
                                            x.bool()), [f_(5)]),
    "to_dtype": (lambda T, F, x: (x.to(T.float16), x.to(dtype=T.int32), x.to(x)), [f_(5)]),
    "to_cpu_numpy": (lambda T, F, x: x.to("cpu").numpy(), [f_(3, 2)]),
    "detach_cpu_numpy": (lambda T, F, x: (x * 2).detach().cpu().numpy(), [f_(3, 2)]),
    "clone": (lambda T, F, x: x.clone(), [f_(3, 2)]),
    "item_types": (lambda T, F, x, i: (x.sum().item(), i.sum().item(), (x > 0).any().item()), [f_(4), i_(4)]),
    "description": (lambda T, F, x: (tuple(x.size()), x.size(1), x.dim(), x.numel(), tuple(x.shape), len(x),
                                     x.ndim, x.is_floating_point(), x.element_size()), [f_(3, 4)]),
    "tolist": (lambda T, F, i: i.tolist(), [i_(2, 3)]),
    "python_numbers": (lambda T, F, x, i: (float(x.sum()), int(i.sum()), bool((x > 0).any()), f"{x.sum():.3f}"),
                       [f_(4), i_(4)]),
    "type_as": (lambda T, F, i, x: i.type_as(x), [i_(4), f_(4)]),
    "creation_dtypes": (lambda T, F: (T.tensor([1, 2]).dtype, T.tensor([1.0]).dtype, T.tensor([True]).dtype,
                                      T.arange(3).dtype, T.full((2,), 7).dtype, T.zeros(2).dtype,
                                      T.tensor(2**40).item()), []),
    "creation_values": (lambda T, F: (T.arange(5), T.arange(0, 1, 0.25), T.linspace(0, 1, 5), T.eye(3),
                                      T.full((2, 2), 7), T.ones(2, 3, dtype=T.int64), T.zeros(2, 0)), []),
    "creation_like": (lambda T, F, x: (T.zeros_like(x), T.ones_like(x, dtype=T.int32), T.full_like(x, 2.5),
                                       x.new_zeros(2, 3), x.new_ones((2,)), x.new_full((2,), 3.0)), [f_(3)]),
    # --- shapes ---------------------------------------------------------------------------------
    "view_reshape": (lambda T, F, x: (x.view(-1), x.reshape(2, -1), x.view(x.size(0), -1)), [f_(4, 3, 2)]),
    "flatten_unflatten": (lambda T, F, x: (x.flatten(), x.flatten(1), T.flatten(x, 0, 1), x.unflatten(1, (3, 1))),
                          [f_(2, 3, 2)]),
    "squeeze_unsqueeze": (lambda T, F, x: (x.unsqueeze(0), x.squeeze(), x.squeeze(1), x.unsqueeze(-1)),
                          [f_(3, 1, 2)]),
    "transposes": (lambda T, F, x: (x.permute(1, 0), x.transpose(0, 1), x.t(), x.T), [f_(3, 4)]),
    "cat_dim": (lambda T, F, x, y: (T.cat([x, y], dim=0), T.cat((x, x), dim=1), T.cat([x, y])), [f_(2, 3), f_(4, 3)]),
    "cat_promotes": (lambda T, F, i, x: T.cat([i, x]), [i_(3), f_(2)]),
    "stack_dim": (lambda T, F, x, y: (T.stack([x, y], dim=1), T.stack([x, y]), T.stack((x, y), dim=-1)),
                  [f_(2, 3), f_(2, 3)]),
    "split_chunk": (lambda T, F, x: (x.split(2, dim=1), x.chunk(2, dim=0), x.split([1, 4], dim=1),
                                     T.chunk(x, 3, dim=1)), [f_(3, 5)]),
    "repeat": (lambda T, F, x: (x.repeat(2, 3), x.repeat(2, 1, 1)), [f_(2, 3)]),
    "expand": (lambda T, F, x, y: (x.expand(3, -1), x.expand_as(y)), [f_(1, 4), f_(3, 4)]),
    "tril_triu": (lambda T, F, x: (T.tril(x), x.triu(diagonal=1), x.tril(-1)), [f_(4, 5)]),
    "tril_batched": (lambda T, F, x: T.triu(x), [f_(2, 3, 3)]),
    "bool_mask_select": (lambda T, F, x: x[x > 0], [f_(4, 5)]),
    "bool_mask_rows": (lambda T, F, x, b: x[b], [f_(5, 3), b_(5)]),
    "bool_mask_2x2": (lambda T, F, x: x[x > 0].shape, [f_(2, 2)]),
    "basic_indexing": (lambda T, F, x: (x[:, 0], x[..., -1], x[None], x[1:, ::2], x[1], x[-1, 1:3]), [f_(3, 4)]),
    "index_tensor": (lambda T, F, x, c: (x[c], x[:, c[:2]], x.index_select(1, c)), [f_(4, 4), ("c", (5, 4))]),
    "mask_assign_scalar": (lambda T, F, x: _assigned(x, lambda y: y.__setitem__(y < 0, 0.0)), [f_(3, 4)]),
    "mask_assign_tensor": (lambda T, F, x, v: _assigned(x, lambda y: y.__setitem__(y > 0, v[y > 0])),
                           [f_(3, 4), f_(3, 4)]),
    "index_assign": (lambda T, F, x, c: _assigned(x, lambda y: y.__setitem__(c[:3], 7.0)), [f_(4, 2), ("c", (3, 4))]),
    "slice_assign": (lambda T, F, x, y: _assigned(x, lambda z: z.__setitem__((slice(None), 0), y)), [f_(3, 2), f_(3)]),
    "inplace_ops": (lambda T, F, x, y: _inplace_chain(x, y), [f_(3, 4), f_(3, 4)]),
    "matmul_forms": (lambda T, F, x, y: (x @ y, T.matmul(x, y), x.mm(y), x.matmul(y)), [f_(3, 4), f_(4, 2)]),
    "bmm": (lambda T, F, a, b: T.bmm(a, b), [f_(2, 3, 4), f_(2, 4, 5)]),
    "einsum_matmul": (lambda T, F, a, b: T.einsum("ij,jk->ik", a, b), [f_(3, 4), f_(4, 2)]),
    "einsum_batched": (lambda T, F, a, b: T.einsum("bij,bjk->bik", a, b), [f_(2, 3, 4), f_(2, 4, 5)]),
    "einsum_attention": (lambda T, F, q, k: T.einsum("bhqd,bhkd->bhqk", q, k), [f_(2, 2, 3, 4), f_(2, 2, 5, 4)]),
    "einsum_small": (lambda T, F, a, b: (T.einsum("i,i->", a, b), T.einsum("i,j->ij", a, b), T.einsum("ij->ji",
                     T.einsum("i,j->ij", a, b)), T.einsum("ij->", T.einsum("i,j", a, b))), [f_(4), f_(4)]),
    "contiguous": (lambda T, F, x: (x.T.contiguous(), x.T.is_contiguous(), x.is_contiguous()), [f_(3, 4)]),
    "nonzero": (lambda T, F, x: (x > 0).nonzero(), [f_(3, 4)]),
    "where_condition_only": (lambda T, F, x: T.where(x > 0), [f_(3, 4)]),
    "isclose_allclose": (lambda T, F, x: (T.isclose(x, x + 1e-7), T.allclose(x, x * 1.01), x.allclose(x)), [f_(5)]),
    "random_like": (lambda T, F, x: (T.randn_like(x).shape, T.rand_like(x).dtype, T.randint(0, 5, (3,)).dtype,
                                     bool(((T.randint(0, 5, (50,)) >= 0) & (T.randint(0, 5, (50,)) < 5)).all())),
                    [f_(2, 3)]),
    # --- empty and size-1 dims, non-contiguous views ----------------------------------------
    "empty_reductions": (lambda T, F, x: (x[:0].sum(dim=0), x[:0].sum(), (x[:0] > 0).sum(), x[:, :0].amax(dim=0)),
                         [f_(3, 4)]),
    "empty_concat_mask": (lambda T, F, x: (T.cat([x[:0], x]), x[x > 100], x[:0].cumsum(0), x[:0].softmax(-1)),
                          [f_(3, 4)]),
    "size_one_dims": (lambda T, F, x: (x.squeeze(), x.max(dim=0).values, x.sum(dim=1, keepdim=True), x.softmax(0)),
                      [f_(1, 4)]),
    "zero_dim": (lambda T, F, x: (x.sum() * 2, x.sum().argmax(), x.sum().item(), x.sum().unsqueeze(0)), [f_(3)]),
    "strided_views": (lambda T, F, x: (x.T.sum(dim=0), x.T.softmax(dim=-1), x[:, ::2].cumsum(1), x.T.argmax(dim=1),
                                       x[::2].mean(dim=0), x.T[1:].logsumexp(dim=1)), [f_(4, 6)]),
    "strided_arith": (lambda T, F, x, y: (x.T + y, x[:, ::2] * y[::2].T, T.where(x.T > 0, x.T, y)),
                      [f_(4, 3), f_(3, 4)]),
    "strided_mask": (lambda T, F, x: x.T[x.T > 0], [f_(3, 4)]),
}


def _assigned(x, write):
    y = x.clone()
    write(y)
    return y


def _inplace_chain(x, y):
    z = x.clone()
    z += 1
    z.add_(y)
    z *= 2
    z.mul_(y)
    z -= y
    z /= 3
    w = z.clone()
    w.zero_()
    w.fill_(0.5)
    return z, w


class Leaf:
    """A tensor, array or dtype in a comparable form: its kind, dtype name and values."""

    def __init__(self, kind, dtype, values=None):
        self.kind, self.dtype, self.values = kind, dtype, values

    def __repr__(self):
        return f"{self.kind}<{self.dtype}>{'' if self.values is None else self.values.shape}"


def _name(dtype) -> str:
    return str(dtype).removeprefix("torch.").removeprefix("hlx.")


def _canonical(r):
    """A comparable form of a result: Leaf for tensors, arrays and dtypes; tuples of those; numbers."""
    if isinstance(r, (torch.Tensor, hv.Tensor)):
        a = r.detach().numpy() if isinstance(r, torch.Tensor) and r.dtype != torch.bfloat16 else \
            r.detach().float().numpy() if isinstance(r, torch.Tensor) else r.numpy()
        return Leaf("tensor", _name(r.dtype), np.asarray(a).astype(np.float32) if _name(r.dtype) == "bfloat16"
                    else np.asarray(a))
    if isinstance(r, np.ndarray):
        return Leaf("array", r.dtype.name, r)
    if isinstance(r, (torch.dtype, hv.memory.DType)):
        return Leaf("dtype", _name(r))
    if isinstance(r, (tuple, list, torch.Size)):
        return tuple(_canonical(v) for v in r)
    return r


def _as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _compare(ours, same, wide, path="result"):
    """``ours`` against torch's result in the inputs' dtypes (``same``: types, dtypes, shapes,
    integers) and in float64 (``wide``: float values)."""
    if isinstance(same, tuple):
        assert isinstance(ours, tuple) and len(ours) == len(same), f"{path}: {ours!r} vs torch {same!r}"
        for k, (o, s_, w) in enumerate(zip(ours, same, wide)):
            _compare(o, s_, w, f"{path}[{k}]")
        return
    if isinstance(same, Leaf):
        assert isinstance(ours, Leaf) and ours.kind == same.kind, f"{path}: {ours!r} vs torch {same!r}"
        assert ours.dtype == same.dtype, f"{path}: dtype {ours.dtype} vs torch {same.dtype}"
        if same.values is None:
            return
        a, ref = ours.values, wide.values
        assert a.shape == same.values.shape, f"{path}: shape {a.shape} vs torch {same.values.shape}"
        if a.dtype.kind == "f":
            tol = 1e-2 if same.dtype in ("float16", "bfloat16") else 2e-5
            assert rel_err(a, ref) < tol, f"{path}: relative error {rel_err(a, ref):.3g} vs torch in float64"
        else:
            np.testing.assert_array_equal(a, same.values, err_msg=path)
        return
    assert type(ours) is type(same), f"{path}: {type(ours).__name__} {ours!r} vs torch {type(same).__name__}"
    if isinstance(same, (float, str)) and _as_float(wide) is not None:
        assert abs(_as_float(ours) - _as_float(wide)) <= 2e-3 * max(1.0, abs(_as_float(wide))), \
            f"{path}: {ours} vs torch {wide}"
    else:
        assert ours == same, f"{path}: {ours!r} vs torch {same!r}"


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_matches_torch(name, rng):
    idiom, specs = IDIOMS[name]
    arrays = [_make(rng, kind, shape) for kind, shape in specs]
    same = _canonical(idiom(torch, TF, *[torch.tensor(a) for a in arrays]))
    wide = _canonical(idiom(torch, TF, *[torch.tensor(a.astype(np.float64) if a.dtype == np.float32 else a)
                                        for a in arrays]))
    ours = _canonical(idiom(hv, HF, *[hv.tensor(a) for a in arrays]))
    _compare(ours, same, wide)


def test_there_are_at_least_80_idioms():
    assert len(IDIOMS) >= 80


def test_the_comparison_catches_each_kind_of_difference(rng):
    """The checker itself: a wrong dtype, value, shape, result type or count fails it."""
    idiom, specs = IDIOMS["count_true"]
    x = _make(rng, "f", (700,))
    same = _canonical(idiom(torch, TF, torch.tensor(x)))
    wide = _canonical(idiom(torch, TF, torch.tensor(x.astype(np.float64))))
    _compare(_canonical(idiom(hv, HF, hv.tensor(x))), same, wide)
    wrong = [hv.tensor(x > 0).sum().to(hv.int32),              # dtype
             hv.tensor(x > 0).sum() + 1,                         # value
             hv.tensor(x > 0).sum().reshape(1),                  # shape
             int(same.values),                                   # a number, not a tensor
             hv.tensor(np.uint8((x > 0).sum() % 256))]           # the old uint8 count
    for w in wrong:
        with pytest.raises(AssertionError):
            _compare(_canonical(w), same, wide)
    y = rng.standard_normal(5).astype(np.float32)
    f_same, f_wide = _canonical(torch.tensor(y).exp()), _canonical(torch.tensor(y.astype(np.float64)).exp())
    _compare(_canonical(hv.tensor(y).exp()), f_same, f_wide)
    with pytest.raises(AssertionError):
        _compare(_canonical(hv.tensor(y).exp() * 1.001), f_same, f_wide)
    with pytest.raises(AssertionError):
        _compare((_canonical(hv.tensor(y).exp()),), f_same, f_wide)
