"""AutoGPT: a goal-driven loop of JSON commands (thoughts, reasoning, plan, criticism, command) until ``finish``.

    START → call_model ─┬─ command ─────────────────────────→ run_tools ──→ call_model
                        ├─ a command needs approval → approve ─↗
                        ├─ unparseable JSON ─→ recover ──→ call_model
                        └─ finish / budget ─→ END

The graph is ReAct's: what makes it AutoGPT is the protocol. It keeps going after every successful command
(Lagent's version stopped after the first); only ``finish`` or a budget ends the run.
"""

from __future__ import annotations

from agentkit.agents.react import build_graph

DEFAULT_PROTOCOL = "autogpt"

__all__ = ["DEFAULT_PROTOCOL", "build_graph"]
