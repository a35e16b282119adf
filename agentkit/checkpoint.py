"""Checkpointers: where threads persist. SQLite in the user data dir by default, in-memory for tests.

Both are LangGraph's own savers; agentkit adds only a serializer that knows its message types
(so checkpoints load without LangGraph's "unregistered type" path) and a WAL-mode SQLite
connection, which survives a killed process and lets another process read the thread.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal, Union

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from agentkit.errors import ConfigError

CheckpointerSpec = Union[BaseCheckpointSaver, str, Path, Literal["memory", "sqlite", "none"], None]

#: agentkit types stored in checkpoints.
_ALLOWED_TYPES = [
    ("agentkit.messages", name)
    for name in ("Message", "ToolCall", "Usage", "TextPart", "ImagePart", "AudioPart", "FilePart")
]


def serializer() -> JsonPlusSerializer:
    return JsonPlusSerializer(allowed_msgpack_modules=_ALLOWED_TYPES)


def default_checkpoint_path() -> Path:
    """``$AGENTKIT_HOME/checkpoints.sqlite``, else the platform's user data dir."""
    home = os.environ.get("AGENTKIT_HOME")
    if home:
        return Path(home) / "checkpoints.sqlite"
    from platformdirs import user_data_dir

    return Path(user_data_dir("agentkit")) / "checkpoints.sqlite"


@functools.cache
def _sqlite_saver_class() -> type:
    from langgraph.checkpoint.sqlite import SqliteSaver

    class SqliteCheckpointer(SqliteSaver):
        """LangGraph's ``SqliteSaver`` that async runs can use too: its async methods run the sync ones in a
        worker thread (the saver serialises access to its connection with a lock). LangGraph's own
        ``AsyncSqliteSaver`` needs aiosqlite and a connection bound to one event loop, so an agent used from
        both ``run`` and ``arun`` would need two savers on one file."""

        async def aget_tuple(self, config: Any) -> Any:
            return await asyncio.to_thread(self.get_tuple, config)

        async def alist(self, config: Any, *, filter: dict[str, Any] | None = None, before: Any = None,
                        limit: int | None = None) -> AsyncIterator[Any]:
            found = await asyncio.to_thread(lambda: list(self.list(config, filter=filter, before=before,
                                                                   limit=limit)))
            for item in found:
                yield item

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

        async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

        async def adelete_thread(self, thread_id: str) -> None:
            await asyncio.to_thread(self.delete_thread, thread_id)

    return SqliteCheckpointer


def sqlite_checkpointer(path: str | Path | None = None) -> BaseCheckpointSaver:
    """A LangGraph ``SqliteSaver`` on ``path`` (default: :func:`default_checkpoint_path`), usable by sync and
    async runs alike."""
    path = Path(path) if path is not None else default_checkpoint_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open checkpoint database {str(path)!r} ({exc}): pass a writable path") from None
    saver = _sqlite_saver_class()(conn, serde=serializer())
    saver.setup()
    return saver


def memory_checkpointer() -> BaseCheckpointSaver:
    return InMemorySaver(serde=serializer())


def resolve_checkpointer(spec: CheckpointerSpec) -> BaseCheckpointSaver | None:
    """``"sqlite"`` (default file), ``"memory"``, ``"none"``/``None``, a path, or a saver instance."""
    if spec is None or spec == "none":
        return None
    if isinstance(spec, BaseCheckpointSaver):
        return spec
    if spec == "memory":
        return memory_checkpointer()
    if spec == "sqlite":
        return sqlite_checkpointer()
    if isinstance(spec, (str, Path)):
        return sqlite_checkpointer(spec)
    raise ConfigError(
        f"cannot use {spec!r} as a checkpointer: pass 'sqlite', 'memory', 'none', a file path or a LangGraph saver"
    )
