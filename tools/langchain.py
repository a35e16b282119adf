"""LangChain tools ⇄ agentkit tools.

``to_langchain(tool)`` hands an agentkit tool to LangChain / LangGraph (``ToolNode``, ``create_agent``) as a
``StructuredTool``; ``from_langchain(lc_tool)`` brings any LangChain tool into an agentkit agent. Both go through the
other side's own calling path, so validation, errors and outputs behave as each framework's users expect.

This module imports langchain-core; ``import agentkit.tools`` does not import it.
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool as LangChainBaseTool
from langchain_core.tools import StructuredTool, ToolException
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from agentkit.messages import INTERPRETER_TOOL_NAME, ContentPart, ImagePart, Message, TextPart, new_call_id
from agentkit.toolspec import Tool, ToolError, ToolOutput, ToolSpec, ainvoke_tool
from agentkit.tools.base import BaseTool, _run_coroutine, describe_validation_error

__all__ = ["LangChainTool", "from_langchain", "to_langchain"]

#: Key in a LangChain tool's ``metadata`` carrying what LangChain has no field for (kind, approval).
METADATA_KEY = "agentkit"


def to_langchain(tool: Tool) -> StructuredTool:
    """An agentkit tool as a LangChain ``StructuredTool``.

    ``args_schema`` is the tool's own pydantic inputs model (a :class:`~agentkit.tools.base.BaseTool`) or its
    JSON-Schema parameters (any other agentkit tool). Calls go through the tool's ``invoke`` / ``ainvoke``.
    Errors the model can act on reach it the way LangChain shows errors: a :class:`ToolError` becomes a
    ``ToolException`` (``handle_tool_error=True``), and arguments LangChain's validation rejects are described
    with the same text an agentkit agent shows (``handle_validation_error``); both come back as a ``ToolMessage``
    with ``status="error"``. Other exceptions propagate, for ``ToolNode(handle_tool_errors=...)`` to decide.

    Outputs use ``response_format="content_and_artifact"``: the content is text, with images, audio and files
    shown by their path (``[image: /…/3fa2c9b1.png]``), and the artifact is the list of agentkit content parts.
    Text rather than image blocks because chat APIs (OpenAI's among them) accept only text in tool messages, and
    because agentkit tools pass files by reference: the model needs the path to hand the image to the next tool.
    The parts ride along in ``ToolMessage.artifact`` (never sent to the model) for code that wants the files.
    """
    spec = tool.spec

    def run(**arguments: Any) -> tuple[str, list[ContentPart] | None]:
        try:
            return _content_and_artifact(tool.invoke(arguments))
        except ToolError as exc:
            raise ToolException(str(exc)) from exc

    async def arun(**arguments: Any) -> tuple[str, list[ContentPart] | None]:
        try:
            return _content_and_artifact(await ainvoke_tool(tool, arguments))
        except ToolError as exc:
            raise ToolException(str(exc)) from exc

    typed = isinstance(tool, BaseTool)
    return StructuredTool(
        name=spec.name,
        description=spec.description,
        args_schema=tool.meta.inputs if typed else spec.parameters,
        func=run,
        coroutine=arun,
        response_format="content_and_artifact",
        handle_tool_error=True,
        handle_validation_error=(lambda exc: describe_validation_error(tool.meta, exc)) if typed else False,
        metadata={METADATA_KEY: {"kind": spec.kind, "requires_approval": spec.requires_approval}},
    )


def _content_and_artifact(output: ToolOutput) -> tuple[str, list[ContentPart] | None]:
    if isinstance(output, str):
        return output, None
    text = Message(role="environment", content=output).text
    return text, None if all(isinstance(p, TextPart) for p in output) else list(output)


class LangChainTool:
    """A LangChain tool as an agentkit tool: its schema as the spec, its ``invoke`` / ``ainvoke`` as the call.

    The call goes to LangChain as a full tool call, so the tool's own ``handle_tool_error`` /
    ``handle_validation_error`` settings apply; a result marked ``status="error"``, a ``ToolException`` or a
    validation error becomes a :class:`ToolError`, which the agent shows to the model.
    """

    def __init__(self, lc_tool: LangChainBaseTool, *, requires_approval: bool | None = None):
        if not isinstance(lc_tool, LangChainBaseTool):
            raise TypeError(
                f"from_langchain takes a LangChain tool (a BaseTool, StructuredTool or @tool function), "
                f"got {type(lc_tool).__name__}"
            )
        self.lc_tool = lc_tool
        function = convert_to_openai_tool(lc_tool)["function"]
        marks = (lc_tool.metadata or {}).get(METADATA_KEY) or {}
        name = function["name"]
        self._spec = ToolSpec(
            name=name,
            description=function.get("description") or "",
            parameters=function.get("parameters") or {"type": "object", "properties": {}},
            kind=marks.get("kind") or ("interpreter" if name == INTERPRETER_TOOL_NAME else "plugin"),
            requires_approval=bool(marks.get("requires_approval", False) if requires_approval is None
                                   else requires_approval),
        )

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    def _call(self, arguments: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_call", "id": new_call_id(), "name": self._spec.name, "args": dict(arguments)}

    def invoke(self, arguments: dict[str, Any]) -> ToolOutput:
        """A tool with only a coroutine (``StructuredTool(coroutine=...)``) still answers sync agents."""
        lc_tool = self.lc_tool
        if isinstance(lc_tool, StructuredTool) and lc_tool.func is None and lc_tool.coroutine is not None:
            return _run_coroutine(self.ainvoke(arguments))
        try:
            result = lc_tool.invoke(self._call(arguments))
        except ToolException as exc:
            raise ToolError(str(exc)) from exc
        except ValidationError as exc:
            raise ToolError(_describe(self._spec.name, exc)) from None
        return _tool_output(result)

    async def ainvoke(self, arguments: dict[str, Any]) -> ToolOutput:
        try:
            result = await self.lc_tool.ainvoke(self._call(arguments))
        except ToolException as exc:
            raise ToolError(str(exc)) from exc
        except ValidationError as exc:
            raise ToolError(_describe(self._spec.name, exc)) from None
        return _tool_output(result)

    def __repr__(self) -> str:
        return f"LangChainTool({self._spec.name!r})"


def from_langchain(lc_tool: LangChainBaseTool, *, requires_approval: bool | None = None) -> LangChainTool:
    """Any LangChain tool as an agentkit tool; ``requires_approval=True`` makes agents ask before each call."""
    return LangChainTool(lc_tool, requires_approval=requires_approval)


def _describe(name: str, exc: ValidationError) -> str:
    """One clause per problem, each naming the argument, like agentkit's own validation messages."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        if err["type"] == "missing":
            problems.append(f"missing argument {loc!r}")
        elif err["type"] == "extra_forbidden":
            problems.append(f"unknown argument {loc!r}")
        else:
            got = json.dumps(err.get("input"), default=str)
            problems.append(f"argument {loc!r}: {err['msg']} (got {got[:57] + '...' if len(got) > 60 else got})")
    return f"invalid arguments for {name}: " + "; ".join(problems)


def _tool_output(result: Any) -> ToolOutput:
    """What a LangChain tool returned, as agentkit tool output; an error result raises ToolError."""
    if isinstance(result, ToolMessage):
        if result.status == "error":
            raise ToolError(str(result.text))
        return _content(result.content)
    return _content(result)


def _content(value: Any) -> ToolOutput:
    """Strings stay text; content blocks become parts (text and images); other data becomes JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(b, str) or _block_type(b) for b in value):
        parts = [_part(b) for b in value]
        if all(isinstance(p, TextPart) for p in parts):
            return "".join(p.text for p in parts)  # type: ignore[union-attr]
        return parts
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def _block_type(block: Any) -> str | None:
    kind = block.get("type") if isinstance(block, dict) else None
    return kind if kind in ("text", "image", "image_url") else None


def _part(block: str | dict[str, Any]) -> ContentPart:
    if isinstance(block, str):
        return TextPart(text=block)
    if block["type"] == "text":
        return TextPart(text=str(block.get("text", "")))
    if block["type"] == "image_url":
        image = block.get("image_url")
        return ImagePart(url=image if isinstance(image, str) else (image or {}).get("url", ""))
    if block.get("base64"):
        return ImagePart(url=f"data:{block.get('mime_type') or 'image/png'};base64,{block['base64']}")
    return ImagePart(url=str(block.get("url") or block.get("file_id") or ""))
