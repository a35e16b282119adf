"""ReAct: think, act, observe, repeat. Works with any protocol (ReAct text, InternLM2, native tool calls).

    START → call_model ─┬─ tool calls ──────────────────→ run_tools ──→ call_model
                        ├─ a call needs approval → approve ─↗ (interrupt until decided)
                        ├─ parse error ─→ recover ───→ call_model
                        └─ answer / budget ─→ END
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agentkit.agents.nodes import AgentParts, after_model, approve, call_model, recover, run_tools
from agentkit.agents.state import AgentState, RunContext

#: The protocol this pattern uses when the caller names none.
DEFAULT_PROTOCOL = "react"


def build_graph(parts: AgentParts) -> StateGraph:
    graph = StateGraph(AgentState, context_schema=RunContext)
    graph.add_node("call_model", call_model(parts))
    graph.add_node("approve", approve(parts))
    graph.add_node("run_tools", run_tools(parts))
    graph.add_node("recover", recover(parts))
    graph.add_edge(START, "call_model")
    graph.add_conditional_edges("call_model", after_model(parts), ["run_tools", "approve", "recover", END])
    graph.add_edge("approve", "run_tools")
    graph.add_edge("run_tools", "call_model")
    graph.add_edge("recover", "call_model")
    return graph
