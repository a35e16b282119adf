"""The E2B backend: the same session interface as the local kernel, running in an E2B cloud sandbox (a VM).

Chosen when ``E2B_API_KEY`` is set (backend ``auto``) or asked for (``e2b``). Use it for code you do not trust:
unlike the local kernel it is isolated by a virtual machine. The SDK does the HTTP; this adapter maps its
``Execution`` onto our :class:`~agentkit.tools.interpreter.kernel.ExecutionResult`.
"""

from __future__ import annotations

import base64
import os
import threading
from typing import Any, Callable

from agentkit.errors import ConfigError
from agentkit.tools.interpreter.kernel import ExecutionResult, trim_traceback
from agentkit.tools.io import ImageIO


class E2BSession:
    """One E2B sandbox, created on the first call and killed by :meth:`close`."""

    def __init__(self, timeout: float = 30.0, *, api_key: str | None = None, template: str | None = None,
                 sandbox_lifetime_s: int = 600, sandbox_factory: Callable[[], Any] | None = None):
        self.api_key = api_key or os.environ.get("E2B_API_KEY")
        if not self.api_key and sandbox_factory is None:
            raise ConfigError("the E2B interpreter needs an API key: set E2B_API_KEY (or pass api_key=...), "
                              "or use backend='local'")
        try:
            import e2b_code_interpreter  # noqa: F401
        except ImportError as exc:
            raise ConfigError("the E2B interpreter needs its SDK: pip install 'agentkit[e2b]'") from exc
        self.timeout = timeout
        self.template = template
        self.sandbox_lifetime_s = sandbox_lifetime_s
        self._factory = sandbox_factory or self._create
        self._sandbox: Any = None
        self._lock = threading.Lock()

    def _create(self) -> Any:
        from e2b_code_interpreter import Sandbox

        options: dict[str, Any] = {"api_key": self.api_key, "timeout": self.sandbox_lifetime_s}
        if self.template:
            options["template"] = self.template
        return Sandbox.create(**options)

    def execute(self, code: str, timeout: float | None = None) -> ExecutionResult:
        limit = self.timeout if timeout is None else timeout
        with self._lock:
            notes: list[str] = []
            if self._sandbox is None:
                self._sandbox = self._factory()
            try:
                execution = self._sandbox.run_code(code, timeout=limit)
            except Exception as exc:  # the SDK raises its own TimeoutException / SandboxException types
                name = type(exc).__name__
                if "Timeout" in name:
                    return ExecutionResult(timed_out=True, notes=[f"timed out after {limit:g} s in the E2B sandbox"])
                return ExecutionResult(error=f"the E2B sandbox failed: {name}: {exc}", error_name=name, notes=notes)
        return self._convert(execution, notes)

    @staticmethod
    def _convert(execution: Any, notes: list[str]) -> ExecutionResult:
        result = ExecutionResult(notes=notes, stdout="".join(execution.logs.stdout),
                                 stderr="".join(execution.logs.stderr))
        for item in execution.results:
            if getattr(item, "png", None):
                image = ImageIO(base64.b64decode(item.png), mime_type="image/png")
                image.to_path()
                result.images.append(image)
            elif getattr(item, "is_main_result", False) and item.text is not None:
                result.result = item.text
            elif item.text is not None:
                result.stdout += item.text + "\n"
        if execution.error is not None:
            result.error_name = execution.error.name
            frames = (execution.error.traceback or "").split("\n\n")
            result.error = trim_traceback(frames, execution.error.name, execution.error.value)
        return result

    def close(self) -> None:
        with self._lock:
            sandbox, self._sandbox = self._sandbox, None
        if sandbox is not None:
            try:
                sandbox.kill()
            except Exception:
                pass
