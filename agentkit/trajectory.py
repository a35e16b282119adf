"""Trajectory records: one JSON line per run, the input of ``agentkit.training`` and ``agentkit.evals``.

Appends are atomic with respect to other writers (an exclusive ``flock`` around a single
``write`` of the whole line, then ``fsync``), so concurrent runs and crashes never leave a torn
or interleaved line. Readers skip and report a line that is not valid (e.g. a disk filled up).
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from agentkit.messages import Message, Usage

try:  # POSIX only; on other systems appends fall back to O_APPEND semantics alone
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class TrajectoryRecord(BaseModel):
    """Everything about one run that training and evaluation need."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    thread_id: str | None = None
    agent: str
    model: str
    protocol: str | None = None
    tools: list[dict[str, Any]] = Field(default_factory=list)
    messages: list[Message]
    answer: str = ""
    outcome: str
    steps: int = 0
    usage: Usage = Field(default_factory=Usage)
    parse_errors: int = 0
    started_at: float = Field(default_factory=time.time)
    duration_s: float = 0.0
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def tool_calls(self) -> list[Any]:
        return [c for m in self.messages if m.role == "assistant" for c in m.tool_calls]


def append_trajectory(path: str | Path, record: TrajectoryRecord) -> None:
    """Append ``record`` as one line of the JSONL file at ``path`` (created with its parents)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (record.model_dump_json() + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(line)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock


def read_trajectories(path: str | Path, *, strict: bool = False) -> Iterator[TrajectoryRecord]:
    """Yield the records of a trajectory file; invalid lines raise if ``strict`` else are skipped."""
    path = Path(path)
    with path.open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield TrajectoryRecord.model_validate_json(line)
            except ValidationError as exc:
                if strict:
                    raise ValueError(f"{path}:{number}: not a trajectory record: {exc.errors()[0]['msg']}") from None


def atomic_save_figure(figure, path: Path) -> Path:
    """Save a matplotlib figure as PNG so readers see the old image or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        figure.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

