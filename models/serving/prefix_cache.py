"""Keys and values of prompt prefixes, reused across requests (automatic prefix caching, as vLLM calls it).

Chat and agent prompts repeat their beginning: the system prompt, the tool list, and in an agent's
later turns the whole conversation so far. The engine prefills such a prefix once, keeps its
per-layer keys and values here, and prefills only each prompt's remainder on top of them.

Prefixes are whole blocks of ``block`` tokens, so that prompts sharing a system prompt but not their
first words meet on the same entry. An entry is found by a hash chained over its blocks and then
compared token by token, so a hash collision can only miss, never serve another prompt's cache.
Entries are evicted least recently used first, to keep at most ``max_tokens`` cached tokens.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["CachedPrefix", "PrefixCache"]


@dataclass
class CachedPrefix:
    """One prefix: its tokens and, per layer, keys and values of shape ``[1, kv_heads, len(ids), head_dim]``."""

    ids: tuple[int, ...]
    layers: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def tokens(self) -> int:
        return len(self.ids)


class PrefixCache:
    """Prefix entries keyed by chained block hashes, least recently used evicted first (see the module docstring)."""

    def __init__(self, max_tokens: int, block: int = 8):
        if block < 1:
            raise ValueError(f"block must be at least 1, got {block}")
        self.max_tokens = max_tokens
        self.block = block
        self._entries: OrderedDict[int, CachedPrefix] = OrderedDict()
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cached_tokens(self) -> int:
        return self._tokens

    def block_keys(self, ids: Sequence[int], limit: int) -> list[int]:
        """The chained hash of every whole block within the first ``limit`` tokens of ``ids``."""
        keys, key = [], 0
        for start in range(0, limit - self.block + 1, self.block):
            key = hash((key, tuple(ids[start:start + self.block])))
            keys.append(key)
        return keys

    def longest(self, ids: Sequence[int], keys: list[int]) -> CachedPrefix | None:
        """The longest stored prefix of ``ids`` among the block ``keys`` (marked recently used), or ``None``."""
        for n in range(len(keys), 0, -1):
            entry = self._entries.get(keys[n - 1])
            if entry is not None and entry.ids == tuple(ids[:n * self.block]):
                self._entries.move_to_end(keys[n - 1])
                return entry
        return None

    def put(self, key: int, entry: CachedPrefix) -> bool:
        """Store ``entry`` under its last block key, evicting old entries to fit; ``False`` if it can never fit."""
        if entry.tokens > self.max_tokens:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self._tokens -= old.tokens
        while self._entries and self._tokens + entry.tokens > self.max_tokens:
            _, evicted = self._entries.popitem(last=False)
            self._tokens -= evicted.tokens
        self._entries[key] = entry
        self._tokens += entry.tokens
        return True

    def clear(self) -> None:
        self._entries.clear()
        self._tokens = 0
