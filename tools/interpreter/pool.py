"""A bounded pool of kernel sessions keyed by id, so many conversations can each have their own state.

At most ``max_sessions`` kernels live at once. Asking for a new session when the pool is full closes the session
idle the longest; when every session is busy, the caller waits (up to ``wait_timeout``) rather than starting more
kernels than the machine can hold. Sessions idle longer than ``idle_timeout`` are closed on the next request.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable

from agentkit.tools.interpreter.kernel import KernelError, KernelSession


@dataclass
class _Entry:
    session: KernelSession
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0


class InterpreterPool:
    def __init__(self, max_sessions: int = 16, idle_timeout: float = 600.0, wait_timeout: float = 120.0,
                 factory: Callable[[], KernelSession] | None = None, **session_options: Any):
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.wait_timeout = wait_timeout
        self._factory = factory or (lambda: KernelSession(**session_options))
        self._entries: dict[str, _Entry] = {}
        self._cond = threading.Condition()
        self._reserved = 0

    def __len__(self) -> int:
        return len(self._entries)

    @contextmanager
    def session(self, session_id: str, factory: Callable[[], Any] | None = None) -> Iterator[KernelSession]:
        """The session for ``session_id`` (made on first use, by ``factory`` if given), held busy in the block."""
        entry = self._acquire(session_id, factory or self._factory)
        try:
            yield entry.session
        finally:
            with self._cond:
                entry.busy -= 1
                entry.last_used = time.monotonic()
                self._cond.notify_all()

    def _acquire(self, session_id: str, factory: Callable[[], Any]) -> _Entry:
        deadline = time.monotonic() + self.wait_timeout
        to_close: list[KernelSession] = []
        with self._cond:
            while True:
                self._expire(to_close)
                entry = self._entries.get(session_id)
                if entry is not None:
                    entry.busy += 1
                    break
                if len(self._entries) + self._reserved < self.max_sessions:
                    self._reserved += 1
                    entry = None
                    break
                idle = [(e.last_used, sid) for sid, e in self._entries.items() if not e.busy]
                if idle:
                    _, victim = min(idle)
                    to_close.append(self._entries.pop(victim).session)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KernelError(f"all {self.max_sessions} interpreter sessions are busy; try again later "
                                      "or create the pool with a larger max_sessions")
                self._cond.wait(remaining)
        for session in to_close:
            session.close()
        if entry is not None:
            return entry
        try:
            session = factory()
        except BaseException:
            with self._cond:
                self._reserved -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._reserved -= 1
            entry = self._entries.setdefault(session_id, _Entry(session))
            entry.busy += 1
        if entry.session is not session:
            session.close()
        return entry

    def _expire(self, to_close: list[KernelSession]) -> None:
        now = time.monotonic()
        for sid, entry in list(self._entries.items()):
            if not entry.busy and now - entry.last_used > self.idle_timeout:
                to_close.append(self._entries.pop(sid).session)

    def release(self, session_id: str) -> None:
        """Close ``session_id``'s kernel now (a later request for the id starts a fresh one)."""
        with self._cond:
            entry = self._entries.pop(session_id, None)
            self._cond.notify_all()
        if entry is not None:
            entry.session.close()

    def close(self) -> None:
        with self._cond:
            entries, self._entries = list(self._entries.values()), {}
            self._cond.notify_all()
        for entry in entries:
            entry.session.close()


_default: InterpreterPool | None = None
_default_lock = threading.Lock()


def default_pool() -> InterpreterPool:
    """The process-wide pool the interpreter tool uses unless given one; closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            _default = InterpreterPool()
            atexit.register(_default.close)
        return _default
