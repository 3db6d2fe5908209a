"""Transformer modules in PyTorch's names, parameters, initialisation and ``state_dict`` keys:
``MultiheadAttention``, ``TransformerEncoderLayer``, ``TransformerEncoder``, and the containers
``ModuleList`` and ``ModuleDict``. A torch checkpoint of these modules loads one to one.

Attention runs on the fused kernel (``F.scaled_dot_product_attention``) unless the weights are
asked for (``need_weights=True``, PyTorch's default), which needs them in memory: then it is
the explicit product, softmax and product, as PyTorch does.

Example::

    layer = hv.nn.TransformerEncoderLayer(64, 4, dim_feedforward=128, batch_first=True)
    y = layer(hv.randn(2, 10, 64), src_mask=hv.nn.generate_square_subsequent_mask(10), is_causal=True)
"""

from __future__ import annotations

import math
from collections import OrderedDict

from .. import errors
from ..autograd.graph import no_grad
from ..memory import float32
from ..ops import elementwise as ew
from ..ops import matmul as mm
from ..ops import reduce as red
from ..ops import shape as sh
from ..ops.creation import full, zeros
from ..ops.linear import linear_relu
from ..ops.random import rand
from ..ops.tensor import Tensor
from . import functional as F
from .modules import Dropout, LayerNorm, Linear, Module, Parameter, is_plain


class ModuleList(Module):
    """Modules held in a list, registered as ``0``, ``1``, ... (as PyTorch)."""

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> "ModuleList":
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    """Modules held by name, in insertion order (as PyTorch)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __setitem__(self, name: str, module: Module) -> None:
        setattr(self, name, module)

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __delitem__(self, name: str) -> None:
        del self._modules[name]
        object.__delattr__(self, name)

    def __contains__(self, name) -> bool:
        return name in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def update(self, modules) -> None:
        for name, m in (modules.items() if hasattr(modules, "items") else modules):
            self[name] = m


def clone_module(module: Module) -> Module:
    """A copy of ``module`` with its own parameters (copies of the values), as ``copy.deepcopy``."""
    new = object.__new__(type(module))
    new.__dict__.update(module.__dict__)
    object.__setattr__(new, "_parameters", OrderedDict())
    object.__setattr__(new, "_modules", OrderedDict())
    for name, p in module._parameters.items():
        with no_grad():
            setattr(new, name, Parameter(p.detach().clone(), requires_grad=p.requires_grad))
    for name, m in module._modules.items():
        setattr(new, name, clone_module(m))
    return new


def _float_mask(mask: Tensor, true_means_masked: bool, dtype) -> Tensor:
    """An additive mask: a bool mask's True (PyTorch's modules: "not allowed") becomes -inf."""
    if mask.dtype.name == "bool":
        zero = zeros((), dtype=dtype, runtime=mask.runtime)
        return ew.where(mask, -math.inf, zero) if true_means_masked else ew.where(mask, zero, -math.inf)
    if not mask.dtype.is_float:
        raise errors.DTypeError(f"attention masks must be bool or floating point, not {mask.dtype.name}")
    return ew.cast(mask, dtype) if mask.dtype is not dtype else mask


class MultiheadAttention(Module):
    """PyTorch's ``nn.MultiheadAttention``: ``in_proj_weight`` (3E, E, Xavier-uniform), ``in_proj_bias``
    (zeros), ``out_proj`` (a Linear, bias zeros); inputs (L, B, E), or (B, L, E) with
    ``batch_first``, or unbatched (L, E). ``key_padding_mask`` (B, S) and ``attn_mask`` (L, S) or
    (B*H, L, S): bool True means "not allowed", a float is added. Returns ``(output, weights)``,
    the weights (averaged over heads unless ``average_attn_weights=False``) only with
    ``need_weights``. Not supported: ``kdim``/``vdim`` unlike ``embed_dim``, ``add_bias_kv``,
    ``add_zero_attn``."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, dtype="float32"):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})")
        if add_bias_kv or add_zero_attn or (kdim or embed_dim) != embed_dim or (vdim or embed_dim) != embed_dim:
            raise errors.HlxError("MultiheadAttention: add_bias_kv, add_zero_attn and kdim/vdim other than "
                                  "embed_dim are not supported")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout, self.batch_first = float(dropout), batch_first
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform_ over (3E, E)
        self.in_proj_weight = Parameter(rand(3 * embed_dim, embed_dim, dtype=dtype, low=-bound, high=bound))
        self.in_proj_bias = Parameter(zeros(3 * embed_dim, dtype=dtype)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype)
        if bias:
            with no_grad():
                self.out_proj.bias.copy_(zeros(embed_dim, dtype=dtype))

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, batch_first={self.batch_first}"

    def _project(self, query, key, value):
        E, w, b = self.embed_dim, self.in_proj_weight, self.in_proj_bias
        if query is key and key is value:
            return sh.chunk(F.linear(query, w, b), 3, -1)
        bs = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        return (F.linear(query, w[:E], bs[0]), F.linear(key, w[E:2 * E], bs[1]), F.linear(value, w[2 * E:], bs[2]))

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask=None, need_weights: bool = True,
                attn_mask=None, average_attn_weights: bool = True, is_causal: bool = False):
        unbatched = query.ndim == 2
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise errors.ShapeError(f"MultiheadAttention takes (L, N, E) (or unbatched (L, E)) inputs, got "
                                    f"{query.shape}, {key.shape}, {value.shape}")
        if query.shape[-1] != self.embed_dim or key.shape[-1] != self.embed_dim or value.shape[-1] != self.embed_dim:
            raise errors.ShapeError(f"MultiheadAttention: inputs must end in embed_dim={self.embed_dim}, got "
                                    f"{query.shape}, {key.shape}, {value.shape}")
        if is_causal and attn_mask is None:
            raise errors.HlxError("is_causal is a hint that attn_mask is the causal mask: pass attn_mask too "
                                  "(as PyTorch)")
        same = query is key and key is value
        if unbatched:
            query, key, value = (t.unsqueeze(0) for t in (query, key, value))
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (sh.transpose(t, 0, 1) for t in (query, key, value))
        if same:
            key = value = query
        B, L, _ = query.shape
        S = key.shape[1]
        H, D = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        q, k, v = (sh.permute(sh.reshape(t, (B, t.shape[1], H, D)), (0, 2, 1, 3)) for t in (q, k, v))
        mask = None
        if attn_mask is not None:
            am = _float_mask(attn_mask, True, q.dtype)
            if am.ndim == 3:
                if am.shape != (B * H, L, S):
                    raise errors.ShapeError(f"3-D attn_mask must be ({B * H}, {L}, {S}), got {am.shape}")
                am = sh.reshape(am, (B, H, L, S))
            elif am.shape != (L, S):
                raise errors.ShapeError(f"2-D attn_mask must be ({L}, {S}), got {am.shape}")
            mask = am
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (B, S):
                raise errors.ShapeError(f"key_padding_mask must be ({B}, {S}), got {key_padding_mask.shape}")
            kpm = sh.reshape(_float_mask(key_padding_mask, True, q.dtype), (B, 1, 1, S))
            mask = kpm if mask is None else mask + kpm
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = mm.matmul(q * (1.0 / math.sqrt(D)), sh.transpose(k, -2, -1))
            if mask is not None:
                scores = scores + mask
            w = F.softmax(scores, dim=-1)
            if p > 0:
                w = F.dropout(w, p)
            out = mm.matmul(w, v)
            weights = red.mean(w, 1) if average_attn_weights else w
            if unbatched:
                weights = weights.squeeze(0)
        elif is_causal and key_padding_mask is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(sh.reshape(sh.permute(out, (0, 2, 1, 3)), (B, L, self.embed_dim)))
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = sh.transpose(out, 0, 1)
        return out, weights


_ACTIVATIONS = {"relu": ew.relu, "gelu": ew.gelu}


class TransformerEncoderLayer(Module):
    """PyTorch's ``nn.TransformerEncoderLayer``: self-attention and a feed-forward block (``linear1``,
    ``linear2``), each with a residual and a LayerNorm (``norm1``, ``norm2``) after it, or before
    with ``norm_first``; ``activation`` "relu", "gelu" or a function."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False, norm_first: bool = False,
                 bias: bool = True, dtype="float32"):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, dtype=dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        if isinstance(activation, str):
            if activation not in _ACTIVATIONS:
                raise ValueError(f"activation should be relu/gelu, not {activation}")
            activation = _ACTIVATIONS[activation]
        self.activation = activation

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                           is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x):
        if self.activation is ew.relu and is_plain(self.linear1, Linear):  # one launch, the same bits
            h = linear_relu(x, self.linear1.weight, self.linear1.bias)
        else:
            h = self.activation(self.linear1(x))
        return self.dropout2(self.linear2(self.dropout(h)))

    def forward(self, src: Tensor, src_mask=None, src_key_padding_mask=None, is_causal: bool = False) -> Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (``layers.0``, ``layers.1``, ...; each starts with
    the same weights, as PyTorch's deep copies) and an optional final ``norm``."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm=None):
        super().__init__()
        self.layers = ModuleList([clone_module(encoder_layer) for _ in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: Tensor, mask=None, src_key_padding_mask=None, is_causal: bool = False) -> Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=is_causal)
        return self.norm(x) if self.norm is not None else x


def generate_square_subsequent_mask(sz: int, dtype=float32, runtime=None) -> Tensor:
    """PyTorch's ``nn.Transformer.generate_square_subsequent_mask``: 0 on and below the diagonal,
    -inf above."""
    return sh.triu(full((sz, sz), -math.inf, dtype=dtype, runtime=runtime), 1)


__all__ = ["ModuleDict", "ModuleList", "MultiheadAttention", "TransformerEncoder", "TransformerEncoderLayer",
           "clone_module", "generate_square_subsequent_mask"]
