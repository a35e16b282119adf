"""Customer-service kit: a support agent over a real SQLite database, with approvals and routing to specialists.

``agentkit support init-db PATH`` creates and seeds the database; :func:`create_support_agent` builds the agent;
each run names its customer in the context (``context={"customer_id": 3}``), never in the conversation.
See docs/support.md.
"""

from __future__ import annotations

from agentkit._lazy import lazy_exports

__all__ = ["CUSTOMER_KEY", "SupportDB", "create_support_agent", "init_db", "keyword_router", "model_router"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "CUSTOMER_KEY": "agentkit.apps.support.tools",
    "SupportDB": "agentkit.apps.support.db",
    "init_db": "agentkit.apps.support.db",
    "create_support_agent": "agentkit.apps.support.agent",
    "keyword_router": "agentkit.apps.support.agent",
    "model_router": "agentkit.apps.support.agent",
}, globals())
