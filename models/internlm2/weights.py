"""InternLM2 ⇄ Llama tensor layout, and reading / writing checkpoint shards.

Released InternLM2 checkpoints pack query, key and value into one ``wqkv`` matrix per layer, grouped by KV
head: for each of the ``kv_heads`` groups, ``G = heads / kv_heads`` query heads, then the group's key head,
then its value head (``head_dim`` rows each). Llama keeps three matrices with the heads in order. Both
directions are row permutations, so a conversion is exact (no arithmetic touches a value). The other
parameters only change names (``tok_embeddings`` → ``embed_tokens``, ``feed_forward.w1/w3/w2`` →
``mlp.gate/up/down_proj`` ...).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from agentkit.errors import ConfigError

__all__ = [
    "RENAMES",
    "CheckpointReader",
    "ShardWriter",
    "check_checkpoint",
    "checkpoint_files",
    "internlm2_name",
    "llama_name",
    "pack_wqkv",
    "parse_size",
    "unpack_wqkv",
]

#: InternLM2 name → Llama name, for the parameters that are only renamed (``wqkv`` is split instead).
RENAMES: tuple[tuple[str, str], ...] = (
    ("model.tok_embeddings.", "model.embed_tokens."),
    (".attention.wo.", ".self_attn.o_proj."),
    (".feed_forward.w1.", ".mlp.gate_proj."),
    (".feed_forward.w3.", ".mlp.up_proj."),
    (".feed_forward.w2.", ".mlp.down_proj."),
    (".attention_norm.", ".input_layernorm."),
    (".ffn_norm.", ".post_attention_layernorm."),
)
#: The output head is a top-level name on both sides.
OUTPUT = ("output.", "lm_head.")
WQKV = ".attention.wqkv."
QKV = (".self_attn.q_proj.", ".self_attn.k_proj.", ".self_attn.v_proj.")

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
SAFETENSORS_FILE = "model.safetensors"
BIN_FILE = "pytorch_model.bin"


def _check_heads(heads: int, kv_heads: int, head_dim: int) -> int:
    if heads < 1 or kv_heads < 1 or head_dim < 1 or heads % kv_heads:
        raise ConfigError(f"num_attention_heads {heads} must be a positive multiple of num_key_value_heads "
                          f"{kv_heads} (head_dim {head_dim}): fix config.json")
    return heads // kv_heads


def unpack_wqkv(wqkv: torch.Tensor, heads: int, kv_heads: int, head_dim: int,
                name: str = "wqkv") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split a packed ``wqkv`` weight (or bias) into Llama's q, k and v projections."""
    groups = _check_heads(heads, kv_heads, head_dim)
    rows = (heads + 2 * kv_heads) * head_dim
    if wqkv.dim() not in (1, 2) or wqkv.shape[0] != rows:
        raise ConfigError(
            f"{name} has shape {tuple(wqkv.shape)} but the config's {heads} attention heads and {kv_heads} KV heads "
            f"of size {head_dim} need {rows} rows ((heads + 2 * kv_heads) * head_dim): the config does not match "
            "these weights"
        )
    rest = tuple(wqkv.shape[1:])
    grouped = wqkv.reshape(kv_heads, groups + 2, head_dim, *rest)
    q = grouped[:, :groups].reshape(heads * head_dim, *rest)
    k = grouped[:, groups].reshape(kv_heads * head_dim, *rest)
    v = grouped[:, groups + 1].reshape(kv_heads * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def pack_wqkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, kv_heads: int, head_dim: int,
              name: str = "wqkv") -> torch.Tensor:
    """Pack Llama's q, k and v projections (weights or biases) into InternLM2's ``wqkv``."""
    groups = _check_heads(heads, kv_heads, head_dim)
    expected = {"q": heads * head_dim, "k": kv_heads * head_dim, "v": kv_heads * head_dim}
    for part, tensor in zip("qkv", (q, k, v)):
        if tensor.dim() not in (1, 2) or tensor.shape[0] != expected[part] or tensor.shape[1:] != q.shape[1:]:
            raise ConfigError(
                f"the {part} projection for {name} has shape {tuple(tensor.shape)} but the config's {heads} attention "
                f"heads and {kv_heads} KV heads of size {head_dim} need {expected[part]} rows: the config does not "
                "match these weights"
            )
    rest = tuple(q.shape[1:])
    packed = torch.cat([
        q.reshape(kv_heads, groups, head_dim, *rest),
        k.reshape(kv_heads, 1, head_dim, *rest),
        v.reshape(kv_heads, 1, head_dim, *rest),
    ], dim=1)
    return packed.reshape((heads + 2 * kv_heads) * head_dim, *rest)


def llama_name(name: str) -> str:
    """The Llama name of an InternLM2 parameter that is only renamed (not ``wqkv``)."""
    if name.startswith(OUTPUT[0]):
        return OUTPUT[1] + name[len(OUTPUT[0]):]
    for old, new in RENAMES:
        if old in name:
            return name.replace(old, new, 1)
    return name


def internlm2_name(name: str) -> str:
    """The InternLM2 name of a Llama parameter that is only renamed (not q/k/v)."""
    if name.startswith(OUTPUT[1]):
        return OUTPUT[0] + name[len(OUTPUT[1]):]
    for old, new in RENAMES:
        if new in name:
            return name.replace(new, old, 1)
    return name


def _natural_key(name: str) -> list[Any]:
    """``layers.2`` before ``layers.10``: the order parameters are written in."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_index(directory: Path, index_name: str) -> dict[str, str]:
    path = directory / index_name
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"cannot read the shard index {str(path)!r} ({exc}): it should be JSON with a "
                          "'weight_map' of tensor name to shard file") from exc
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ConfigError(f"the shard index {str(path)!r} has no valid 'weight_map' (tensor name -> shard file)")
    return weight_map


def checkpoint_files(directory: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a checkpoint directory (safetensors preferred), the shards its index names if sharded.

    A shard named in the index but absent is a :class:`ConfigError` naming it (an interrupted download).
    """
    directory = Path(directory)
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        if (directory / index_name).is_file():
            weight_map = _read_index(directory, index_name)
            shards = sorted(set(weight_map.values()))
            missing = [s for s in shards if not (directory / s).is_file()]
            if missing:
                raise ConfigError(
                    f"{index_name} in {str(directory)!r} names {len(missing)} shard(s) that are not there: "
                    f"{', '.join(missing)}; download the missing file(s) or the whole checkpoint again"
                )
            return [directory / s for s in shards]
    for single in (SAFETENSORS_FILE, BIN_FILE):
        if (directory / single).is_file():
            return [directory / single]
    raise ConfigError(f"no weights in {str(directory)!r}: expected {SAFETENSORS_FILE}, {BIN_FILE} or a sharded "
                      f"checkpoint with {SAFETENSORS_INDEX} / {BIN_INDEX}")


def _load_bin(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:  # the pre-zip format cannot be memory-mapped: read it whole
        pass
    except Exception as exc:  # pickle / zip errors come in many types
        raise ConfigError(f"cannot read {str(path)!r} as a PyTorch checkpoint: {exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise ConfigError(f"cannot read {str(path)!r} as a PyTorch checkpoint: {exc}") from exc


class CheckpointReader:
    """Tensors of a checkpoint directory by name, read lazily from its shards (safetensors or ``.bin``).

    safetensors shards are opened with ``safe_open`` (one tensor read at a time); ``.bin`` shards are
    memory-mapped, so neither needs the whole checkpoint in memory.
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)
        self.files = checkpoint_files(self.directory)
        self._where: dict[str, Any] = {}
        for path in self.files:
            if path.suffix == ".safetensors":
                from safetensors import safe_open

                try:
                    handle = safe_open(str(path), framework="pt")
                except Exception as exc:  # safetensors raises its own error types
                    raise ConfigError(f"cannot read {str(path)!r}: {exc}") from exc
                for key in handle.keys():  # noqa: SIM118 - a safe_open handle is not a dict
                    self._where[key] = handle
            else:
                state = _load_bin(path)
                if not isinstance(state, dict):
                    raise ConfigError(f"{str(path)!r} does not hold a state dict of tensors")
                self._where.update({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})

    def names(self) -> list[str]:
        """Every tensor name, in layer order."""
        return sorted(self._where, key=_natural_key)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> torch.Tensor:
        source = self._where[name]
        return source if isinstance(source, torch.Tensor) else source.get_tensor(name)


def _tensor_shapes(path: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Names and shapes in one weight file without reading its data (a ``.bin`` that cannot be memory-mapped,
    i.e. the pre-zip format, is skipped: transformers reads it itself)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            handle = safe_open(str(path), framework="pt")
        except Exception as exc:  # safetensors raises its own error types
            raise ConfigError(f"cannot read {str(path)!r}: {exc}") from exc
        for name in handle.keys():  # noqa: SIM118 - a safe_open handle is not a dict
            yield name, tuple(handle.get_slice(name).get_shape())
        return
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception:  # noqa: BLE001 - not mappable: leave the verdict to transformers
        return
    if isinstance(state, dict):
        for name, tensor in state.items():
            if isinstance(tensor, torch.Tensor):
                yield name, tuple(tensor.shape)


def check_checkpoint(directory: str | os.PathLike[str], heads: int, kv_heads: int, head_dim: int,
                     hidden_size: int) -> None:
    """Fail early, with a :class:`ConfigError`, on a released-layout checkpoint that cannot load.

    Checks that every shard the index names is there and that each ``wqkv`` has the shape the config's
    heads imply (reading shapes only: safetensors headers, memory-mapped ``.bin``).
    """
    files = checkpoint_files(directory)
    rows = (heads + 2 * kv_heads) * head_dim
    for path in files:
        for name, shape in _tensor_shapes(path):
            if WQKV not in name:
                continue
            expected = (rows, hidden_size) if name.endswith(".weight") else (rows,)
            if shape != expected:
                raise ConfigError(
                    f"{name} in {str(path)!r} has shape {shape} but config.json's {heads} attention heads and "
                    f"{kv_heads} KV heads of size {head_dim} (hidden_size {hidden_size}) need {expected}: the "
                    "config does not match these weights"
                )


def parse_size(size: int | str) -> int:
    """Bytes from ``5GB`` / ``500MB`` / ``10KB`` / a plain number (decimal units, like transformers)."""
    if isinstance(size, int):
        value = size
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", str(size).upper())
        if not match:
            raise ConfigError(f"cannot read shard size {size!r}: write it like 5GB, 500MB or a number of bytes")
        number, unit = float(match.group(1)), match.group(2).rstrip("B")
        scale = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
                 "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}.get(unit)
        if scale is None:
            raise ConfigError(f"cannot read shard size {size!r}: write it like 5GB, 500MB or a number of bytes")
        value = int(number * scale)
    if value < 1:
        raise ConfigError(f"shard size must be positive, got {size!r}")
    return value


class ShardWriter:
    """Writes tensors into safetensors shards of at most ``max_shard_size`` bytes, with an index when several.

    Shards get their final ``model-0000i-of-0000N`` names in :meth:`close`, once N is known; a single
    shard is written as ``model.safetensors`` with no index, as transformers does.
    """

    def __init__(self, directory: Path, max_shard_size: int | str = "5GB"):
        self.directory = directory
        self.limit = parse_size(max_shard_size)
        self.pending: dict[str, torch.Tensor] = {}
        self.pending_bytes = 0
        self.written: list[tuple[Path, list[str]]] = []
        self.names: set[str] = set()
        self.total = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self.names:
            raise ConfigError(f"two source tensors map to {name!r}: the checkpoint mixes InternLM2 and Llama names")
        self.names.add(name)
        tensor = tensor.contiguous()
        size = tensor.numel() * tensor.element_size()
        if tensor.untyped_storage().nbytes() != size:  # a view into a larger buffer cannot be saved as is
            tensor = tensor.clone()
        if self.pending and self.pending_bytes + size > self.limit:
            self._flush()
        self.pending[name] = tensor
        self.pending_bytes += size
        self.total += size

    def _flush(self) -> None:
        from safetensors.torch import save_file

        path = self.directory / f"shard-{len(self.written) + 1:05d}.safetensors.partial"
        save_file(self.pending, str(path), metadata={"format": "pt"})
        self.written.append((path, list(self.pending)))
        self.pending, self.pending_bytes = {}, 0

    def close(self) -> list[Path]:
        """Write what is left and give every shard its final name; returns the shard paths."""
        if self.pending or not self.written:
            self._flush()
        count = len(self.written)
        if count == 1:
            final = self.directory / SAFETENSORS_FILE
            self.written[0][0].rename(final)
            return [final]
        weight_map: dict[str, str] = {}
        paths = []
        for i, (path, names) in enumerate(self.written, start=1):
            final = self.directory / f"model-{i:05d}-of-{count:05d}.safetensors"
            path.rename(final)
            paths.append(final)
            weight_map.update({name: final.name for name in names})
        index = {"metadata": {"total_size": self.total}, "weight_map": dict(sorted(weight_map.items()))}
        (self.directory / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
        return paths


def iter_llama_tensors(reader: CheckpointReader, heads: int, kv_heads: int,
                       head_dim: int) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a released InternLM2 checkpoint, named and laid out as Llama's."""
    for name in reader.names():
        if WQKV in name:
            prefix, suffix = name.split(WQKV, 1)
            parts = unpack_wqkv(reader.get(name), heads, kv_heads, head_dim, name=name)
            for marker, tensor in zip(QKV, parts):
                yield prefix + marker + suffix, tensor
        else:
            yield llama_name(name), reader.get(name)


def iter_internlm2_tensors(reader: CheckpointReader, heads: int, kv_heads: int,
                           head_dim: int) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors of a Llama checkpoint, named and packed as released InternLM2 checkpoints are."""
    packed: set[str] = set()
    for name in reader.names():
        marker = next((m for m in QKV if m in name), None)
        if marker is None:
            if not name.endswith("rotary_emb.inv_freq"):  # a buffer some old Llama checkpoints saved
                yield internlm2_name(name), reader.get(name)
            continue
        prefix, suffix = name.split(marker, 1)
        target = prefix + WQKV + suffix
        if target in packed:
            continue
        packed.add(target)
        sources = [prefix + m + suffix for m in QKV]
        missing = [s for s in sources if s not in reader]
        if missing:
            raise ConfigError(f"{', '.join(missing)} missing from {str(reader.directory)!r}: q, k and v projections "
                              "must all be present to pack wqkv")
        yield target, pack_wqkv(*(reader.get(s) for s in sources), heads, kv_heads, head_dim, name=target)
