"""Exact InternLM2 ⇄ Llama checkpoint conversion: tensors, configs, tokenizer files, refusals and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("safetensors")
pytest.importorskip("sentencepiece")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.models.internlm2 import (  # noqa: E402
    SPECIAL_TOKENS,
    internlm2_to_llama,
    llama_to_internlm2,
    load_internlm2_tokenizer,
    pack_wqkv,
    unpack_wqkv,
)
from agentkit.models.internlm2.testing import train_tiny_tokenizer, write_tiny_checkpoint  # noqa: E402
from agentkit.models.internlm2.weights import CheckpointReader  # noqa: E402

ARCHITECTURE = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "bias", "rope_theta",
                "rope_scaling", "tie_word_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")


def tensors(directory: Path) -> dict[str, torch.Tensor]:
    reader = CheckpointReader(directory)
    return {name: reader.get(name) for name in reader.names()}


def config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.mark.parametrize(
    ("heads", "kv_heads", "bias", "fmt", "shards", "dtype"),
    [
        (4, 2, False, "safetensors", 3, torch.float32),
        (8, 2, True, "bin", 1, torch.bfloat16),
        (6, 1, False, "bin", 2, torch.float16),
        (4, 4, False, "safetensors", 1, torch.float32),
    ],
)
def test_round_trip_returns_identical_tensors(tmp_path, heads, kv_heads, bias, fmt, shards, dtype):
    src, llama, back = tmp_path / "internlm2", tmp_path / "llama", tmp_path / "back"
    state = write_tiny_checkpoint(src, heads=heads, kv_heads=kv_heads, bias=bias, fmt=fmt, shards=shards, dtype=dtype)
    assert internlm2_to_llama(src, llama, max_shard_size="20KB") == llama
    index = json.loads((llama / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # written sharded
    converted = tensors(llama)
    assert not any("wqkv" in name or "feed_forward" in name for name in converted)
    assert converted["lm_head.weight"].dtype == dtype
    q = converted["model.layers.0.self_attn.q_proj.weight"]
    assert q.shape == (48, 48) and not any(k.endswith("rotary_emb.inv_freq") for k in converted)

    llama_to_internlm2(llama, back)
    restored = tensors(back)
    assert sorted(restored) == sorted(state)
    for name, tensor in state.items():
        assert restored[name].dtype == tensor.dtype and torch.equal(restored[name], tensor), name
    original, final = config(src), config(back)
    assert {k: final[k] for k in ARCHITECTURE} == {k: original[k] for k in ARCHITECTURE}
    assert final["model_type"] == "internlm2" and final["architectures"] == ["InternLM2ForCausalLM"]
    assert (back / "generation_config.json").read_text() == (src / "generation_config.json").read_text()


def test_llama_config_keeps_rope_scaling_and_heads(tmp_path):
    write_tiny_checkpoint(tmp_path / "src", heads=8, kv_heads=2, bias=True, max_position_embeddings=64)
    internlm2_to_llama(tmp_path / "src", tmp_path / "llama")
    written = config(tmp_path / "llama")
    assert written["model_type"] == "llama" and written["architectures"] == ["LlamaForCausalLM"]
    assert written["attention_bias"] is True and written["mlp_bias"] is False
    assert not {"bias", "auto_map", "attn_implementation"} & set(written)
    parsed = transformers.AutoConfig.from_pretrained(tmp_path / "llama")
    assert isinstance(parsed, transformers.LlamaConfig)
    assert parsed.rope_parameters["rope_type"] == "dynamic" and parsed.rope_parameters["factor"] == 2.0
    assert parsed.rope_parameters["rope_theta"] == 1e6 and parsed.num_key_value_heads == 2


def test_pack_and_unpack_are_inverse_row_permutations():
    heads, kv_heads, head_dim = 8, 2, 3
    rows = (heads + 2 * kv_heads) * head_dim
    wqkv = torch.arange(rows * 5, dtype=torch.float32).reshape(rows, 5)
    q, k, v = unpack_wqkv(wqkv, heads, kv_heads, head_dim)
    # KV group 0 holds rows [q0 q1 q2 q3 | k0 | v0], group 1 [q4 .. q7 | k1 | v1], each head_dim rows
    group = (heads // kv_heads + 2) * head_dim
    assert torch.equal(q[:4 * head_dim], wqkv[:4 * head_dim]) and torch.equal(k[:head_dim], wqkv[12:15])
    assert torch.equal(v[head_dim:], wqkv[group + 15:group + 18]) and torch.equal(q[12:], wqkv[group:group + 12])
    assert torch.equal(pack_wqkv(q, k, v, heads, kv_heads, head_dim), wqkv)
    bias = torch.arange(rows, dtype=torch.float32)
    assert torch.equal(pack_wqkv(*unpack_wqkv(bias, heads, kv_heads, head_dim), heads, kv_heads, head_dim), bias)
    with pytest.raises(ConfigError, match="need 36 rows"):
        unpack_wqkv(wqkv[:30], heads, kv_heads, head_dim)


def test_tokenizer_files_come_along(tmp_path):
    src = tmp_path / "src"
    write_tiny_checkpoint(src)
    train_tiny_tokenizer(src, placeholders=True)  # the released layout: [UNUSED_TOKEN_*] renamed by the config
    internlm2_to_llama(src, tmp_path / "llama")
    llama_to_internlm2(tmp_path / "llama", tmp_path / "back")
    ours = load_internlm2_tokenizer(src)
    text = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n<|action_start|><|plugin|>\n{}"
    # the Llama copy loads with plain transformers (tokenizer.json, no remote code) and encodes the same
    plain = transformers.AutoTokenizer.from_pretrained(tmp_path / "llama")
    assert not isinstance(plain, type(ours))
    assert plain(text)["input_ids"] == ours(text)["input_ids"]
    assert {t: plain.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS} == {t: ours.convert_tokens_to_ids(t)
                                                                            for t in SPECIAL_TOKENS}
    llama_config = json.loads((tmp_path / "llama" / "tokenizer_config.json").read_text())
    assert "auto_map" not in llama_config and llama_config["tokenizer_class"] == "PreTrainedTokenizerFast"
    back = load_internlm2_tokenizer(tmp_path / "back")
    assert back(text)["input_ids"] == ours(text)["input_ids"]
    assert (tmp_path / "back" / "tokenizer.model").read_bytes() == (src / "tokenizer.model").read_bytes()


def _no_leftovers(parent: Path, name: str) -> bool:
    return not (parent / name).exists() and not [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def test_refusals_leave_nothing_behind(tmp_path):
    src = tmp_path / "src"
    write_tiny_checkpoint(src, heads=4, kv_heads=2, shards=2)
    raw = config(src)
    (src / "config.json").write_text(json.dumps({**raw, "num_key_value_heads": 4}))
    with pytest.raises(ConfigError, match="wqkv.weight has shape"):
        internlm2_to_llama(src, tmp_path / "out")
    assert _no_leftovers(tmp_path, "out")
    (src / "config.json").write_text(json.dumps(raw))

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="already exists"):
        internlm2_to_llama(src, tmp_path / "taken")
    with pytest.raises(ConfigError, match="must be a new directory outside the source"):
        internlm2_to_llama(src, src / "inside")
    with pytest.raises(ConfigError, match="model_type 'internlm2', not 'llama'.*use 'internlm2-to-llama'"):
        llama_to_internlm2(src, tmp_path / "out")
    with pytest.raises(ConfigError, match="shard size"):
        internlm2_to_llama(src, tmp_path / "out", max_shard_size="lots")

    (src / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(ConfigError, match="not there: model-00001-of-00002.safetensors"):
        internlm2_to_llama(src, tmp_path / "out")
    assert _no_leftovers(tmp_path, "out")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mlp_bias": True}, "biases in its MLP"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 128}},
         "rope_scaling type 'yarn'"),
        ({"head_dim": 16}, "head_dim 16"),
    ],
)
def test_llama_models_internlm2_cannot_express_are_refused(tmp_path, change, message):
    write_tiny_checkpoint(tmp_path / "src")
    internlm2_to_llama(tmp_path / "src", tmp_path / "llama")
    (tmp_path / "llama" / "config.json").write_text(json.dumps({**config(tmp_path / "llama"), **change}))
    with pytest.raises(ConfigError, match=message):
        llama_to_internlm2(tmp_path / "llama", tmp_path / "back")


def agentkit(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "agentkit", *args], capture_output=True, text=True, timeout=120,
                          env=env)


def test_cli_converts_both_ways(tmp_path):
    src = tmp_path / "src"
    state = write_tiny_checkpoint(src, fmt="bin")
    done = agentkit("convert", "internlm2-to-llama", str(src), str(tmp_path / "llama"), "--max-shard-size", "30KB")
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'llama'}" in done.stdout
    back = agentkit("convert", "llama-to-internlm2", str(tmp_path / "llama"), str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    restored = tensors(tmp_path / "back")
    assert sorted(restored) == sorted(state) and all(torch.equal(restored[k], state[k]) for k in state)

    refused = agentkit("convert", "llama-to-internlm2", str(src), str(tmp_path / "again"))
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "use 'internlm2-to-llama'" in refused.stderr
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
