"""Two CPU inference fast paths for transformers models, used by the serving engine on the model it owns.

* :func:`pack_linears` pre-packs every linear weight for oneDNN once, as torch.compile's freezing pass
  does, instead of leaving ``F.linear`` to handle a plain weight at every call. The engine served 1.2x
  the tokens per second with it on the AMD EPYC in ../shared/FACTS.md; bf16 results are bit-identical.
* :func:`use_decode_attention` routes single-token (decode) attention to a kernel that reads the grouped
  key/value heads in place, instead of transformers' SDPA path, which copies every key/value head once per
  query head when there is a mask. Which kernel is fastest depends on the CPU, so it is measured once per
  process on the model's shapes (:func:`fastest_decode_kernel`): ``enable_gqa`` was 1.14-1.21x transformers'
  path on the Intel Xeon (AMX) in ../shared/FACTS.md but 0.13-0.29x on the AMD EPYC, where two batched
  matmuls around an fp32 softmax (``bmm``) were 1.35-1.45x at 32 rows (bench/decode_attention.py), and a
  C kernel built here on first use (``native``, :mod:`agentkit.models.native_attention`) was 2.33-3.75x ``bmm``.
  Attention over several query positions (a prefill) still goes to transformers' SDPA here.

A packed model is for inference only: the packed weight is an opaque oneDNN tensor (no gradients, no
``state_dict`` round trip, no ``.to()``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from agentkit.models.native_attention import native_attend, native_available

__all__ = ["DECODE_ATTENTION", "DECODE_KERNELS", "PackedLinear", "can_pack", "decode_attention",
           "decode_kernel_of", "fastest_decode_kernel", "is_packed", "native_grouped_rows", "pack_linears",
           "use_decode_attention"]

_log = logging.getLogger(__name__)

#: The ``attn_implementation`` name :func:`use_decode_attention` registers with transformers.
DECODE_ATTENTION = "agentkit_cpu_decode"


# -- packed linear layers --------------------------------------------------------------------------------

def can_pack(model: nn.Module) -> bool:
    """Whether this torch build and the model's device and dtype support packed linears."""
    param = next(model.parameters(), None)
    return (param is not None and param.device.type == "cpu" and param.dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


class PackedLinear(nn.Module):
    """An ``nn.Linear`` replacement holding a oneDNN-packed weight (see the module docstring)."""

    def __init__(self, linear: nn.Linear, rows_hint: int):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        with torch.no_grad():
            self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows_hint)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a strided input (e.g. hidden[:, -1:]) is copied once here, not once per row by a bmm fallback
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def pack_linears(model: nn.Module, rows_hint: int = 32) -> int:
    """Replace every plain ``nn.Linear`` in ``model`` with a :class:`PackedLinear`, in place.

    ``rows_hint`` is the typical number of rows per call (the decode batch). Subclasses of ``nn.Linear``
    and adapter wrappers (peft's LoRA layers) are left alone. Returns how many layers were packed:
    0 where :func:`can_pack` says no."""
    if not can_pack(model):
        return 0
    targets = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear]
    for parent, name, linear in targets:
        setattr(parent, name, PackedLinear(linear, rows_hint))
    _log.debug("packed %d linear layers for oneDNN", len(targets))
    return len(targets)


def is_packed(model: nn.Module) -> bool:
    """Whether :func:`pack_linears` has run on ``model``."""
    return any(isinstance(m, PackedLinear) for m in model.modules())


# -- decode attention ------------------------------------------------------------------------------------

def sdpa_enable_gqa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                    scaling: float | None) -> torch.Tensor:
    """SDPA's own grouped-query path: ``[batch, heads, 1, dim]`` queries over ``[batch, kv_heads, T, dim]``."""
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=scaling,
                                          enable_gqa=query.shape[1] != key.shape[1])


def sdpa_grouped_rows(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                      scaling: float | None) -> torch.Tensor:
    """The query heads sharing a key/value head as that head's query rows: a plain SDPA call of
    ``[batch, kv_heads, heads / kv_heads, dim]`` queries, the ``[batch, 1, 1, T]`` mask broadcast over them.
    Query head ``h`` reads key/value head ``h // group``, as ``repeat_kv`` pairs them."""
    batch, heads, _, dim = query.shape
    grouped = query.reshape(batch, key.shape[1], heads // key.shape[1], dim)
    out = F.scaled_dot_product_attention(grouped, key, value, attn_mask=mask, scale=scaling)
    return out.reshape(batch, heads, 1, dim)


def bmm_grouped_rows(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                     scaling: float | None) -> torch.Tensor:
    """The grouped query rows as two batched matmuls in the cache dtype around an fp32 softmax, with
    transformers' eager numerics (scores in the cache dtype, as ``eager_attention_forward`` computes them).

    Tiny queries (a few rows over a few hundred positions) spend most of SDPA's CPU flash kernel in its
    blocking overhead; ``bmm`` is fast here only on dense batches, so the cache view (rows with spare room
    between them) is copied into one first, which costs less than ``bmm`` on the strided view. Any number of
    query positions (``[batch, heads, queries, dim]``, mask ``[batch, 1, queries, positions]``): a prefill group
    of 8 x 75 tokens took 1.2 against 2.2 ms in SDPA with its mask (bf16, the AMD EPYC)."""
    batch, heads, queries, dim = query.shape
    kv_heads, positions = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = dim ** -0.5 if scaling is None else scaling
    keys = key.contiguous().view(batch * kv_heads, positions, dim)
    scores = torch.bmm(query.reshape(batch * kv_heads, group * queries, dim), keys.transpose(1, 2))
    scores = scores.view(batch, kv_heads, group, queries, positions).float().mul_(scale)
    if mask is not None:
        mask = mask[..., :positions].unsqueeze(2)  # [batch, 1, 1, queries, positions]: every head of a group
        scores = scores.masked_fill_(~mask, float("-inf")) if mask.dtype == torch.bool else scores.add_(mask)
    probs = torch.softmax(scores, dim=-1).to(value.dtype).view(batch * kv_heads, group * queries, positions)
    out = torch.bmm(probs, value.contiguous().view(batch * kv_heads, positions, value.shape[-1]))
    return out.view(batch, heads, queries, value.shape[-1])


def native_grouped_rows(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                        scaling: float | None) -> torch.Tensor:
    """:func:`~agentkit.models.native_attention.native_attend`, or :func:`bmm_grouped_rows` where it declines
    (no compiler here, or inputs it does not read)."""
    out = native_attend(query, key, value, mask, scaling)
    return bmm_grouped_rows(query, key, value, mask, scaling) if out is None else out


#: The single-token attention kernels :func:`decode_attention` chooses between (see :func:`fastest_decode_kernel`).
DECODE_KERNELS: dict[str, Callable[..., torch.Tensor]] = {
    "enable_gqa": sdpa_enable_gqa,
    "grouped_rows": sdpa_grouped_rows,
    "bmm": bmm_grouped_rows,
    "native": native_grouped_rows,  # timed only where it was built here (native_attention.native_available)
}


@functools.cache
def fastest_decode_kernel(heads: int, kv_heads: int, dim: int, dtype: torch.dtype, rows: int = 32,
                          positions: int = 192) -> str:
    """The name of the :data:`DECODE_KERNELS` entry that runs fastest here for these shapes, measured once.

    Each kernel attends ``rows`` left-padded rows over ``positions`` cached positions (a view into a larger
    buffer, as ``SlackLayer`` keeps the cache), best of three rounds of ten calls after a warm-up: about
    0.1 s at the embedded model's shapes. Without grouping (``heads == kv_heads``) the two SDPA kernels are
    the same call, so ``enable_gqa`` is not timed."""
    kernels = {name: kernel for name, kernel in DECODE_KERNELS.items()
               if (heads != kv_heads or name != "enable_gqa") and (name != "native" or native_available())}
    generator = torch.Generator().manual_seed(0)
    room = torch.randn(2, rows, kv_heads, positions + 16, dim, generator=generator).to(dtype)
    key, value = room[0, :, :, :positions], room[1, :, :, :positions]
    query = torch.randn(rows, heads, 1, dim, generator=generator).to(dtype)
    lengths = torch.randint(positions // 2, positions + 1, (rows,), generator=generator)
    mask = (torch.arange(positions) >= positions - lengths[:, None])[:, None, None, :]
    best: dict[str, float] = {}
    with torch.inference_mode():
        for _ in range(3):
            for name, kernel in kernels.items():
                kernel(query, key, value, mask, None)
                started = time.perf_counter()
                for _ in range(10):
                    kernel(query, key, value, mask, None)
                best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
    chosen = min(best, key=best.__getitem__)
    _log.info("decode attention: %s (%s)", chosen,
              ", ".join(f"{name} {seconds / 10 * 1e6:.0f} us" for name, seconds in best.items()))
    return chosen


def decode_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """A transformers attention function: one query token per row to the :data:`DECODE_KERNELS` entry that
    :func:`fastest_decode_kernel` measured fastest for these shapes, anything else to transformers' SDPA path.

    With a mask, transformers' path repeats every key/value head ``heads / kv_heads`` times (``repeat_kv``)
    before SDPA on CPU, copying the whole cache at every layer of every step; both kernels read the cache
    as it is. ``attention_mask`` is SDPA's boolean mask (``True`` = attend), broadcast over heads."""
    if query.shape[2] != 1 or module.training or kwargs.get("softcap") is not None or dropout:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    kernel = DECODE_KERNELS[fastest_decode_kernel(query.shape[1], key.shape[1], query.shape[3], query.dtype)]
    out = kernel(query, key, value, attention_mask, scaling)
    return out.transpose(1, 2), None  # [batch, 1, heads, dim], as transformers' attention functions return


def decode_kernel_of(model: Any) -> str:
    """Which :data:`DECODE_KERNELS` entry ``model``'s decode steps use (measured on first call)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return fastest_decode_kernel(heads, kv_heads, dim, next(model.parameters()).dtype)


def use_decode_attention(model: Any) -> bool:
    """Switch ``model`` to :func:`decode_attention` (registered as :data:`DECODE_ATTENTION`, with SDPA's masks),
    and measure its kernel choice now rather than in the first decode step.

    Only models on SDPA are switched, since their masks are the ones this function reads. Returns whether
    the model now uses it."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return getattr(model.config, "_attn_implementation", None) == DECODE_ATTENTION
    AttentionInterface.register(DECODE_ATTENTION, decode_attention)
    AttentionMaskInterface.register(DECODE_ATTENTION, sdpa_mask)
    model.set_attn_implementation(DECODE_ATTENTION)
    if model.config._attn_implementation != DECODE_ATTENTION:
        return False
    decode_kernel_of(model)
    return True
