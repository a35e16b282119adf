"""The native decode-attention kernel (agentkit.models.native_attention), built here with the real C compiler."""

from __future__ import annotations

import shutil

import pytest
import torch

from agentkit.models import native_attention, native_build
from agentkit.models.cpu_inference import bmm_grouped_rows, native_grouped_rows
from agentkit.models.native_attention import native_available, native_library

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                    reason="no C compiler here: the native kernel falls back to bmm")


def reference(query, key, value, mask):
    """fp32 SDPA with each key/value head repeated for its query heads, as transformers pairs them."""
    group = query.shape[1] // key.shape[1]
    keys, values = (t.float().repeat_interleave(group, dim=1) for t in (key, value))
    return torch.nn.functional.scaled_dot_product_attention(query.float(), keys, values, attn_mask=mask)


def cache_view(rows, heads, kv_heads, positions, dim, dtype, seed=0):
    """Queries and a left-padded key/value view into a larger room, as SlackLayer keeps the cache."""
    generator = torch.Generator().manual_seed(seed)
    room = torch.randn(2, rows, kv_heads, positions + 9, dim, generator=generator).to(dtype)
    key, value = room[0, :, :, 4:4 + positions], room[1, :, :, 4:4 + positions]
    query = torch.randn(rows, heads, 1, dim, generator=generator).to(dtype)
    lengths = torch.randint(1, positions + 1, (rows,), generator=generator)
    mask = (torch.arange(positions) >= positions - lengths[:, None])[:, None, None, :]
    return query, key, value, mask


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """A fresh kernel cache directory for one test; the process-wide library is rebuilt afterwards."""
    monkeypatch.setenv("AGENTKIT_CACHE_DIR", str(tmp_path))
    native_library.cache_clear()
    native_build.native_library.cache_clear()
    yield tmp_path / "kernels"
    native_library.cache_clear()
    native_build.native_library.cache_clear()


@needs_compiler
@pytest.mark.parametrize("dtype,dim", [(torch.bfloat16, 64), (torch.bfloat16, 16), (torch.float32, 64),
                                       (torch.float32, 24)])
@pytest.mark.parametrize("heads,kv_heads", [(9, 3), (4, 4), (8, 1)])
def test_native_kernel_matches_fp32_attention(dtype, dim, heads, kv_heads):
    assert native_available()
    query, key, value, mask = cache_view(6, heads, kv_heads, 37, dim, dtype)
    got = native_grouped_rows(query, key, value, mask, None)
    assert got.shape == (6, heads, 1, dim) and got.dtype == dtype
    tolerance = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(got.float(), reference(query, key, value, mask), **tolerance)


@needs_compiler
def test_native_kernel_skips_a_hole_in_the_middle_and_zeroes_a_fully_masked_row():
    """The prefix cache lays rows out as [prefix | padding | rest]; a row with nothing to attend gives zeros."""
    query, key, value, _ = cache_view(3, 9, 3, 20, 64, torch.bfloat16, seed=1)
    mask = torch.ones(3, 1, 1, 24, dtype=torch.bool)  # wider than the positions, as SDPA masks may be
    mask[0, ..., 5:11] = False
    mask[2] = False
    got = native_grouped_rows(query, key, value, mask, None)
    want = reference(query[:2], key[:2], value[:2], mask[:2, ..., :20])
    torch.testing.assert_close(got[:2].float(), want, atol=1e-2, rtol=1e-2)
    assert torch.equal(got[2], torch.zeros_like(got[2]))


@needs_compiler
def test_the_build_is_cached_per_source_and_machine(private_cache):
    assert native_library() is not None
    built = list(private_cache.glob("decode_attention-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native_library.cache_clear()
    assert native_library() is not None  # loaded again, not rebuilt
    assert list(private_cache.glob("*")) == built and built[0].stat().st_mtime_ns == stamp


def test_switched_off_it_runs_the_bmm_kernel(private_cache, monkeypatch):
    monkeypatch.setenv("AGENTKIT_NATIVE_KERNELS", "0")
    native_library.cache_clear()
    assert not native_available()
    query, key, value, mask = cache_view(4, 9, 3, 16, 64, torch.bfloat16)
    assert torch.equal(native_grouped_rows(query, key, value, mask, None),
                       bmm_grouped_rows(query, key, value, mask, None))
    assert not private_cache.exists()  # nothing was built


def test_without_a_compiler_it_runs_the_bmm_kernel(private_cache, monkeypatch):
    monkeypatch.setattr(native_build.shutil, "which", lambda name: None)
    assert native_library() is None
    query, key, value, mask = cache_view(2, 4, 2, 8, 16, torch.float32)
    assert torch.equal(native_grouped_rows(query, key, value, mask, None),
                       bmm_grouped_rows(query, key, value, mask, None))


def test_inputs_it_does_not_read_go_to_the_bmm_kernel():
    """An additive float mask, or a float16 cache: not what the C kernel takes."""
    query, key, value, mask = cache_view(2, 4, 2, 8, 16, torch.float32)
    additive = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    assert torch.equal(native_grouped_rows(query, key, value, additive, None),
                       bmm_grouped_rows(query, key, value, additive, None))
    half = [t.half() for t in (query, key, value)]
    torch.testing.assert_close(native_grouped_rows(*half, mask, None), bmm_grouped_rows(*half, mask, None))
