"""The docs stay true to the code: every agent pattern is documented with the edges its graph really has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentkit.agents import AGENTS, create_agent
from agentkit.messages import Message
from agentkit.models.scripted import ScriptedModel
from agentkit.tools import Calculator

DOCS = Path(__file__).resolve().parents[1] / "docs"
EDGE = re.compile(r"^\s*(\w+)\s*(-->|-\.->)\s*(\w+);?\s*$")


def edges(mermaid: str) -> set[tuple[str, str, str]]:
    return {m.groups() for line in mermaid.splitlines() if (m := EDGE.match(line))}


def documented(pattern: str) -> str:
    text = (DOCS / "agents.md").read_text()
    match = re.search(rf"<!-- graph:{pattern} -->\s*```mermaid\n(.*?)```", text, re.S)
    assert match, f"docs/agents.md has no diagram for {pattern!r}: add one under <!-- graph:{pattern} -->"
    return match.group(1)


@pytest.mark.parametrize("pattern", sorted(AGENTS))
def test_each_pattern_is_documented_with_its_real_graph(pattern):
    agent = create_agent(pattern, ScriptedModel([Message.assistant("x")]), tools=[Calculator()], checkpointer=None)
    built = edges(agent.graph.get_graph().draw_mermaid())
    assert built, "no edges parsed from the compiled graph"
    assert edges(documented(pattern)) == built
    table = (DOCS / "agents.md").read_text().split("## The graphs")[0]
    assert f"| `{pattern}` |" in table
