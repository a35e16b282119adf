"""LangChain interop both ways: a LangChain tool in an agentkit agent, and an agentkit model and tool in
LangChain's own ``create_agent``.

    .venv/bin/python examples/langchain_interop.py                   # scripted replies: offline and instant
    .venv/bin/python examples/langchain_interop.py --model embedded  # the embedded SmolLM2 (small: may stray)
"""

from __future__ import annotations

import argparse

from langchain.agents import create_agent as create_langchain_agent
from langchain_core.tools import tool as langchain_tool

from agentkit.agents import create_agent
from agentkit.models import load_model
from agentkit.models.langchain import AgentkitChatModel
from agentkit.models.scripted import ScriptedModel
from agentkit.tools import tool
from agentkit.tools.langchain import from_langchain, to_langchain


@langchain_tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


@tool
def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="scripted", help="'scripted' (default) or a model spec such as 'embedded'")
    args = parser.parse_args()
    real = None if args.model == "scripted" else load_model(args.model)

    # 1. A LangChain @tool inside an agentkit ReAct agent.
    model = real or ScriptedModel([
        'Thought: count them.\nAction: word_count\nAction Input: {"text": "the quick brown fox"}',
        "Thought: I have it.\nFinal Answer: 4 words.",
    ])
    agent = create_agent("react", model, tools=[from_langchain(word_count)], checkpointer=None,
                         budget={"max_steps": 4}, generation={"max_new_tokens": 96})
    result = agent.run("How many words are in 'the quick brown fox'?")
    print(f"agentkit agent + LangChain tool -> {result.outcome}: {result.answer}")

    # 2. An agentkit model and tool inside LangChain's create_agent (a LangGraph graph).
    model = real or ScriptedModel(['<tool_call>\n{"name": "add", "arguments": {"a": 2.5, "b": 4}}\n</tool_call>',
                                   "2.5 + 4 = 6.5"])
    llm = AgentkitChatModel(model, protocol="openai_tools", generation={"max_new_tokens": 96})
    graph = create_langchain_agent(model=llm, tools=[to_langchain(add)])
    out = graph.invoke({"messages": [{"role": "user", "content": "What is 2.5 + 4?"}]}, {"recursion_limit": 8})
    for message in out["messages"]:
        calls = [f"{c['name']}({c['args']})" for c in getattr(message, "tool_calls", [])]
        print(f"  {message.type:>5}: " + " ".join(filter(None, [message.text, *calls])))


if __name__ == "__main__":
    main()
