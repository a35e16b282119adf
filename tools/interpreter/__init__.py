"""A sandboxed, stateful Python interpreter for agents: a local Jupyter kernel, or E2B in the cloud.

Nothing heavy is imported here; jupyter_client and the E2B SDK load when a session starts.
"""

from __future__ import annotations

from agentkit._lazy import lazy_exports


_EXPORTS = {
    "PythonInterpreter": "agentkit.tools.interpreter.tool",
    "KernelSession": "agentkit.tools.interpreter.kernel",
    "ExecutionResult": "agentkit.tools.interpreter.kernel",
    "KernelError": "agentkit.tools.interpreter.kernel",
    "InterpreterPool": "agentkit.tools.interpreter.pool",
    "default_pool": "agentkit.tools.interpreter.pool",
    "SandboxLimits": "agentkit.tools.interpreter.sandbox",
    "E2BSession": "agentkit.tools.interpreter.e2b",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
