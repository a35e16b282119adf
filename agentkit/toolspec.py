"""The small tool interface agents consume.

The full typed, multimodal registry lives in ``agentkit.tools``; agents only need what is here:
a spec the model can read and a way to invoke. Anything with ``spec`` and ``invoke`` is a tool.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from agentkit.messages import ContentPart, ToolKind


class ToolSpec(BaseModel):
    """What a model sees of a tool: a name, a description and JSON-Schema parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    kind: ToolKind = "plugin"
    requires_approval: bool = False

    def to_openai(self) -> dict[str, Any]:
        """OpenAI function-tool schema."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def to_internlm2(self) -> dict[str, Any]:
        """InternLM2 plugin schema (the JSON listed under ``system name=<|plugin|>``)."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    @classmethod
    def from_openai(cls, data: dict[str, Any]) -> ToolSpec:
        fn = data.get("function", data)
        if "name" not in fn:
            raise ValueError("a tool schema needs a 'name' (OpenAI format: {'type': 'function', 'function': {...}})")
        return cls(
            name=fn["name"],
            description=fn.get("description", ""),
            parameters=fn.get("parameters") or {"type": "object", "properties": {}},
        )


class ToolError(Exception):
    """Raised by a tool for a failure the model should read and can act on (bad argument, not found)."""


ToolOutput = str | list[ContentPart]


@runtime_checkable
class Tool(Protocol):
    """Anything an agent can call."""

    @property
    def spec(self) -> ToolSpec: ...

    def invoke(self, arguments: dict[str, Any]) -> ToolOutput: ...


class FunctionTool:
    """A tool from a plain function and a hand-written spec (the registry's ``@tool`` derives specs from type hints)."""

    def __init__(self, fn: Callable[..., Any], spec: ToolSpec):
        self.fn = fn
        self._spec = spec

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    def invoke(self, arguments: dict[str, Any]) -> ToolOutput:
        result = self.fn(**arguments)
        if inspect.isawaitable(result):
            result = asyncio.run(result)  # type: ignore[arg-type]
        return result if isinstance(result, (str, list)) else str(result)

    def __repr__(self) -> str:
        return f"FunctionTool({self._spec.name!r})"


def invoke_tool(tool: Tool, arguments: dict[str, Any]) -> ToolOutput:
    return tool.invoke(arguments)


async def ainvoke_tool(tool: Tool, arguments: dict[str, Any]) -> ToolOutput:
    """Use the tool's ``ainvoke`` when it has one; otherwise run the blocking call in a thread."""
    ainvoke = getattr(tool, "ainvoke", None)
    if ainvoke is not None:
        return await ainvoke(arguments)
    return await asyncio.to_thread(tool.invoke, arguments)

