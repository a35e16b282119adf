"""Tools agents can call. The full registry grows here; the interface agents consume is agentkit.toolspec.

Names are resolved lazily so ``import agentkit.tools`` stays cheap: tool modules and their extras (numexpr...)
are imported only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentkit._lazy import lazy_exports

if TYPE_CHECKING:
    from agentkit.tools.base import BaseTool, DecoratedTool, ToolMeta, tool
    from agentkit.tools.calculator import Calculator
    from agentkit.tools.io import AudioIO, File, ImageIO, IOType
    from agentkit.tools.registry import ToolInfo, list_tools, load_tool, load_tools, register_tool, search_tool

_EXPORTS = {
    "BaseTool": "agentkit.tools.base",
    "DecoratedTool": "agentkit.tools.base",
    "ToolMeta": "agentkit.tools.base",
    "tool": "agentkit.tools.base",
    "AudioIO": "agentkit.tools.io",
    "File": "agentkit.tools.io",
    "ImageIO": "agentkit.tools.io",
    "IOType": "agentkit.tools.io",
    "Calculator": "agentkit.tools.calculator",
    "ToolInfo": "agentkit.tools.registry",
    "list_tools": "agentkit.tools.registry",
    "load_tool": "agentkit.tools.registry",
    "load_tools": "agentkit.tools.registry",
    "register_tool": "agentkit.tools.registry",
    "search_tool": "agentkit.tools.registry",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

