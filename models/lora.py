"""LoRA adapters saved by ``agentkit train``: merging them into a loaded model, and the one agentkit ships.

An adapter directory holds peft's ``adapter_config.json`` + ``adapter_model.safetensors``, the trained
embedding rows of the protocol tokens it added (:data:`ADDED_TOKENS_FILE`) and :data:`ADAPTER_META`, which
says how it was made. The tokenizer is either saved next to it (what a training run writes) or rebuilt
from the base tokenizer plus the ``added_tokens`` listed in the meta file (what a shipped adapter does, so
it carries a few MB of weights and no 2 MB copy of the vocabulary).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError

__all__ = ["ADAPTER_META", "ADDED_TOKENS_FILE", "SHIPPED_ADAPTERS", "apply_adapter", "read_adapter_meta",
           "shipped_adapter"]

#: File next to a saved adapter that says how it was made (kind, added tokens, training settings).
ADAPTER_META = "agentkit-adapter.json"
#: Trained embedding rows of the added tokens (``ids``, ``input_rows``, optionally ``output_rows``).
ADDED_TOKENS_FILE = "added_tokens.safetensors"
#: Adapters installed with agentkit, by name (their directories live in ``agentkit/models/adapters``).
SHIPPED_ADAPTERS: dict[str, str] = {
    "smollm2-135m-tooluse": "the embedded model's tool-use adapter (InternLM2 protocol), made by agentkit train loop",
}


def shipped_adapter(name: str = "smollm2-135m-tooluse") -> Path:
    """The directory of an adapter installed with agentkit."""
    if name not in SHIPPED_ADAPTERS:
        raise ConfigError(f"no shipped adapter {name!r}: agentkit ships {', '.join(SHIPPED_ADAPTERS)}")
    path = Path(__file__).parent / "adapters" / name
    if not (path / "adapter_config.json").is_file():
        raise ConfigError(f"the shipped adapter {name!r} is missing from {path.parent}: reinstall agentkit, "
                          "or use --model embedded-base for the untuned model")
    return path


def read_adapter_meta(adapter: Path) -> dict[str, Any]:
    """The adapter's :data:`ADAPTER_META` (empty for a plain peft adapter)."""
    path = adapter / ADAPTER_META
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON ({exc}): restore it from the training run") from exc


def _adapter_tokenizer(tokenizer: Any, adapter: Path, meta: dict[str, Any]) -> Any:
    """The tokenizer saved with the adapter, else the base one plus the tokens the meta says it added."""
    if (adapter / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        from agentkit.models.hf import _quiet_progress

        with _quiet_progress():
            return AutoTokenizer.from_pretrained(adapter)
    missing = [t for t in meta.get("added_tokens", []) if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    return tokenizer


def _load_rows(model: Any, rows_file: Path) -> None:
    import torch
    from safetensors.torch import load_file

    rows = load_file(str(rows_file))
    ids = rows["ids"]
    if int(ids.max()) >= model.get_input_embeddings().weight.shape[0]:
        raise ConfigError(f"{rows_file} has rows for token ids this tokenizer does not have: keep the tokenizer "
                          "files the training run saved next to the adapter")
    with torch.no_grad():
        inputs = model.get_input_embeddings().weight
        inputs[ids] = rows["input_rows"].to(inputs.dtype)
        head = model.get_output_embeddings()
        if "output_rows" in rows and head is not None and head.weight is not inputs:
            head.weight[ids] = rows["output_rows"].to(head.weight.dtype)


def apply_adapter(model: Any, tokenizer: Any, adapter: str | Path) -> tuple[Any, Any]:
    """Merge the LoRA adapter in ``adapter`` into ``model``; return the merged model and its tokenizer.

    The embeddings grow to the adapter tokenizer's size first, so rows trained for added tokens land on
    matching ids.
    """
    adapter = Path(adapter).expanduser()
    if not (adapter / "adapter_config.json").is_file():
        hint = (" it holds a full checkpoint: load it as hf:" + str(adapter) if (adapter / "config.json").is_file()
                else " pass the directory a training run saved (with adapter_config.json)")
        raise ConfigError(f"{str(adapter)!r} is not a LoRA adapter directory:{hint}")
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ConfigError("loading an adapter needs peft: run pip install 'agentkit[models]'") from exc
    from agentkit.models.hf import _quiet_progress

    meta = read_adapter_meta(adapter)
    tokenizer = _adapter_tokenizer(tokenizer, adapter, meta)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    if (adapter / ADDED_TOKENS_FILE).is_file():
        _load_rows(model, adapter / ADDED_TOKENS_FILE)
    try:
        with _quiet_progress(), warnings.catch_warnings():
            # peft 0.21 calls transformers' deprecated is_gradient_checkpointing: not the user's concern
            warnings.simplefilter("ignore", FutureWarning)
            merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"adapter {str(adapter)!r} does not fit this model: {detail}") from exc
    return merged, tokenizer
