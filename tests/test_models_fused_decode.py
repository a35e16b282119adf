"""The fused decode step (agentkit.models.fused_decode): its native ops against transformers' own modules, and whole
decode steps against transformers' forward on tiny random models, built here with the real C compiler."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers.models.llama.modeling_llama import LlamaRMSNorm, apply_rotary_pos_emb

from agentkit.models import fused_decode, native_build
from agentkit.models.fused_decode import FusedDecoder, add_rms_norm, rotary, silu_mul, unsupported_reason
from agentkit.models.serving import Engine, EngineConfig, SamplingParams
from agentkit.models.serving.engine import new_cache

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler here: the engine keeps transformers' decode forward")

#: One bf16 rounding step, relative: a reduction summed in another order may move a value by this much.
BF16_STEP = 2 ** -7


def tiny(model_type: str = "llama", heads: int = 4, kv_heads: int = 2, dtype=torch.float32, **extra):
    config_class = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[model_type]
    config = config_class(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=128,
                          tie_word_embeddings=True, initializer_range=0.3, **extra)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval().to(dtype)
    with torch.no_grad():  # norms away from 1, so a wrong weight or order shows
        for norm in [m for m in model.modules() if "RMSNorm" in type(m).__name__]:
            norm.weight.uniform_(0.5, 1.5)
    return model


# -- the native ops ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_add_rms_norm_is_the_residual_add_then_llama_rmsnorm(dtype):
    generator = torch.Generator().manual_seed(1)
    hidden, delta = (torch.randn(5, 576, generator=generator).to(dtype) for _ in range(2))
    norm = LlamaRMSNorm(576, eps=1e-5).to(dtype)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5, generator=generator)
    summed = hidden + delta
    want = norm(summed)
    got = add_rms_norm(hidden, delta, norm.weight, norm.variance_epsilon)
    assert torch.equal(hidden, summed)  # the residual stream is updated in place, rounded as torch rounds it
    tolerance = dict(atol=0, rtol=BF16_STEP) if dtype == torch.bfloat16 else dict(atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got, want, **tolerance)
    torch.testing.assert_close(add_rms_norm(summed.clone(), None, norm.weight, norm.variance_epsilon), want,
                               **tolerance)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_rotary_in_place_equals_apply_rotary_pos_emb_and_leaves_the_values(dtype):
    """q and k heads side by side in one fused projection's output, then the value heads."""
    rows, heads, kv_heads, dim = 3, 6, 2, 16
    generator = torch.Generator().manual_seed(2)
    qkv = torch.randn(rows, (heads + 2 * kv_heads) * dim, generator=generator).to(dtype)
    cos, sin = (torch.randn(rows, 1, dim, generator=generator).to(dtype) for _ in range(2))
    query = qkv[:, :heads * dim].reshape(rows, heads, 1, dim)
    key = qkv[:, heads * dim:(heads + kv_heads) * dim].reshape(rows, kv_heads, 1, dim)
    want_q, want_k = apply_rotary_pos_emb(query, key, cos, sin)
    values = qkv[:, (heads + kv_heads) * dim:].clone()
    rotary(qkv, cos, sin, heads + kv_heads, dim)
    assert torch.equal(qkv[:, :heads * dim].reshape(rows, heads, 1, dim), want_q)
    assert torch.equal(qkv[:, heads * dim:(heads + kv_heads) * dim].reshape(rows, kv_heads, 1, dim), want_k)
    assert torch.equal(qkv[:, (heads + kv_heads) * dim:], values)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_silu_mul_is_llama_mlp_activation(dtype):
    generator = torch.Generator().manual_seed(3)
    gate = (torch.randn(4, 1536, generator=generator) * 6).to(dtype)  # wide range: the exp's both ends
    up = torch.randn(4, 1536, generator=generator).to(dtype)
    want = F.silu(gate) * up
    tolerance = dict(atol=1e-30, rtol=BF16_STEP) if dtype == torch.bfloat16 else dict(atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(silu_mul(gate, up), want, **tolerance)
    torch.testing.assert_close(silu_mul(gate, up, gate), want, **tolerance)  # in place into the gate


def test_the_ops_refuse_what_they_do_not_read():
    with pytest.raises(ValueError, match="contiguous rows"):
        add_rms_norm(torch.randn(4, 8).t(), None, torch.ones(4), 1e-5)
    with pytest.raises(ValueError, match="norm weight"):
        add_rms_norm(torch.randn(4, 8), None, torch.ones(8, dtype=torch.bfloat16), 1e-5)
    with pytest.raises(ValueError, match="do not fit"):
        rotary(torch.randn(2, 32), torch.ones(2, 16), torch.ones(2, 16), 3, 16)
    with pytest.raises(ValueError, match="float16"):
        silu_mul(torch.ones(2, 4, dtype=torch.float16), torch.ones(2, 4, dtype=torch.float16))


# -- whole decode steps ----------------------------------------------------------------------------------------

def decode_both(model, steps: int = 4):
    """Left-padded rows prefilled by transformers, then ``steps`` decode steps each through transformers' forward
    and through a FusedDecoder on a copy of the same cache: both logits per step, and every token fed (prompt
    and decoded, with its mask) for a reference forward over the whole sequence."""
    decoder = FusedDecoder(model)
    lengths = [7, 3, 5]
    width = max(lengths)
    generator = torch.Generator().manual_seed(4)
    ids = torch.randint(1, model.config.vocab_size, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, width - length:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    theirs = new_cache(model.config)
    pairs = []
    with torch.inference_mode():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=theirs, use_cache=True)
        ours = copy.deepcopy(theirs)
        last = out.logits[:, -1].argmax(-1)
        position = torch.tensor(lengths)
        for _ in range(steps):
            ids = torch.cat([ids, last[:, None]], dim=1)
            mask = torch.cat([mask, mask.new_ones(len(lengths), 1)], dim=1)
            want = model(input_ids=last[:, None], attention_mask=mask, position_ids=position[:, None],
                         cache=theirs, use_cache=True).logits[:, -1]
            got = decoder(last, position, mask, ours)
            pairs.append((got, want))
            last, position = want.argmax(-1), position + 1
    return pairs, ids, mask


def whole_sequence_logits(model, ids, mask, steps: int):
    """The logits at each decode step's position from one forward over the whole sequence."""
    with torch.inference_mode():
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    return [logits[:, ids.shape[1] - steps + k] for k in range(steps)]


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4), (8, 1)])
def test_fp32_decode_steps_match_transformers(heads, kv_heads):
    for got, want in decode_both(tiny(heads=heads, kv_heads=kv_heads))[0]:
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_projection_biases_and_qwen2_are_fused_too():
    for model in (tiny(attention_bias=True), tiny("qwen2")):
        assert model.model.layers[0].self_attn.q_proj.bias is not None
        for got, want in decode_both(model)[0]:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_bf16_decode_steps_are_as_close_to_fp32_as_transformers_bf16():
    """bf16 differs from bf16 by rounding order (the fused step keeps attention scores in fp32): judged against
    the fp32 model over the same tokens, its error is no larger than transformers' own bf16 error."""
    exact = tiny()
    pairs, ids, mask = decode_both(copy.deepcopy(exact).to(torch.bfloat16))
    for (got, want), truth in zip(pairs, whole_sequence_logits(exact, ids, mask, len(pairs))):
        ours, theirs = ((t.float() - truth).abs().max().item() for t in (got, want))
        assert ours <= 1.5 * theirs + 1e-3, (ours, theirs)


@pytest.mark.parametrize("prefix", [0, 3])
def test_prefill_matches_transformers_with_and_without_a_cached_prefix(prefix):
    """Rows laid out as the engine lays them out, ``[prefix | padding | prompt]``: the last logits and every real
    position's keys and values as transformers' forward computes them."""
    model = tiny(heads=4, kv_heads=2)
    decoder = FusedDecoder(model)
    generator = torch.Generator().manual_seed(5)
    shared = torch.randint(1, 97, (1, prefix), generator=generator)
    lengths = [6, 2, 4]
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), prefix + width, dtype=torch.long)
    mask[:, :prefix] = 1
    for row, length in enumerate(lengths):
        ids[row, width - length:] = torch.randint(1, 97, (length,), generator=generator)
        mask[row, prefix + width - length:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, prefix:]
    caches = [new_cache(model.config), new_cache(model.config)]
    with torch.inference_mode():
        if prefix:
            base = new_cache(model.config)
            model(input_ids=shared, cache=base, use_cache=True)
            for cache in caches:
                for layer, done in zip(cache.layers, base.layers):
                    rows = len(lengths)
                    layer.update(done.keys.expand(rows, -1, -1, -1), done.values.expand(rows, -1, -1, -1))
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=caches[0],
                     use_cache=True).logits[:, -1]
        got = decoder.prefill(ids, mask, positions, caches[1])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    real = mask.bool()
    for theirs, ours in zip(*(cache.layers for cache in caches)):
        for row in range(len(lengths)):
            for mine, transformers_ in ((ours.keys, theirs.keys), (ours.values, theirs.values)):
                torch.testing.assert_close(mine[row][:, real[row]], transformers_[row][:, real[row]], atol=1e-5,
                                           rtol=1e-5)
        assert torch.isfinite(ours.keys).all() and torch.isfinite(ours.values).all()  # padding too: it meets attention


def test_what_it_does_not_take_keeps_transformers_forward(monkeypatch):
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    assert "model_type 'gpt2'" in unsupported_reason(gpt2)
    wrapped = tiny()

    class Adapter(torch.nn.Linear):  # what a LoRA wrapper or an already packed layer looks like to the check
        pass

    old = wrapped.model.layers[1].self_attn.k_proj
    wrapped.model.layers[1].self_attn.k_proj = Adapter(old.in_features, old.out_features, bias=False)
    assert "not plain linear layers" in unsupported_reason(wrapped)
    assert FusedDecoder.build(wrapped) is None
    with pytest.raises(ValueError, match="cannot run this model"):
        FusedDecoder(wrapped)
    assert "fp32 and bf16" in unsupported_reason(tiny(dtype=torch.float16))

    monkeypatch.setenv("AGENTKIT_NATIVE_KERNELS", "0")
    native_build.native_library.cache_clear()
    fused_decode.ops_library.cache_clear()
    try:
        assert "not built here" in unsupported_reason(tiny())
    finally:
        native_build.native_library.cache_clear()
        fused_decode.ops_library.cache_clear()


def test_engine_text_is_the_same_with_and_without_the_fused_step(monkeypatch):
    """fp32 greedy through the engine: the fused step and transformers' forward write the same tokens."""
    model = tiny(heads=4, kv_heads=2)
    tokenizer = _ByteTokenizer(model.config.vocab_size)
    prompts = [[5, 9, 11, 3], [7, 2], [13, 14, 15, 16, 17, 18]]
    fused = Engine(copy.deepcopy(model), tokenizer, EngineConfig(dtype="float32", max_batch_size=4))
    assert fused.decoder is not None
    plain = Engine(copy.deepcopy(model), tokenizer, EngineConfig(dtype="float32", max_batch_size=4))
    plain.decoder = None
    params = SamplingParams(max_tokens=12)
    got = [c.text for c in fused.generate(prompts, params)]
    assert got == [c.text for c in plain.generate(prompts, params)]
    assert sum(map(len, got)) >= 12  # tokens were written, not only an end of sequence


class _ByteTokenizer:
    """The few tokenizer calls the engine makes, over ids below ``vocab`` (no special tokens but EOS 0)."""

    bos_token = None
    eos_token_id = 0
    pad_token_id = 0

    def __init__(self, vocab: int):
        self.vocab = vocab

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [1 + ord(c) % (self.vocab - 1) for c in text]}

    def decode(self, ids, **options):
        return "".join(chr(65 + i % 26) for i in ids)
