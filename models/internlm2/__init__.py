"""InternLM2 without remote code: config, model, tokenizer and exact conversion to and from Llama.

Released InternLM2 / InternLM2-Chat directories (``config.json`` with ``model_type: internlm2``, packed
``wqkv``, safetensors or ``.bin``, sharded or not) load with transformers 5 through the Auto classes once
:mod:`agentkit.models.internlm2.modeling` is imported (``hf:PATH`` does that). Names are exported lazily so
that importing this package (the CLI does, for ``agentkit convert``) costs nothing: torch and transformers
load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name → submodule that defines it
_EXPORTS = {
    "InternLM2Config": "configuration",
    "InternLM2Model": "modeling",
    "InternLM2ForCausalLM": "modeling",
    "InternLM2Tokenizer": "tokenization",
    "load_internlm2_tokenizer": "tokenization",
    "SPECIAL_TOKENS": "tokenization",
    "internlm2_to_llama": "convert",
    "llama_to_internlm2": "convert",
    "pack_wqkv": "weights",
    "unpack_wqkv": "weights",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(f"{__name__}.modeling")  # registers InternLM2 with transformers' Auto classes
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
