"""InternLM2: plugin calls and code-interpreter calls in one loop, in InternLM2's chat format.

The model writes ``<|action_start|><|plugin|>`` or ``<|action_start|><|interpreter|>``; the two
kinds run in their own nodes, and results come back as ``environment name=<|plugin|>`` or
``environment name=<|interpreter|>``.

    START → call_model ─┬─ <|plugin|> ──────→ run_plugin ──────→ call_model
                        ├─ <|interpreter|> ─→ run_interpreter ─→ call_model
                        ├─ needs approval ──→ approve ─→ run_plugin | run_interpreter
                        ├─ parse error ─────→ recover ─────────→ call_model
                        └─ answer / budget ─→ END
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from agentkit.agents.nodes import AgentParts, after_model, approve, by_kind, call_model, recover, run_tools
from agentkit.agents.state import AgentState, RunContext

DEFAULT_PROTOCOL = "internlm2"


def build_graph(parts: AgentParts) -> StateGraph:
    graph = StateGraph(AgentState, context_schema=RunContext)
    graph.add_node("call_model", call_model(parts))
    graph.add_node("approve", approve(parts))
    graph.add_node("run_plugin", run_tools(parts, kind="plugin", name="run_plugin"))
    graph.add_node("run_interpreter", run_tools(parts, kind="interpreter", name="run_interpreter"))
    graph.add_node("recover", recover(parts))
    graph.add_edge(START, "call_model")
    graph.add_conditional_edges(
        "call_model", after_model(parts, by_kind), ["run_plugin", "run_interpreter", "approve", "recover", END]
    )
    graph.add_conditional_edges("approve", by_kind, ["run_plugin", "run_interpreter"])
    graph.add_edge("run_plugin", "call_model")
    graph.add_edge("run_interpreter", "call_model")
    graph.add_edge("recover", "call_model")
    return graph
