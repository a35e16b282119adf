"""What the chat page reads: threads found in the checkpointer, and messages as plain JSON.

The page never sees local paths: an image a tool saved in the artifact store is shown by its content-hash
name under ``/api/artifacts/``; anything outside the store is named, not served.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from agentkit.messages import AudioPart, FilePart, ImagePart, Message, TextPart, ToolCall

ARTIFACT_ROUTE = "/api/artifacts/"
TITLE_CHARS = 60


def artifact_url(url: str, artifact_dirs: Sequence[Path]) -> str | None:
    """The page's URL for an image a message refers to, or ``None`` when it is not ours to serve."""
    if url.startswith(("data:image/", "http://", "https://")):
        return url
    text = url[len("file://"):] if url.startswith("file://") else url
    try:
        path = Path(text).resolve()
    except (OSError, ValueError):
        return None
    if any(path.parent == root for root in artifact_dirs) and path.is_file():
        return ARTIFACT_ROUTE + path.name
    return None


def call_view(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "name": call.name, "arguments": call.arguments, "kind": call.kind}


def message_view(message: Message, artifact_dirs: Sequence[Path]) -> dict[str, Any]:
    """One message for the page: its text, its calls, its images (as URLs) and files (as names)."""
    texts: list[str] = []
    images: list[str] = []
    files: list[str] = []
    if isinstance(message.content, str):
        texts.append(message.content)
    else:
        for part in message.content:
            if isinstance(part, TextPart):
                texts.append(part.text)
            elif isinstance(part, ImagePart):
                url = artifact_url(part.url, artifact_dirs)
                if url:
                    images.append(url)
                else:
                    files.append(Path(part.url).name or part.url)
            elif isinstance(part, (FilePart, AudioPart)):
                where = part.path if isinstance(part, FilePart) else part.url
                files.append(getattr(part, "name", None) or Path(where).name)
    return {
        "role": message.role,
        "text": "\n".join(t for t in texts if t),
        "tool_calls": [call_view(c) for c in message.tool_calls],
        "tool_name": message.meta.get("tool_name"),
        "error": bool(message.meta.get("error")),
        "parse_error": message.meta.get("parse_error"),
        "images": images,
        "files": files,
    }


def messages_view(messages: Iterable[Message], artifact_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    return [message_view(m, artifact_dirs) for m in messages if m.role != "system"]


def thread_title(messages: Sequence[Message]) -> str:
    """The thread's first question, cut short: what a person recognises it by."""
    first = next((m.text for m in messages if m.role == "user" and m.text.strip()), "")
    line = " ".join(first.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def thread_ids(checkpointer: Any, limit: int = 100) -> list[str]:
    """Thread ids in the checkpointer, most recently written first.

    LangGraph checkpoint ids sort by time, so a thread's largest id dates its last step. SQLite is asked
    directly (one grouped query); other savers are walked with ``list``."""
    conn = getattr(checkpointer, "conn", None)
    if isinstance(conn, sqlite3.Connection):
        lock = getattr(checkpointer, "lock", None)
        query = ("SELECT thread_id FROM checkpoints WHERE checkpoint_ns = '' GROUP BY thread_id "
                 "ORDER BY MAX(checkpoint_id) DESC LIMIT ?")
        if lock is not None:
            with lock:
                rows = conn.execute(query, (limit,)).fetchall()
        else:
            rows = conn.execute(query, (limit,)).fetchall()
        return [str(row[0]) for row in rows]
    latest: dict[str, str] = {}
    for item in checkpointer.list(None):
        configurable = item.config.get("configurable", {})
        if configurable.get("checkpoint_ns", ""):
            continue
        thread, checkpoint = str(configurable.get("thread_id")), str(configurable.get("checkpoint_id", ""))
        latest[thread] = max(latest.get(thread, ""), checkpoint)
    return sorted(latest, key=latest.__getitem__, reverse=True)[:limit]
