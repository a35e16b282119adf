"""InternLM2 on transformers 5 without remote code: loading the released layout, logits, rope, saving, errors.

Every checkpoint here is a tiny random one written in the released format (packed ``wqkv``, released names
and config fields). Logits are checked against an independent forward pass written from the released
modeling code (its own ``wqkv`` split, rotary cache and dynamic NTK rule) and against the Llama conversion.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.models.internlm2 import InternLM2Config, InternLM2ForCausalLM, internlm2_to_llama  # noqa: E402
from agentkit.models.internlm2.testing import write_tiny_checkpoint  # noqa: E402

#: (attention heads, KV heads, bias): MHA, GQA with G = 2 (with and without bias), G = 4 and MQA (G = 6)
RATIOS = [(4, 4, False), (4, 2, False), (4, 2, True), (8, 2, False), (6, 1, False)]
#: InternLM2 against its Llama conversion, both float32 (the issue's bound)
TOL = 1e-5
#: InternLM2 in float64 against the float64 reference: only the layout could make these differ
REFERENCE_TOL = 1e-10


def reference_logits(state: dict, config: dict, ids: torch.Tensor) -> torch.Tensor:
    """InternLM2's forward as the released modeling code computes it, in plain torch: float64 except where that
    code works in float32 (rotary tables, RMS norm), no cache.

    The packed ``wqkv`` output is viewed as (kv_heads, G + 2, head_dim) and split there; rotary tables come
    from the dynamic-NTK rule over the whole sequence length, as in ``InternLM2DynamicNTKScalingRotaryEmbedding``.
    """
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads = config["num_key_value_heads"]
    head_dim, groups = hidden // heads, heads // kv_heads
    batch, seq = ids.shape
    eps, base = config["rms_norm_eps"], config["rope_theta"]
    scaling, max_pos = config.get("rope_scaling"), config["max_position_embeddings"]
    if scaling and scaling["type"] == "dynamic" and seq > max_pos:
        factor = scaling["factor"]
        base = base * ((factor * seq / max_pos) - (factor - 1)) ** (head_dim / (head_dim - 2))
    # the rotary tables are float32 in the released code (and in transformers), whatever the model dtype
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(seq).float(), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    cos, sin = emb.cos().double()[None, None], emb.sin().double()[None, None]

    def rms(x, w):  # computed in float32, as in the released code (and Llama's)
        x32 = x.float()
        return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).double()

    def rotate(x):
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

    def linear(x, name):
        out = x @ state[name + ".weight"].double().T
        return out + state[name + ".bias"].double() if name + ".bias" in state else out

    mask = torch.full((seq, seq), float("-inf")).triu(1)
    h = state["model.tok_embeddings.weight"].double()[ids]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        x = rms(h, state[p + "attention_norm.weight"].double())
        qkv = linear(x, p + "attention.wqkv").view(batch, seq, kv_heads, groups + 2, head_dim)
        q = qkv[..., :groups, :].reshape(batch, seq, heads, head_dim).transpose(1, 2)
        k = qkv[..., -2, :].transpose(1, 2)
        v = qkv[..., -1, :].transpose(1, 2)
        q, k = q * cos + rotate(q) * sin, k * cos + rotate(k) * sin
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        att = torch.softmax(q @ k.transpose(2, 3) / math.sqrt(head_dim) + mask, dim=-1)
        out = (att @ v).transpose(1, 2).reshape(batch, seq, hidden)
        h = h + linear(out, p + "attention.wo")
        x = rms(h, state[p + "ffn_norm.weight"].double())
        gate = torch.nn.functional.silu(x @ state[p + "feed_forward.w1.weight"].double().T)
        up = x @ state[p + "feed_forward.w3.weight"].double().T
        h = h + (gate * up) @ state[p + "feed_forward.w2.weight"].double().T
    h = rms(h, state["model.norm.weight"].double())
    return h @ state["output.weight"].double().T


def _ids(vocab: int, batch: int = 2, seq: int = 17, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))


def _config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.mark.parametrize(("heads", "kv_heads", "bias"), RATIOS)
def test_released_layout_matches_reference_and_llama_conversion(tmp_path, heads, kv_heads, bias):
    src, dst = tmp_path / "internlm2", tmp_path / "llama"
    state = write_tiny_checkpoint(src, heads=heads, kv_heads=kv_heads, bias=bias, shards=2)
    ids = _ids(400)
    model = transformers.AutoModelForCausalLM.from_pretrained(src)  # no trust_remote_code
    assert isinstance(model, InternLM2ForCausalLM) and model.dtype == torch.float32
    internlm2_to_llama(src, dst)
    llama = transformers.LlamaForCausalLM.from_pretrained(dst)
    with torch.no_grad():
        ours = model(ids).logits
        converted = llama(ids).logits
    diff_llama = (ours - converted).abs().max().item()

    prompt = ids[:1, :6]
    kwargs = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 2, "eos_token_id": None}
    assert torch.equal(model.generate(prompt, **kwargs), llama.generate(prompt, **kwargs))

    with torch.no_grad():
        exact = model.double()(ids).logits
    diff_reference = (exact - reference_logits(state, _config(src), ids)).abs().max().item()
    print(f"G={heads // kv_heads} heads={heads} kv={kv_heads} bias={bias}: max|internlm2 - llama| (fp32) = "
          f"{diff_llama:.2e}, max|internlm2 - reference| (fp64) = {diff_reference:.2e}")
    assert diff_llama <= TOL
    assert diff_reference <= REFERENCE_TOL


def test_dynamic_ntk_beyond_max_position_embeddings_follows_the_formula(tmp_path):
    """Past max_position_embeddings the rope base grows as base * ((f * L / max) - (f - 1)) ** (d / (d - 2))."""
    write_tiny_checkpoint(tmp_path, heads=4, kv_heads=2, max_position_embeddings=16,
                          rope_scaling={"type": "dynamic", "factor": 2.0}, rope_theta=10000.0)
    model = InternLM2ForCausalLM.from_pretrained(tmp_path)
    rotary = model.model.rotary_emb
    dim, base, factor, max_pos = 12, 10000.0, 2.0, 16
    assert rotary.rope_type == "dynamic"
    for seq_len in (40, 100):
        x = torch.zeros(1, seq_len, 48)
        cos, sin = rotary(x, torch.arange(seq_len)[None])
        scaled = base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2))
        inv_freq = 1.0 / (scaled ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
        torch.testing.assert_close(rotary.inv_freq, inv_freq, rtol=1e-6, atol=0)
        angles = torch.outer(torch.arange(seq_len).float(), inv_freq)
        torch.testing.assert_close(cos[0], torch.cat([angles, angles], -1).cos(), rtol=0, atol=1e-5)
        torch.testing.assert_close(sin[0], torch.cat([angles, angles], -1).sin(), rtol=0, atol=1e-5)
    # within max_position_embeddings the original frequencies come back
    rotary(torch.zeros(1, 8, 48), torch.arange(8)[None])
    torch.testing.assert_close(rotary.inv_freq, 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))


def test_logits_past_max_position_embeddings_match_the_reference(tmp_path):
    state = write_tiny_checkpoint(tmp_path, heads=4, kv_heads=2, max_position_embeddings=16)
    model = InternLM2ForCausalLM.from_pretrained(tmp_path, dtype=torch.float64)
    ids = _ids(400, batch=1, seq=40)
    with torch.no_grad():
        ours = model(ids).logits
    # transformers computes the scaled base with float32 tensors, the released code with Python floats
    assert (ours - reference_logits(state, _config(tmp_path), ids)).abs().max().item() <= 1e-6


def test_save_pretrained_writes_the_released_layout(tmp_path):
    src, out = tmp_path / "src", tmp_path / "saved"
    state = write_tiny_checkpoint(src, heads=8, kv_heads=2, bias=True, fmt="bin", shards=3)
    model = InternLM2ForCausalLM.from_pretrained(src)
    model.save_pretrained(out, max_shard_size="20KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    from safetensors import safe_open

    saved = {}
    for shard in set(index["weight_map"].values()):
        with safe_open(str(out / shard), "pt") as f:
            saved.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    assert sorted(saved) == sorted(state)
    assert all(torch.equal(saved[k], state[k]) for k in state)
    config = _config(out)
    assert config["model_type"] == "internlm2" and config["architectures"] == ["InternLM2ForCausalLM"]
    assert config["bias"] is True and config["rope_scaling"] == {"type": "dynamic", "factor": 2.0}
    assert config["rope_theta"] == 1e6
    assert not {"rope_parameters", "attention_bias", "auto_map", "head_dim"} & set(config)
    reloaded = InternLM2ForCausalLM.from_pretrained(out)
    ids = _ids(400)
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, model(ids).logits)

    # a model built from a config (not loaded) saves the released names too
    InternLM2ForCausalLM(InternLM2Config(**{k: config[k] for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads")})).save_pretrained(tmp_path / "fresh")
    with safe_open(str(tmp_path / "fresh" / "model.safetensors"), "pt") as f:
        assert sorted(f.keys()) == sorted(state)  # default bias=True: wqkv/wo biases included


def test_config_reads_released_fields():
    config = InternLM2Config.from_dict({
        "model_type": "internlm2", "bias": False, "hidden_size": 4096, "num_attention_heads": 32,
        "num_key_value_heads": 8, "rope_theta": 1000000, "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "attn_implementation": "eager", "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config"},
    })
    assert config.attention_bias is False and config.head_dim == 128
    assert config.rope_parameters == {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6}
    assert config._attn_implementation is None  # transformers picks SDPA, not the remote code's "eager"
    assert not hasattr(config, "auto_map")
    assert InternLM2Config().bias is True  # the released class default


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"rope_scaling": {"type": "yarn", "factor": 2.0}}, "rope_scaling type 'yarn'"),
        ({"rope_scaling": {"type": "dynamic", "factor": 0.5}}, "factor must be a number >= 1"),
        ({"num_key_value_heads": 3}, "not a multiple of num_key_value_heads 3"),
    ],
)
def test_bad_config_is_a_config_error(tmp_path, change, message):
    write_tiny_checkpoint(tmp_path, heads=4, kv_heads=2, **change)
    with pytest.raises(ConfigError, match=message):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_missing_shard_is_named(tmp_path):
    write_tiny_checkpoint(tmp_path, shards=3)
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(ConfigError, match="not there: model-00002-of-00003.safetensors"):
        InternLM2ForCausalLM.from_pretrained(tmp_path)


def test_wqkv_that_does_not_fit_the_heads_is_a_config_error(tmp_path):
    write_tiny_checkpoint(tmp_path, heads=4, kv_heads=2)
    config = _config(tmp_path)
    config["num_key_value_heads"] = 4  # the weights were written for 2 KV heads
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"attention.wqkv.weight .* has shape \(96, 48\).*need \(144, 48\)"):
        transformers.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_loads_in_bfloat16_and_by_auto_dtype(tmp_path):
    write_tiny_checkpoint(tmp_path, dtype=torch.bfloat16)
    assert InternLM2ForCausalLM.from_pretrained(tmp_path, dtype="auto").dtype == torch.bfloat16
