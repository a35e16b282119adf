"""Exact conversion of checkpoint directories between InternLM2's released layout and Llama's.

``internlm2_to_llama`` gives a directory that plain transformers (or any Llama runtime) loads as
``LlamaForCausalLM`` with a ``tokenizer.json``; ``llama_to_internlm2`` gives back the released layout.
Tensors are only renamed and their rows permuted (``wqkv`` ⇄ q/k/v), never cast, so a round trip returns
identical tensors. Weights are read shard by shard (safetensors or ``.bin``, sharded or not) and written as
sharded safetensors; the output appears only when complete (written to a hidden directory beside it, then
renamed), so an interrupted conversion leaves nothing behind. torch and transformers are imported once the
source directory has been checked, so a wrong path fails at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError

__all__ = ["internlm2_config", "internlm2_to_llama", "llama_config", "llama_to_internlm2"]

#: Files carried over unchanged (when present): the tokenizer model and generation defaults.
COPIED_FILES = ("tokenizer.model", "special_tokens_map.json", "added_tokens.json", "generation_config.json",
                "chat_template.jinja", "chat_template.json")
#: Architecture fields both configs share, copied with the values the source config *means* (its class
#: defaults filled in), because InternLM2's and Llama's defaults differ (e.g. ``bias`` is on by default).
SHARED_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                 "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
                 "use_cache", "pad_token_id", "bos_token_id", "eos_token_id", "tie_word_embeddings")
#: Keys of a released InternLM2 config.json that a Llama config must not carry.
INTERNLM2_ONLY = ("auto_map", "attn_implementation", "bias", "rope_parameters", "rope_scaling", "rope_theta",
                  "architectures", "model_type", "_name_or_path", "transformers_version")
#: Keys of a Llama config.json that InternLM2's does not have (or names differently).
LLAMA_ONLY = ("attention_bias", "mlp_bias", "head_dim", "pretraining_tp", "attention_dropout", "rope_parameters",
              "rope_scaling", "rope_theta", "architectures", "model_type", "_name_or_path", "transformers_version")
#: tokenizer_config.json keys that only the remote tokenizer code reads.
REMOTE_TOKENIZER_KEYS = ("auto_map", "decode_with_prefix_space", "sp_model_kwargs", "tokenizer_file")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{str(path)!r} should hold a JSON object")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _source_config(src: Path, model_type: str, command: str) -> dict[str, Any]:
    if not src.is_dir():
        raise ConfigError(f"{str(src)!r} is not a checkpoint directory: pass the folder holding config.json")
    if not (src / "config.json").is_file():
        raise ConfigError(f"{str(src)!r} has no config.json: pass a transformers checkpoint directory")
    config = _read_json(src / "config.json")
    found = config.get("model_type")
    if found != model_type:
        hint = {"internlm2": "internlm2-to-llama", "llama": "llama-to-internlm2"}.get(found)
        other = f"; use '{hint}' for it" if hint and hint != command else ""
        raise ConfigError(f"{str(src / 'config.json')!r} has model_type {found!r}, not {model_type!r}: "
                          f"'{command}' converts {model_type} checkpoints{other}")
    return config


def llama_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Llama ``config.json`` for a released InternLM2 one (rope scaling and head counts preserved)."""
    from .configuration import InternLM2Config

    parsed = InternLM2Config.from_dict(config)
    parsed.check_supported()
    out = {k: v for k, v in config.items() if k not in INTERNLM2_ONLY}
    out.update({field: getattr(parsed, field) for field in SHARED_FIELDS})
    out.update(
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        attention_bias=bool(parsed.bias),
        mlp_bias=False,
        head_dim=parsed.head_dim,
        rope_theta=parsed.rope_theta,
        rope_scaling=parsed.released_rope_scaling(),
    )
    return dict(sorted(out.items()))


def internlm2_config(config: dict[str, Any]) -> dict[str, Any]:
    """A released-style InternLM2 ``config.json`` for a Llama one, refusing what InternLM2 cannot express."""
    from transformers import LlamaConfig

    from .configuration import InternLM2Config, rope_parameters_from

    try:
        parsed = LlamaConfig.from_dict(config)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"the Llama config.json cannot be read: {exc}") from exc
    if parsed.mlp_bias:
        raise ConfigError("this Llama model has biases in its MLP, which InternLM2 does not have: it cannot be "
                          "converted")
    derived = parsed.hidden_size // parsed.num_attention_heads
    if parsed.head_dim != derived:
        raise ConfigError(f"this Llama model has head_dim {parsed.head_dim}, but InternLM2 requires hidden_size / "
                          f"num_attention_heads = {derived}: it cannot be converted")
    rope = dict(parsed.rope_parameters or {})
    params = rope_parameters_from(rope, rope.get("rope_theta", 10000.0))
    converted = InternLM2Config(**{field: getattr(parsed, field) for field in SHARED_FIELDS},
                                bias=bool(parsed.attention_bias), rope_parameters=params)
    converted.check_supported()
    out = {k: v for k, v in config.items() if k not in LLAMA_ONLY}
    out.update({field: getattr(converted, field) for field in SHARED_FIELDS})
    out.update(
        architectures=["InternLM2ForCausalLM"],
        model_type="internlm2",
        bias=bool(converted.bias),
        rope_theta=converted.rope_theta,
        rope_scaling=converted.released_rope_scaling(),
    )
    return dict(sorted(out.items()))


def _check_target(dst: Path, src: Path) -> None:
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"the output {str(dst)!r} must be a new directory outside the source {str(src)!r}")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise ConfigError(f"{str(dst)!r} already exists: pick a new output directory (or remove that one first)")


@contextlib.contextmanager
def _atomic_directory(dst: Path, src: Path) -> Iterator[Path]:
    """A hidden directory beside ``dst`` that becomes ``dst`` when the block succeeds (removed if it fails)."""
    _check_target(dst, src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary directory
        if dst.exists():
            dst.rmdir()  # empty, checked above
        os.replace(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_files(src: Path, out: Path) -> None:
    for name in COPIED_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)


def _llama_tokenizer(src: Path, out: Path) -> None:
    """``tokenizer.json`` + a remote-code-free ``tokenizer_config.json``, loadable by plain transformers."""
    if not (src / "tokenizer.model").is_file():
        return
    from .tokenization import load_internlm2_tokenizer, serialize_added_tokens

    tokenizer = load_internlm2_tokenizer(src)
    tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"))
    config = _read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}
    for key in REMOTE_TOKENIZER_KEYS:
        config.pop(key, None)
    config.update(
        tokenizer_class="PreTrainedTokenizerFast",
        bos_token=tokenizer.bos_token, eos_token=tokenizer.eos_token,
        unk_token=tokenizer.unk_token, pad_token=tokenizer.pad_token,
        added_tokens_decoder=serialize_added_tokens(tokenizer.added_tokens_decoder),
    )
    _write_json(out / "tokenizer_config.json", config)


def _internlm2_tokenizer(src: Path, out: Path) -> None:
    """The tokenizer files as they are, with tokenizer_config.json naming the InternLM2 tokenizer class."""
    if (src / "tokenizer.json").is_file():
        shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")
    if (src / "tokenizer_config.json").is_file():
        config = _read_json(src / "tokenizer_config.json")
        if (src / "tokenizer.model").is_file():
            config["tokenizer_class"] = "InternLM2Tokenizer"
        _write_json(out / "tokenizer_config.json", config)


def _convert(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, to_llama: bool,
             max_shard_size: int | str) -> Path:
    source, target = Path(src).expanduser(), Path(dst).expanduser()
    command = "internlm2-to-llama" if to_llama else "llama-to-internlm2"
    config = _source_config(source, "internlm2" if to_llama else "llama", command)
    _check_target(target, source)
    from .weights import CheckpointReader, ShardWriter, iter_internlm2_tensors, iter_llama_tensors, parse_size

    new_config = llama_config(config) if to_llama else internlm2_config(config)
    heads, kv_heads = new_config["num_attention_heads"], new_config["num_key_value_heads"]
    head_dim = new_config["hidden_size"] // heads
    parse_size(max_shard_size)  # reject a bad size before any work
    reader = CheckpointReader(source)
    tensors = (iter_llama_tensors if to_llama else iter_internlm2_tensors)(reader, heads, kv_heads, head_dim)
    with _atomic_directory(target, source) as out:
        writer = ShardWriter(out, max_shard_size)
        for name, tensor in tensors:
            writer.add(name, tensor)
        writer.close()
        _write_json(out / "config.json", new_config)
        _copy_files(source, out)
        (_llama_tokenizer if to_llama else _internlm2_tokenizer)(source, out)
    return target


def internlm2_to_llama(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                       max_shard_size: int | str = "5GB") -> Path:
    """Write a Llama-layout copy of the released InternLM2 checkpoint ``src`` to the new directory ``dst``.

    ``wqkv`` is split into q/k/v, other tensors renamed; config, tokenizer (as ``tokenizer.json``) and
    generation defaults come along. Returns ``dst``.
    """
    return _convert(src, dst, to_llama=True, max_shard_size=max_shard_size)


def llama_to_internlm2(src: str | os.PathLike[str], dst: str | os.PathLike[str], *,
                       max_shard_size: int | str = "5GB") -> Path:
    """Write the Llama checkpoint ``src`` in InternLM2's released layout to the new directory ``dst``.

    q/k/v are packed into ``wqkv``, other tensors renamed, the config rewritten with InternLM2's field names.
    Returns ``dst``.
    """
    return _convert(src, dst, to_llama=False, max_shard_size=max_shard_size)
