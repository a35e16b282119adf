"""Checkpointers: where threads persist. SQLite in the user data dir by default, in-memory for tests.

Both are LangGraph's own savers; agentkit adds only a serializer that knows its message types
(so checkpoints load without LangGraph's "unregistered type" path) and a WAL-mode SQLite
connection, which survives a killed process and lets another process read the thread.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Literal, Union

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


def sqlite_checkpointer(path: str | Path | None = None) -> BaseCheckpointSaver:
    """A LangGraph ``SqliteSaver`` on ``path`` (default: :func:`default_checkpoint_path`)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(path) if path is not None else default_checkpoint_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(f"cannot open checkpoint database {str(path)!r} ({exc}): pass a writable path") from None
    saver = SqliteSaver(conn, serde=serializer())
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
