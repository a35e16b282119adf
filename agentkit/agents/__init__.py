"""Agent patterns, each one file declaring a LangGraph graph from the shared nodes in ``nodes.py``.

``create_agent("react" | "internlm2" | "rewoo" | "autogpt", model, tools)`` binds the pattern's protocol to the model,
compiles the graph with a checkpointer and returns an :class:`~agentkit.runtime.Agent`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentkit.budgets import Budget
from agentkit.checkpoint import CheckpointerSpec, resolve_checkpointer
from agentkit.errors import ConfigError
from agentkit.llm import ChatModel, GenerationConfig
from agentkit.memory import History, as_history
from agentkit.protocols import Protocol, get_protocol
from agentkit.toolspec import Tool

if TYPE_CHECKING:
    from agentkit.runtime import Agent

__all__ = ["AGENTS", "create_agent"]

#: Pattern name → module declaring ``build_graph(parts)`` and ``DEFAULT_PROTOCOL``.
AGENTS: dict[str, str] = {
    "react": "agentkit.agents.react",
    "internlm2": "agentkit.agents.internlm2",
    "rewoo": "agentkit.agents.rewoo",
    "autogpt": "agentkit.agents.autogpt",
}


def _resolve_tools(tools: Sequence[Tool | str] | str | None) -> dict[str, Tool]:
    if tools is None:
        return {}
    if isinstance(tools, str):
        tools = [t for t in tools.split(",") if t.strip()]
    resolved: dict[str, Tool] = {}
    for item in tools:
        if isinstance(item, str):
            from agentkit.tools import load_tool  # lazy: the spine does not depend on the tool registry

            item = load_tool(item.strip())
        if not isinstance(item, Tool):
            raise ConfigError(
                f"{item!r} is not a tool: pass objects with a 'spec' and an 'invoke' method, or registered tool names"
            )
        name = item.spec.name
        if name in resolved:
            raise ConfigError(f"two tools are named {name!r}: tool names must be unique within an agent")
        resolved[name] = item
    return resolved


def create_agent(
    pattern: str = "react",
    model: ChatModel | str = "embedded",
    tools: Sequence[Tool | str] | str | None = None,
    *,
    protocol: Protocol | str | None = None,
    system_prompt: str | None = None,
    budget: Budget | dict[str, Any] | None = None,
    generation: GenerationConfig | dict[str, Any] | None = None,
    checkpointer: CheckpointerSpec = "sqlite",
    trajectory_path: str | Path | None = None,
    history: History | int | None = None,
) -> Agent:
    """Build an agent.

    Args:
        pattern: ``react``, ``internlm2``, ``rewoo`` or ``autogpt`` (see :data:`AGENTS`).
        model: a :class:`ChatModel` or a model spec such as ``embedded`` or ``hf:PATH``.
        tools: tools, or registered tool names (``["calculator"]`` or ``"calculator,..."``).
        protocol: the text protocol for completion models; defaults to the pattern's own.
        budget: run limits (steps, tokens, seconds, repeated calls, parse retries).
        checkpointer: ``"sqlite"`` (a file in the user data dir), ``"memory"``, ``None``, a path or a saver.
        trajectory_path: a JSONL file each finished run appends its trajectory record to.
        history: bound what the model sees of a long thread: a token budget or a :class:`~agentkit.memory.History`
            (trim or summarise the oldest turns); the thread itself keeps every message.
    """
    from agentkit.agents.nodes import AgentParts
    from agentkit.runtime import Agent

    if pattern not in AGENTS:
        raise ConfigError(f"unknown agent {pattern!r}: use one of {', '.join(AGENTS)}")
    module = importlib.import_module(AGENTS[pattern])
    if isinstance(model, str):
        from agentkit.models import load_model  # lazy: backends import torch only when used

        model = load_model(model)
    if protocol is None:
        protocol = module.DEFAULT_PROTOCOL
    if isinstance(protocol, str):
        protocol = get_protocol(protocol)
    if isinstance(budget, dict):
        budget = Budget(**budget)
    if isinstance(generation, dict):
        generation = GenerationConfig(**generation)
    parts = AgentParts(
        pattern=pattern,
        model=model.with_protocol(protocol),
        protocol=protocol,
        tools=_resolve_tools(tools),
        budget=budget or Budget(),
        generation=generation or GenerationConfig(),
        system_prompt=system_prompt,
        history=as_history(history, model),
    )
    return Agent(parts, module.build_graph(parts), checkpointer=resolve_checkpointer(checkpointer),
                 trajectory_path=trajectory_path)
