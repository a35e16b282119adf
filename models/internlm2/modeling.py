"""InternLM2 on transformers' Llama modules, loading and saving the released checkpoint layout.

InternLM2 is Llama with other parameter names and a packed ``wqkv`` (see :mod:`.weights`), so the model
*is* ``LlamaForCausalLM``: same attention kernels (SDPA, flash, paged), caches and generation code, and
the same logits as a Llama conversion. The layout difference lives in a checkpoint conversion mapping
registered with transformers 5 (``conversion_mapping`` / ``core_model_loading``): ``from_pretrained``
renames and splits the released tensors as it reads them (safetensors or ``.bin``, sharded or not), and
``save_pretrained`` runs the same mapping backwards, so what it writes is the released layout again.

Importing this module registers the config, models and tokenizer with ``AutoConfig``,
``AutoModel``, ``AutoModelForCausalLM`` and ``AutoTokenizer``: released directories load without
``trust_remote_code`` (their ``auto_map`` is ignored).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter, WeightRenaming
from transformers.models.llama.modeling_llama import LlamaForCausalLM, LlamaModel, LlamaPreTrainedModel

from .configuration import InternLM2Config
from .tokenization import InternLM2Tokenizer
from .weights import OUTPUT, QKV, RENAMES, WQKV, check_checkpoint, pack_wqkv, unpack_wqkv

__all__ = ["InternLM2ForCausalLM", "InternLM2Model", "weight_conversions"]


def _single(tensors: Any) -> torch.Tensor:
    return tensors[0] if isinstance(tensors, (list, tuple)) else tensors


class UnpackWqkv(ConversionOps):
    """Load-time op: one ``wqkv`` (weight or bias) → q, k, v projections, using the config's head counts."""

    def convert(self, input_dict: dict[str, Any], source_patterns: list[str], target_patterns: list[str],
                config: Any = None, full_layer_name: str = "wqkv", **kwargs: Any) -> dict[str, torch.Tensor]:
        (tensors,) = input_dict.values()
        parts = unpack_wqkv(_single(tensors), config.num_attention_heads, config.num_key_value_heads,
                            config.head_dim, name=full_layer_name)
        return dict(zip(target_patterns, parts))

    @property
    def reverse_op(self) -> ConversionOps:
        return PackWqkv()


class PackWqkv(ConversionOps):
    """Save-time op: q, k, v projections → the released ``wqkv``."""

    def convert(self, input_dict: dict[str, Any], source_patterns: list[str], target_patterns: list[str],
                config: Any = None, full_layer_name: str = "wqkv", **kwargs: Any) -> dict[str, torch.Tensor]:
        q, k, v = (_single(input_dict[pattern]) for pattern in source_patterns)
        packed = pack_wqkv(q, k, v, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                           name=full_layer_name)
        return {target_patterns[0]: packed}

    @property
    def reverse_op(self) -> ConversionOps:
        return UnpackWqkv()


def _pattern(fragment: str) -> str:
    return re.escape(fragment.strip("."))


def weight_conversions() -> list[WeightRenaming | WeightConverter]:
    """The released-layout → Llama mapping, in transformers' conversion-mapping terms (reversed on save)."""
    renames: list[WeightRenaming | WeightConverter] = [
        WeightRenaming(source_patterns=_pattern(old), target_patterns=new.strip(".")) for old, new in RENAMES
    ]
    renames.append(WeightRenaming(source_patterns="^" + _pattern(OUTPUT[0]), target_patterns=OUTPUT[1].strip(".")))
    renames.append(WeightConverter(
        source_patterns=_pattern(WQKV),
        target_patterns=[marker.strip(".") for marker in QKV],
        operations=[UnpackWqkv()],
    ))
    return renames


class InternLM2Model(LlamaModel):
    """The decoder stack (Llama's), configured by an :class:`InternLM2Config`."""

    config_class = InternLM2Config
    config: InternLM2Config

    def __init__(self, config: InternLM2Config):
        config.check_supported()
        super().__init__(config)


class InternLM2ForCausalLM(LlamaForCausalLM):
    """InternLM2 / InternLM2-Chat: Llama's causal LM reading and writing the released checkpoint layout."""

    config_class = InternLM2Config
    config: InternLM2Config

    def __init__(self, config: InternLM2Config):
        config.check_supported()
        LlamaPreTrainedModel.__init__(self, config)
        self.model = InternLM2Model(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str] | None, *args: Any,
                        **kwargs: Any) -> InternLM2ForCausalLM:
        """Load a released (or Llama-layout) checkpoint; a local directory is checked first so that a missing
        shard or a ``wqkv`` that does not fit the config fails with a :class:`ConfigError` saying which."""
        if pretrained_model_name_or_path is not None and Path(pretrained_model_name_or_path).is_dir():
            _check_directory(Path(pretrained_model_name_or_path), kwargs.get("config"))
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)


def _check_directory(directory: Path, config: Any) -> None:
    if not isinstance(config, InternLM2Config):
        try:
            raw = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # transformers reports a missing or broken config.json itself
        config = InternLM2Config.from_dict(raw)
    check_checkpoint(directory, config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                     config.hidden_size)


def _register() -> None:
    AutoConfig.register(InternLM2Config.model_type, InternLM2Config, exist_ok=True)
    AutoModel.register(InternLM2Config, InternLM2Model, exist_ok=True)
    AutoModelForCausalLM.register(InternLM2Config, InternLM2ForCausalLM, exist_ok=True)
    AutoTokenizer.register(InternLM2Config, tokenizer_class=InternLM2Tokenizer, exist_ok=True)
    register_checkpoint_conversion_mapping(InternLM2Config.model_type, weight_conversions(), overwrite=True)


_register()
