"""The web chat UI: ``agentkit ui`` serves one page over a small FastAPI app (streaming, threads, approvals).

Nothing heavy is imported here; FastAPI loads with :func:`create_app`.
"""

from __future__ import annotations

from agentkit._lazy import lazy_exports

_EXPORTS = {
    "create_app": "agentkit.apps.ui.server",
    "ChatService": "agentkit.apps.ui.server",
    "build_chat_app": "agentkit.apps.ui.launch",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
