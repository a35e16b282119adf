"""CPU inference fast paths on a tiny random-init Llama: packed linears, decode attention, last-position logits."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agentkit.models import cpu_inference
from agentkit.models.cpu_inference import (
    DECODE_ATTENTION,
    DECODE_KERNELS,
    PackedLinear,
    can_pack,
    decode_attention,
    decode_kernel_of,
    fastest_decode_kernel,
    is_packed,
    pack_linears,
    use_decode_attention,
)
from agentkit.models.hf import cache_argument, contiguous_lm_head, last_position


def tiny_llama(heads: int = 4, kv_heads: int = 2, dtype=torch.float32):
    config = transformers.LlamaConfig(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=heads,
        num_key_value_heads=kv_heads, max_position_embeddings=128, tie_word_embeddings=True, pad_token_id=0,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval().to(dtype)


def left_padded(rows: list[int]):
    width = max(rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    generator = torch.Generator().manual_seed(1)
    for row, length in enumerate(rows):
        ids[row, width - length:] = torch.randint(1, 300, (length,), generator=generator)
        mask[row, width - length:] = 1
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def decode_logits(model, steps: int = 4, rows=(9, 3, 6)):
    """Prefill a left-padded batch, then greedy-decode ``steps`` tokens: every step's logits, stacked."""
    ids, mask, positions = left_padded(list(rows))
    cache = transformers.DynamicCache(config=model.config)
    out, logits = None, []
    with torch.inference_mode():
        kw = {cache_argument(model): cache}
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=last_position(
            ids.shape[1]), **kw)
        for _ in range(steps):
            logits.append(out.logits[:, -1].float())
            token = out.logits[:, -1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, mask.new_ones((len(rows), 1))], dim=1)
            positions = positions[:, -1:] + 1
            out = model(input_ids=token, attention_mask=mask, position_ids=positions, **kw)
    return torch.stack(logits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_linears_give_the_same_logits(dtype):
    model = tiny_llama(dtype=dtype)
    want = decode_logits(model)
    packed = copy.deepcopy(model)
    assert can_pack(packed)
    # q, k, v, o and three MLP projections per layer, plus the (tied) output layer
    assert pack_linears(packed, rows_hint=3) == 2 * 7 + 1
    assert is_packed(packed) and isinstance(packed.lm_head, PackedLinear)
    assert not any(type(m) is torch.nn.Linear for m in packed.modules())
    tolerance = 1e-5 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(decode_logits(packed), want, atol=tolerance, rtol=tolerance)
    assert pack_linears(packed) == 0  # nothing left to pack


def test_pack_linears_leaves_other_dtypes_and_linear_subclasses_alone():
    assert pack_linears(tiny_llama(dtype=torch.float16)) == 0

    class Scaled(torch.nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), Scaled(4, 4))
    assert pack_linears(model) == 1
    assert isinstance(model[0], PackedLinear) and type(model[1]) is Scaled
    x = torch.randn(3, 4)
    with torch.no_grad():
        assert model(x).shape == (3, 4)


def test_packed_linear_takes_a_strided_input():
    linear = torch.nn.Linear(8, 5)
    packed = PackedLinear(linear, rows_hint=2)
    hidden = torch.randn(2, 6, 8)
    last = hidden[:, -1:]  # strided, as transformers slices it for logits_to_keep=1
    assert not last.is_contiguous()
    with torch.no_grad():
        torch.testing.assert_close(packed(last), linear(last))


@pytest.mark.parametrize("kernel", sorted(DECODE_KERNELS))
@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (4, 1), (8, 2)])
def test_decode_attention_matches_sdpa_with_padding_and_gqa(heads, kv_heads, kernel, monkeypatch):
    model = tiny_llama(heads, kv_heads)
    want = decode_logits(model, steps=5)
    fast = copy.deepcopy(model)
    assert use_decode_attention(fast)
    assert fast.config._attn_implementation == DECODE_ATTENTION
    monkeypatch.setattr(cpu_inference, "fastest_decode_kernel", lambda *shape: kernel)
    torch.testing.assert_close(decode_logits(fast, steps=5), want, atol=1e-5, rtol=1e-5)


def test_the_decode_kernel_is_measured_once_per_shape():
    fastest_decode_kernel.cache_clear()
    model = tiny_llama(8, 2, dtype=torch.bfloat16)
    assert use_decode_attention(model)
    chosen = decode_kernel_of(model)
    assert chosen in DECODE_KERNELS
    # measured when the model was switched; later calls (one per layer per step) read the cached answer
    assert fastest_decode_kernel.cache_info().misses == 1
    assert fastest_decode_kernel(8, 2, 64 // 8, torch.bfloat16) == chosen
    # without grouping enable_gqa is grouped_rows' call: only the distinct kernels are timed
    assert fastest_decode_kernel(4, 4, 16, torch.float32) in {"grouped_rows", "bmm"}


@pytest.mark.parametrize("kernel", sorted(DECODE_KERNELS))
def test_decode_kernels_read_a_bf16_cache_view_with_spare_room(kernel):
    """As SlackLayer keeps it: rows of a larger buffer, padding on the left, answers within bf16 rounding."""
    generator = torch.Generator().manual_seed(0)
    room = torch.randn(2, 5, 2, 40, 16, generator=generator).to(torch.bfloat16)
    key, value = room[0, :, :, 3:30], room[1, :, :, 3:30]
    query = torch.randn(5, 6, 1, 16, generator=generator).to(torch.bfloat16)
    lengths = torch.tensor([27, 1, 14, 20, 9])
    mask = (torch.arange(27) >= 27 - lengths[:, None])[:, None, None, :]
    repeated = [t.float().repeat_interleave(3, dim=1) for t in (key, value)]
    want = torch.nn.functional.scaled_dot_product_attention(query.float(), *repeated, attn_mask=mask)
    got = DECODE_KERNELS[kernel](query, key, value, mask, None)
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, atol=3e-2, rtol=2e-2)


def test_decode_attention_leaves_queries_longer_than_one_to_sdpa():
    module = torch.nn.Module().eval()
    module.num_key_value_groups = 2
    query, key, value = torch.randn(1, 4, 3, 8), torch.randn(1, 2, 3, 8), torch.randn(1, 2, 3, 8)
    out, _ = decode_attention(module, query, key, value, None, scaling=8 ** -0.5, is_causal=True)
    expected = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(2, dim=1), value.repeat_interleave(2, dim=1), is_causal=True)
    torch.testing.assert_close(out, expected.transpose(1, 2))


def test_models_not_on_sdpa_keep_their_attention():
    model = tiny_llama()
    model.set_attn_implementation("eager")
    assert not use_decode_attention(model)
    assert model.config._attn_implementation == "eager"


def test_last_position_and_contiguous_lm_head_keep_the_logits():
    model = tiny_llama(dtype=torch.bfloat16)
    ids, mask, positions = left_padded([7, 4])
    with torch.inference_mode():
        full = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1:]
        indexed = model(input_ids=ids, attention_mask=mask, position_ids=positions,
                        logits_to_keep=last_position(ids.shape[1])).logits
        with contiguous_lm_head(model):
            assert len(model.lm_head._forward_pre_hooks) == 1
            hooked = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1).logits
    assert not model.lm_head._forward_pre_hooks  # removed on the way out
    torch.testing.assert_close(indexed, full)
    torch.testing.assert_close(hooked, full)
