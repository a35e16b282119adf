"""The ``python_interpreter`` tool: a stateful Python session the model sends code to.

One tool instance is one session: variables, imports and files persist across calls until :meth:`close`. With
``per_thread=True`` it is one session per agent thread instead (the thread comes from the run's context), so
users of one server, each in their own thread, do not see each other's variables. The model's
``<|interpreter|>`` actions (InternLM2) and ``python_interpreter`` calls (other protocols) both land here.
"""

from __future__ import annotations

import os
import uuid
import weakref
from typing import Any, Literal

from agentkit.errors import ConfigError
from agentkit.messages import INTERPRETER_TOOL_NAME
from agentkit.toolspec import ToolError, ToolOutput
from agentkit.tools.base import BaseTool

Backend = Literal["auto", "local", "e2b"]

DESCRIPTION = (
    "Run Python code in a stateful Jupyter session: variables and imports persist between calls. Print what you "
    "need to see; the value of the last line is shown too; matplotlib plots come back as images."
)


def choose_backend(backend: Backend) -> str:
    """``auto`` means E2B when ``E2B_API_KEY`` is set, else the local kernel."""
    if backend not in ("auto", "local", "e2b"):
        raise ConfigError(f"unknown interpreter backend {backend!r}: use 'auto', 'local' or 'e2b'")
    if backend == "auto":
        return "e2b" if os.environ.get("E2B_API_KEY") else "local"
    return backend


class PythonInterpreter(BaseTool):
    name = INTERPRETER_TOOL_NAME
    description = DESCRIPTION
    kind = "interpreter"
    timeout = None  # the session enforces its own limit and can really stop the code

    def __init__(self, backend: Backend = "auto", *, timeout_s: float = 30.0, pool: Any = None,
                 max_output_chars: int = 4000, limits: Any = None, workdir: str | None = None,
                 e2b_options: dict[str, Any] | None = None, per_thread: bool = False, **options: Any):
        super().__init__(**options)
        self.backend = choose_backend(backend)
        if per_thread and self.backend == "e2b":
            raise ConfigError("per_thread sessions need the local backend: an E2B sandbox is one session per tool")
        self.per_thread = per_thread
        self._thread_sessions: set[str] = set()  # pool ids of the per-thread sessions, released on close
        self.timeout_s = timeout_s
        self.max_output_chars = max_output_chars
        self.session_id = uuid.uuid4().hex
        self._limits, self._workdir = limits, workdir
        self._e2b_options = e2b_options or {}
        self._pool = pool
        self._e2b: Any = None
        if self.backend == "e2b":
            from agentkit.tools.interpreter.e2b import E2BSession

            self._e2b = E2BSession(timeout=timeout_s, **self._e2b_options)  # fails fast without a key
        self._finalizer = weakref.finalize(self, _release, self._pool, self.session_id, self._e2b,
                                           self._thread_sessions)

    def _pool_id(self) -> str:
        """This call's session: the tool's own, or with ``per_thread`` the one of the run's thread."""
        if not self.per_thread:
            return self.session_id
        from agentkit.agents.state import run_context

        context = run_context()
        thread = context.thread_id if context is not None else None
        if thread is None:
            return self.session_id
        key = f"{self.session_id}/{thread}"
        self._thread_sessions.add(key)
        return key

    def _make_session(self) -> Any:
        from agentkit.tools.interpreter.kernel import KernelSession

        return KernelSession(workdir=self._workdir, limits=self._limits, timeout=self.timeout_s,
                             max_output_chars=self.max_output_chars)

    def run(self, code: str) -> Any:
        """Run ``code``; the full :class:`~agentkit.tools.interpreter.kernel.ExecutionResult`."""
        if self._e2b is not None:
            return self._e2b.execute(code)
        if self._pool is None:
            from agentkit.tools.interpreter.pool import default_pool

            self._pool = default_pool()
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _release, self._pool, self.session_id, None,
                                               self._thread_sessions)
        with self._pool.session(self._pool_id(), self._make_session) as session:
            return session.execute(code, self.timeout_s)

    def apply(self, code: str) -> ToolOutput:
        """Run Python code.

        Args:
            code: the Python source to run, e.g. "import math\\nprint(math.comb(10, 3))".
        """
        result = self.run(_strip_fence(code))
        if not result.ok:  # the model reads the same text either way; the run records the call as failed
            raise ToolError(result.text(self.max_output_chars))
        return result.content(self.max_output_chars)

    def close(self) -> None:
        """Free the kernel now; the next call starts a fresh session."""
        _release(self._pool, self.session_id, self._e2b, self._thread_sessions)
        self.session_id = uuid.uuid4().hex

    def __enter__(self) -> PythonInterpreter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _release(pool: Any, session_id: str, e2b: Any, thread_sessions: set[str] | None = None) -> None:
    if e2b is not None:
        e2b.close()
    if pool is not None:
        for pool_id in [session_id, *sorted(thread_sessions or ())]:
            pool.release(pool_id)
    if thread_sessions:
        thread_sessions.clear()


def _strip_fence(code: str) -> str:
    """Models often wrap code in a markdown fence even where the protocol already took it out."""
    text = code.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    return text
