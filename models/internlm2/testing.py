"""Tiny InternLM2 checkpoints and tokenizers in the released format, for tests (here and in other packages).

``write_tiny_checkpoint`` writes random weights under the released names (packed ``wqkv``) with a
released-style ``config.json`` (``auto_map``, ``attn_implementation``, ``rope_scaling``); the weights are
written directly, not through transformers, so loading them exercises the same path as a download.
``train_tiny_tokenizer`` trains a small BPE sentencepiece model in milliseconds with the six chat tokens as
user-defined symbols, next to a released-style ``tokenizer_config.json``.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .tokenization import SPECIAL_TOKENS

__all__ = ["TINY_CORPUS", "tiny_state_dict", "train_tiny_tokenizer", "write_tiny_checkpoint"]

#: Text the tiny tokenizer is trained on: chat turns, code and a little non-ASCII.
TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, how are you today? I am fine, thank you.",
    "def add(a, b):\n    return a + b\n",
    "What is 12 * 7? The answer is 84.",
    "InternLM2 is a language model that can call tools and run Python code.",
    "Use the calculator tool to compute the result, then answer briefly.",
    '{"name": "calculator", "parameters": {"expression": "12*7"}}',
    "Café, naïve, déjà vu — 你好，世界。",
)


def train_tiny_tokenizer(directory: str | os.PathLike[str], *, vocab_size: int = 400, add_dummy_prefix: bool = True,
                         remove_extra_whitespaces: bool = False, normalization: str = "identity",
                         placeholders: bool = False, corpus: Sequence[str] = TINY_CORPUS) -> Path:
    """Write ``tokenizer.model`` + ``tokenizer_config.json`` to ``directory``; returns the model file.

    With ``placeholders`` the model holds ``[UNUSED_TOKEN_141]``… where the chat tokens go and the config
    renames them, as the released files do; otherwise the chat tokens are pieces of their own.
    """
    import sentencepiece as spm

    from .tokenization import PLACEHOLDERS

    symbols = list(PLACEHOLDERS) if placeholders else list(SPECIAL_TOKENS)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(corpus) * 10), model_writer=buffer, vocab_size=vocab_size, model_type="bpe",
        user_defined_symbols=symbols, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name=normalization, remove_extra_whitespaces=remove_extra_whitespaces,
        add_dummy_prefix=add_dummy_prefix, allow_whitespace_only_pieces=True, minloglevel=2,
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_file = directory / "tokenizer.model"
    model_file.write_bytes(buffer.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=buffer.getvalue())
    added = {"0": "<unk>", "1": "<s>", "2": "</s>"}
    for symbol in symbols:
        added[str(processor.piece_to_id(symbol))] = PLACEHOLDERS.get(symbol, symbol)
    config = {
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer",
                                       "tokenization_internlm2_fast.InternLM2TokenizerFast"]},
        "tokenizer_class": "InternLM2Tokenizer",
        "bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "decode_with_prefix_space": False,
        "added_tokens_decoder": {
            key: {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False, "special": True}
            for key, content in added.items()
        },
        "additional_special_tokens": list(SPECIAL_TOKENS),
        "chat_template": ("{{ bos_token }}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
                          "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
                          "{{ '<|im_start|>assistant\n' }}{% endif %}"),
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return model_file


def tiny_state_dict(config: dict[str, Any], *, seed: int = 0, dtype: torch.dtype = torch.float32,
                    scale: float = 0.3) -> dict[str, torch.Tensor]:
    """Random weights named and shaped as in a released checkpoint for ``config`` (a config.json dict)."""
    generator = torch.Generator().manual_seed(seed)
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    kv_heads, inter = config.get("num_key_value_heads", heads), config["intermediate_size"]
    head_dim, vocab = hidden // heads, config["vocab_size"]
    bias = config.get("bias", True)

    def rand(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).to(dtype)

    def norm() -> torch.Tensor:
        return (1 + 0.1 * torch.randn(hidden, generator=generator)).to(dtype)

    state = {"model.tok_embeddings.weight": rand(vocab, hidden) / scale, "model.norm.weight": norm()}
    if not config.get("tie_word_embeddings", False):
        state["output.weight"] = rand(vocab, hidden)
    rows = (heads + 2 * kv_heads) * head_dim
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        state[prefix + "attention.wqkv.weight"] = rand(rows, hidden)
        state[prefix + "attention.wo.weight"] = rand(hidden, hidden)
        if bias:
            state[prefix + "attention.wqkv.bias"] = rand(rows)
            state[prefix + "attention.wo.bias"] = rand(hidden)
        state[prefix + "feed_forward.w1.weight"] = rand(inter, hidden)
        state[prefix + "feed_forward.w3.weight"] = rand(inter, hidden)
        state[prefix + "feed_forward.w2.weight"] = rand(hidden, inter)
        state[prefix + "attention_norm.weight"] = norm()
        state[prefix + "ffn_norm.weight"] = norm()
    return state


def write_tiny_checkpoint(directory: str | os.PathLike[str], *, heads: int = 4, kv_heads: int = 2,
                          hidden_size: int = 48, layers: int = 2, intermediate_size: int = 96,
                          vocab_size: int = 400, bias: bool = False, max_position_embeddings: int = 256,
                          rope_scaling: dict[str, Any] | None = None, rope_theta: float = 1000000.0,
                          dtype: torch.dtype = torch.float32, shards: int = 1, fmt: str = "safetensors",
                          seed: int = 0, **extra: Any) -> dict[str, torch.Tensor]:
    """Write a random released-format InternLM2 checkpoint to ``directory``; returns its tensors.

    ``shards > 1`` splits the tensors over that many files with an index json; ``fmt`` is ``safetensors``
    or ``bin``. ``rope_scaling`` defaults to the chat models' ``{"type": "dynamic", "factor": 2.0}``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype_name = str(dtype).removeprefix("torch.")
    config: dict[str, Any] = {
        "architectures": ["InternLM2ForCausalLM"],
        "attn_implementation": "eager",
        "auto_map": {"AutoConfig": "configuration_internlm2.InternLM2Config",
                     "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                     "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM"},
        "bias": bias, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2, "hidden_act": "silu",
        "hidden_size": hidden_size, "initializer_range": 0.02, "intermediate_size": intermediate_size,
        "max_position_embeddings": max_position_embeddings, "model_type": "internlm2",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"type": "dynamic", "factor": 2.0} if rope_scaling is None else rope_scaling,
        "rope_theta": rope_theta, "tie_word_embeddings": False, "torch_dtype": dtype_name,
        "transformers_version": "4.41.0", "use_cache": True, "vocab_size": vocab_size, **extra,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (directory / "generation_config.json").write_text(
        # 7 is <|im_end|> in train_tiny_tokenizer's vocabulary, as 92542 is in the released one
        json.dumps({"bos_token_id": 1, "eos_token_id": [2, 7], "pad_token_id": 2}), encoding="utf-8")
    state = tiny_state_dict(config, seed=seed, dtype=dtype)
    names = list(state)
    groups = [names[i::shards] for i in range(shards)]
    suffix = "safetensors" if fmt == "safetensors" else "bin"
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        filename = f"{stem}.{suffix}" if shards == 1 else f"{stem}-{i:05d}-of-{shards:05d}.{suffix}"
        part = {name: state[name] for name in group}
        if fmt == "safetensors":
            from safetensors.torch import save_file

            save_file(part, str(directory / filename), metadata={"format": "pt"})
        else:
            torch.save(part, directory / filename)
        weight_map.update({name: filename for name in group})
    if shards > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                 "weight_map": weight_map}
        (directory / f"{stem}.{suffix}.index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    return state
