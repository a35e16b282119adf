"""A native decode-attention kernel, built on first use with this machine's C compiler.

Why: at 32 rows the batched-matmul kernel (``cpu_inference.bmm_grouped_rows``) spends most of its time in copies
and dispatch, not in arithmetic: it copies the cache view to a dense batch, runs two batched GEMMs of 3 × 64 ×
positions each and a masked fp32 softmax. ``csrc/decode_attention.c`` reads the cache view in place, skips the
left padding and accumulates in fp32. On the AMD EPYC in docs/benchmarks.md it was 2.33-3.75x ``bmm`` per
layer at 32 rows (180-512 positions), and the embedded model's 32-row decode step took 52.9 against 57.5 ms.

The library is built on first use by :mod:`~agentkit.models.native_build` (once per source, compiler and CPU,
about half a second, no torch headers) and called through ``ctypes``. Where no compiler is found, the build
fails, or ``AGENTKIT_NATIVE_KERNELS=0`` is set, :func:`native_available` is false, :func:`native_attend`
returns None, and ``cpu_inference``'s ``native`` kernel runs ``bmm`` instead (``fastest_decode_kernel`` then
does not time it).
"""

from __future__ import annotations

import ctypes
import functools
import logging

import torch

from agentkit.models import native_build

__all__ = ["native_attend", "native_available", "native_library"]

_log = logging.getLogger(__name__)

_DTYPES = {torch.float32: 0, torch.bfloat16: 1}


@functools.cache
def native_library() -> ctypes.CDLL | None:
    """The built kernel library (:func:`~agentkit.models.native_build.native_library`), or None where it cannot be
    had here."""
    library = native_build.native_library("decode_attention")
    if library is None:
        return None
    library.agentkit_decode_attention.restype = ctypes.c_int
    library.agentkit_decode_attention.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64), ctypes.c_float]
    library.agentkit_has_avx512_bf16.restype = ctypes.c_int
    _log.info("native decode attention: AVX-512 BF16 path %s", bool(library.agentkit_has_avx512_bf16()))
    return library


def native_available() -> bool:
    """Whether :func:`native_attend` runs the native kernel here (builds it on first call)."""
    return native_library() is not None


def _takes(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None) -> bool:
    batch, heads, rows, dim = query.shape
    tensors = (query, key, value)
    return (rows == 1 and query.dtype in _DTYPES and all(t.dtype == query.dtype and t.device.type == "cpu"
                                                         and t.stride(-1) == 1 for t in tensors)
            and key.shape[0] == value.shape[0] == batch and key.shape[1] == value.shape[1]
            and key.shape[2] == value.shape[2] and key.shape[3] == value.shape[3] == dim
            and heads % key.shape[1] == 0
            and (mask is None or (mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[0] in (1, batch)
                                  and mask.shape[1] == mask.shape[2] == 1 and mask.shape[3] >= key.shape[2])))


def native_attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                  scaling: float | None) -> torch.Tensor | None:
    """``[batch, heads, 1, dim]`` queries over ``[batch, kv_heads, T, dim]`` keys and values (views, last dimension
    contiguous) with SDPA's boolean mask (``True`` = attend), as ``cpu_inference.DECODE_KERNELS`` entries take them.

    None where the library is missing, the inputs are not what it reads, or it could not allocate its scratch."""
    library = native_library()
    if library is None or not _takes(query, key, value, mask):
        return None
    batch, heads, _, dim = query.shape
    kv_heads, positions = key.shape[1], key.shape[2]
    out = torch.empty((batch, 1, heads, dim), dtype=query.dtype)  # transformers' layout after the transpose
    rows = mask[:, 0, 0, :positions] if mask is not None else None
    mask_strides = (0, 0) if rows is None else (0 if rows.shape[0] == 1 else rows.stride(0), rows.stride(1))
    strides = (ctypes.c_int64 * 12)(query.stride(0), query.stride(1), key.stride(0), key.stride(1), key.stride(2),
                                    value.stride(0), value.stride(1), value.stride(2), *mask_strides,
                                    out.stride(0), out.stride(2))
    sizes = (ctypes.c_int64 * 5)(batch, heads, kv_heads, positions, dim)
    scale = dim ** -0.5 if scaling is None else scaling
    failed = library.agentkit_decode_attention(
        _DTYPES[query.dtype], query.data_ptr(), key.data_ptr(), value.data_ptr(),
        rows.data_ptr() if rows is not None else None, out.data_ptr(), strides, sizes, scale)
    return None if failed else out.transpose(1, 2)
