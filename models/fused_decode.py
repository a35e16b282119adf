"""Decode steps and prefills of a Llama-family model over its own modules and cache, the elementwise work fused.

Why: at 32 rows a decode step of the embedded model runs about 900 small torch ops besides its matmuls
(RMSNorm's six, rotary's seven per tensor, SiLU and the gate product, residual adds, casts), 5-35 us each and
almost all dispatch, plus transformers' module plumbing. :class:`FusedDecoder` runs the same arithmetic as
transformers' Llama forward with three native calls per layer (``csrc/decode_ops.c``: residual add + RMSNorm,
rotary in place, SiLU times up) and q, k and v as one packed linear, reading and writing the engine's
``SlackLayer`` cache through ``Cache.update`` and attending with the decode kernel :mod:`cpu_inference`
measured fastest. On the AMD EPYC in docs/benchmarks.md the 32-row bf16 step took 46.7 against 57.0 ms
through transformers' forward (1.22x, steps alternating in one engine). :meth:`FusedDecoder.prefill` runs a
prefill group the same way, with batched-matmul attention instead of SDPA's masked flash kernel (2.2 against
1.2 ms a layer for 8 x 75 tokens): a 32-prompt join took 1.68-1.81 against 1.91-2.09 s.

The ops round as torch rounds (with the same attention kernel, the embedded model's bf16 logits were bitwise
transformers' in that run); fp32 logits agree with transformers' within 1e-5 (tests).

Only architectures whose layers are exactly Llama's are taken (:data:`SUPPORTED_MODEL_TYPES`, checked module by
module); anything else, or a machine without a C compiler, keeps transformers' forward
(:meth:`FusedDecoder.build` returns None and logs why).
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from agentkit.models import native_build
from agentkit.models.cpu_inference import (DECODE_KERNELS, PackedLinear, bmm_grouped_rows, can_pack,
                                           decode_kernel_of)

__all__ = ["SUPPORTED_MODEL_TYPES", "FusedDecoder", "add_rms_norm", "ops_library", "rotary", "silu_mul",
           "unsupported_reason"]

_log = logging.getLogger(__name__)

#: ``config.model_type`` values whose decoder layers are Llama's (pre-norm RMSNorm, rotary, SiLU-gated MLP).
SUPPORTED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
_NORMS = frozenset({"LlamaRMSNorm", "MistralRMSNorm", "Qwen2RMSNorm"})
_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_i64, _ptr = ctypes.c_int64, ctypes.c_void_p


@functools.cache
def ops_library() -> ctypes.CDLL | None:
    """``csrc/decode_ops.c``, built here without multiply-add contraction (torch rounds a product and a sum
    separately); None where it cannot be built."""
    library = native_build.native_library("decode_ops", ("-ffp-contract=off",))
    if library is None:
        return None
    library.agentkit_add_rms_norm.argtypes = [ctypes.c_int, _ptr, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64,
                                              ctypes.c_float]
    library.agentkit_rotary.argtypes = [ctypes.c_int, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64, _i64]
    library.agentkit_silu_mul.argtypes = [ctypes.c_int, _ptr, _ptr, _ptr, _i64, _i64, _i64, _i64, _i64]
    for function in (library.agentkit_add_rms_norm, library.agentkit_rotary, library.agentkit_silu_mul):
        function.restype = ctypes.c_int
    return library


def _library() -> ctypes.CDLL:
    library = ops_library()
    if library is None:
        raise RuntimeError("the native decode ops are not built here (no C compiler, or AGENTKIT_NATIVE_KERNELS=0)")
    return library


def _rows(t: torch.Tensor, width: int, dtype: torch.dtype) -> None:
    if t.dtype not in _DTYPES:
        raise ValueError(f"the native decode ops take float32 or bfloat16 tensors, not {t.dtype}")
    if t.dim() != 2 or t.shape[1] != width or t.stride(1) != 1 or t.dtype != dtype or t.device.type != "cpu":
        raise ValueError(f"expected a CPU {dtype} tensor of [rows, {width}] with contiguous rows, got "
                         f"{tuple(t.shape)} {t.dtype} strides {t.stride()}")


def add_rms_norm(hidden: torch.Tensor, delta: torch.Tensor | None, weight: torch.Tensor, eps: float,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """``hidden += delta`` in place (when given), then ``weight * rms_norm(hidden)`` into ``out``: a residual
    add and a ``LlamaRMSNorm``. ``[rows, dim]`` tensors with contiguous rows, one dtype (fp32 or bf16)."""
    rows, dim = hidden.shape
    out = torch.empty_like(hidden) if out is None else out
    for t in (hidden, out, *([delta] if delta is not None else [])):
        _rows(t, dim, hidden.dtype)
    if weight.shape != (dim,) or weight.dtype != hidden.dtype or not weight.is_contiguous():
        raise ValueError(f"the norm weight must be a contiguous {hidden.dtype} vector of {dim}")
    failed = _library().agentkit_add_rms_norm(
        _DTYPES[hidden.dtype], hidden.data_ptr(), delta.data_ptr() if delta is not None else None, weight.data_ptr(),
        out.data_ptr(), rows, dim, hidden.stride(0), delta.stride(0) if delta is not None else 0, out.stride(0),
        eps)
    if failed:
        raise ValueError(f"add_rms_norm does not take {hidden.dtype}")
    return out


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
    """``apply_rotary_pos_emb`` in place on the first ``heads`` heads of each row of ``x`` (``[rows, width]``,
    heads of ``head_dim`` side by side, as a fused q/k/v projection lays them out); ``cos`` and ``sin``:
    ``[rows, head_dim]`` (or ``[rows, 1, head_dim]``, as a rotary embedding module returns them)."""
    rows = x.shape[0]
    _rows(x, x.shape[1], x.dtype)
    if heads * head_dim > x.shape[1]:
        raise ValueError(f"{heads} heads of {head_dim} do not fit in rows of {x.shape[1]}")
    cos, sin = cos.reshape(rows, head_dim), sin.reshape(rows, head_dim)
    for t in (cos, sin):
        _rows(t, head_dim, x.dtype)
    failed = _library().agentkit_rotary(_DTYPES[x.dtype], x.data_ptr(), cos.data_ptr(), sin.data_ptr(), rows, heads,
                                        head_dim, x.stride(0), head_dim, cos.stride(0))
    if failed:
        raise ValueError(f"rotary takes fp32 or bf16 heads of an even size up to 1024, not {x.dtype} x {head_dim}")
    return x


def silu_mul(gate: torch.Tensor, up: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``silu(gate) * up`` (``LlamaMLP``'s activation) into ``out`` (``gate`` itself is allowed)."""
    rows, dim = gate.shape
    out = torch.empty_like(gate) if out is None else out
    for t in (gate, up, out):
        _rows(t, dim, gate.dtype)
    failed = _library().agentkit_silu_mul(_DTYPES[gate.dtype], gate.data_ptr(), up.data_ptr(), out.data_ptr(), rows,
                                          dim, gate.stride(0), up.stride(0), out.stride(0))
    if failed:
        raise ValueError(f"silu_mul does not take {gate.dtype}")
    return out


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`FusedDecoder` cannot run ``model``'s decode steps, or None if it can. Checked before
    ``pack_linears``: the q, k and v weights are read to build the fused projection."""
    config = model.config
    if getattr(config, "model_type", None) not in SUPPORTED_MODEL_TYPES:
        return f"model_type {getattr(config, 'model_type', None)!r} is not one of {sorted(SUPPORTED_MODEL_TYPES)}"
    param = next(model.parameters(), None)
    if param is None or param.device.type != "cpu" or param.dtype not in _DTYPES:
        return "only fp32 and bf16 models on CPU"
    inner = getattr(model, "model", None)
    if inner is None or not all(hasattr(inner, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return "no Llama-style embed_tokens / layers / norm / rotary_emb"
    if getattr(config, "hidden_act", None) != "silu":
        return f"hidden_act {getattr(config, 'hidden_act', None)!r}, not silu"
    if not isinstance(getattr(model, "lm_head", None), nn.Linear | PackedLinear):
        return "the output layer is not a linear layer"
    for index, layer in enumerate(inner.layers):
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if attn is None or mlp is None:
            return f"layer {index} has no self_attn / mlp"
        if {name for name, _ in attn.named_children()} != {"q_proj", "k_proj", "v_proj", "o_proj"}:
            return f"layer {index}'s attention has other parts than q/k/v/o projections"
        projections = [getattr(attn, name) for name in ("q_proj", "k_proj", "v_proj")]
        if any(type(p) is not nn.Linear for p in projections):
            return f"layer {index}'s q/k/v are not plain linear layers (adapters, or already packed)"
        if len({p.bias is None for p in projections}) > 1:
            return f"layer {index}'s q/k/v do not all have a bias, or all none"
        if not all(isinstance(getattr(mlp, name, None), nn.Linear | PackedLinear)
                   for name in ("gate_proj", "up_proj", "down_proj")):
            return f"layer {index}'s MLP is not gate/up/down linear layers"
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        if (attn.q_proj.out_features, attn.k_proj.out_features, attn.v_proj.out_features) != (
                heads * dim, kv_heads * dim, kv_heads * dim) or heads % kv_heads or dim % 2:
            return f"layer {index}'s projections do not match {heads} heads and {kv_heads} key/value heads of {dim}"
        for norm in (layer.input_layernorm, layer.post_attention_layernorm):
            if problem := _norm_problem(norm, param.dtype):
                return f"layer {index}: {problem}"
    if problem := _norm_problem(inner.norm, param.dtype):
        return f"the final norm: {problem}"
    if ops_library() is None:
        return "the native decode ops are not built here (no C compiler, or AGENTKIT_NATIVE_KERNELS=0)"
    return None


def _norm_problem(norm: nn.Module, dtype: torch.dtype) -> str | None:
    if type(norm).__name__ not in _NORMS:
        return f"a {type(norm).__name__}, not a Llama RMSNorm"
    weight = norm.weight
    if weight.dim() != 1 or weight.dtype != dtype or not weight.is_contiguous():
        return "an RMSNorm weight that is not a contiguous vector of the model's dtype"
    return None


def _fused_projection(attn: nn.Module, rows_hint: int) -> nn.Module:
    parts = [attn.q_proj, attn.k_proj, attn.v_proj]
    fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), bias=parts[0].bias is not None,
                      device=parts[0].weight.device, dtype=parts[0].weight.dtype)
    with torch.no_grad():
        fused.weight.copy_(torch.cat([p.weight for p in parts]))
        if fused.bias is not None:
            fused.bias.copy_(torch.cat([p.bias for p in parts]))
    fused.requires_grad_(False)
    return PackedLinear(fused, rows_hint) if can_pack(fused) else fused


class FusedDecoder:
    """Logits for one new token per row: ``decoder(last_ids, positions, mask, cache)``; for a prefill group:
    :meth:`prefill` (see the module docstring).

    ``mask`` is the engine's ``[rows, positions]`` 0/1 mask including the new token; ``cache`` a transformers
    ``Cache`` holding every row's keys and values so far. Inference only (it reads the model's modules at
    every call, so ``pack_linears`` may replace them after it is built)."""

    def __init__(self, model: Any, rows_hint: int = 32):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"FusedDecoder cannot run this model: {reason}")
        config = model.config
        self.model = model
        self.heads = config.num_attention_heads
        self.kv_heads = getattr(config, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.dtype = next(model.parameters()).dtype
        self.qkv = [_fused_projection(layer.self_attn, rows_hint) for layer in model.model.layers]
        # (weight, eps) of each layer's two norms and of the final one; the weights are read in place
        self._norms = [tuple((norm.weight, norm.variance_epsilon) for norm in (layer.input_layernorm,
                                                                               layer.post_attention_layernorm))
                       for layer in model.model.layers]
        self._final = (model.model.norm.weight, model.model.norm.variance_epsilon)
        self._kernel: str | None = None

    @classmethod
    def build(cls, model: Any, rows_hint: int = 32) -> FusedDecoder | None:
        """A decoder for ``model``, or None (the reason logged at INFO) where transformers' forward must stay."""
        reason = unsupported_reason(model)
        if reason is not None:
            _log.info("fused decode step: not used (%s)", reason)
            return None
        return cls(model, rows_hint)

    def __call__(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: Any) -> torch.Tensor:
        if self._kernel is None:  # measured on first use (after use_decode_attention has switched the model)
            self._kernel = decode_kernel_of(self.model)
        kernel = DECODE_KERNELS[self._kernel]  # looked up per step: a profiler may wrap the entries
        attend_mask = mask.bool()[:, None, None, :]
        normed = self._layers(ids[:, None], positions[:, None], cache,
                              lambda q, k, v, scaling: kernel(q, k, v, attend_mask, scaling))
        return self.model.lm_head(normed[:, -1])

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any) -> torch.Tensor:
        """The last position's logits of left-padded prompts ``ids`` (``[rows, width]``), their keys and values
        appended to ``cache``: transformers' prefill with the same native ops as the decode step, and attention
        as :func:`~agentkit.models.cpu_inference.bmm_grouped_rows` (transformers' eager numerics; faster than SDPA
        with a mask here). ``mask`` (``[rows, cached + width]``) covers what ``cache`` already holds (a shared
        prefix) and the prompts; ``positions`` are the prompts' position ids."""
        attend_mask = _prefill_mask(mask, ids.shape[1])
        normed = self._layers(ids, positions, cache,
                              lambda q, k, v, scaling: bmm_grouped_rows(q, k, v, attend_mask, scaling))
        return self.model.lm_head(normed[:, -1])

    def _layers(self, ids: torch.Tensor, positions: torch.Tensor, cache: Any,
                attention: Callable[..., torch.Tensor]) -> torch.Tensor:
        """Every decoder layer over ``[batch, length]`` tokens, then the final norm: ``[batch, length, hidden]``.
        ``attention(query, keys, values, scaling)`` takes ``[batch, heads, length, dim]`` queries and the cache's
        keys and values after this call's are appended."""
        inner, library = self.model.model, _library()
        norm, rotate, activate = library.agentkit_add_rms_norm, library.agentkit_rotary, library.agentkit_silu_mul
        batch, length = ids.shape
        rows, heads, kv_heads, dim, code = batch * length, self.heads, self.kv_heads, self.head_dim, _DTYPES[self.dtype]
        hidden = inner.embed_tokens(ids).view(rows, -1)  # a fresh tensor: the residual stream, updated in place
        width = hidden.shape[1]
        cos, sin = (t.contiguous() for t in inner.rotary_emb(hidden, positions))
        normed = torch.empty_like(hidden)
        # the shapes were checked when the decoder was built: the loop calls the kernels directly
        h_ptr, n_ptr, cos_ptr, sin_ptr = hidden.data_ptr(), normed.data_ptr(), cos.data_ptr(), sin.data_ptr()
        weight, eps = self._norms[0][0]
        norm(code, h_ptr, None, weight.data_ptr(), n_ptr, rows, width, width, 0, width, eps)
        last = len(self.qkv) - 1
        for index, (layer, qkv_proj) in enumerate(zip(inner.layers, self.qkv)):
            attn, mlp = layer.self_attn, layer.mlp
            qkv = qkv_proj(normed)
            rotate(code, qkv.data_ptr(), cos_ptr, sin_ptr, rows, heads + kv_heads, dim, qkv.stride(0), dim, dim)
            split = qkv.view(batch, length, heads + 2 * kv_heads, dim).transpose(1, 2)
            new_keys, new_values = split[:, heads:heads + kv_heads], split[:, heads + kv_heads:]
            if length > 1:  # a prefill's keys become the cache as given: not views into the projection's output
                new_keys, new_values = new_keys.contiguous(), new_values.contiguous()
            keys, values = cache.update(new_keys, new_values, index)
            out = attention(split[:, :heads], keys, values, attn.scaling)
            delta = attn.o_proj(out.transpose(1, 2).reshape(rows, heads * dim))
            weight, eps = self._norms[index][1]
            norm(code, h_ptr, delta.data_ptr(), weight.data_ptr(), n_ptr, rows, width, width, width, width, eps)
            gate, up = mlp.gate_proj(normed), mlp.up_proj(normed)
            activate(code, gate.data_ptr(), up.data_ptr(), gate.data_ptr(), rows, gate.shape[1], gate.stride(0),
                     up.stride(0), gate.stride(0))
            delta = mlp.down_proj(gate)
            weight, eps = self._final if index == last else self._norms[index + 1][0]
            norm(code, h_ptr, delta.data_ptr(), weight.data_ptr(), n_ptr, rows, width, width, width, width, eps)
        return normed.view(batch, length, width)


def _prefill_mask(mask: torch.Tensor, length: int) -> torch.Tensor:
    """The boolean attention mask ``[rows, 1, length, positions]`` (``True`` = attend) for the last ``length``
    positions of ``mask``: causal, padding masked out, and every query its own key, so a padding query attends
    to something (a fully masked row would be NaN, and its keys and values then NaN in the cache)."""
    positions = mask.shape[1]
    keys = torch.arange(positions, device=mask.device)
    queries = keys[positions - length:, None]
    allowed = (keys[None, :] <= queries) & mask.bool()[:, None, :]
    allowed |= keys[None, :] == queries
    return allowed[:, None]
