"""agentkit: agents where the model is one pluggable part.

The public names are imported lazily, so ``import agentkit`` stays cheap and never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Message": "agentkit.messages",
    "ToolCall": "agentkit.messages",
    "Usage": "agentkit.messages",
    "TextPart": "agentkit.messages",
    "ImagePart": "agentkit.messages",
    "AudioPart": "agentkit.messages",
    "FilePart": "agentkit.messages",
    "ToolSpec": "agentkit.toolspec",
    "Tool": "agentkit.toolspec",
    "ToolError": "agentkit.toolspec",
    "FunctionTool": "agentkit.toolspec",
    "ChatModel": "agentkit.llm",
    "GenerationConfig": "agentkit.llm",
    "Budget": "agentkit.budgets",
    "create_agent": "agentkit.agents",
    "Agent": "agentkit.runtime",
    "RunResult": "agentkit.runtime",
    "AgentEvent": "agentkit.runtime",
    "TrajectoryRecord": "agentkit.trajectory",
    "read_trajectories": "agentkit.trajectory",
    "AgentkitError": "agentkit.errors",
    "ConfigError": "agentkit.errors",
    "load_model": "agentkit.models",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agentkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


if TYPE_CHECKING:  # pragma: no cover
    from agentkit.agents import create_agent
    from agentkit.budgets import Budget
    from agentkit.errors import AgentkitError, ConfigError
    from agentkit.llm import ChatModel, GenerationConfig
    from agentkit.messages import AudioPart, FilePart, ImagePart, Message, TextPart, ToolCall, Usage
    from agentkit.models import load_model
    from agentkit.runtime import Agent, AgentEvent, RunResult
    from agentkit.toolspec import FunctionTool, Tool, ToolError, ToolSpec
    from agentkit.trajectory import TrajectoryRecord, read_trajectories
