"""Typed tools: :class:`BaseTool` and the ``@tool`` decorator.

A tool declares one method, ``apply``, with type hints and a docstring. From them it gets a pydantic model of its
inputs (the JSON Schema the model reads, and the validator its arguments go through), the kinds of its outputs and
a :class:`~agentkit.toolspec.ToolSpec` for agents. Heavy state (a model, a database client) is made in ``setup()``,
which runs once, on first use, so listing or describing tools stays cheap.

Agents call :meth:`BaseTool.invoke` with the JSON arguments the model wrote. A field of the wrong type, a missing
argument or a timeout becomes a :class:`~agentkit.toolspec.ToolError` whose text tells the model what to fix; other
exceptions pass through. The agent turns either into an ``environment`` message and carries on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import threading
import typing
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, ClassVar, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic.fields import FieldInfo

from agentkit.messages import ContentPart, TextPart, ToolKind
from agentkit.toolspec import ToolError, ToolOutput, ToolSpec
from agentkit.tools.io import AudioIO, File, ImageIO, IOType

#: Default wall-clock limit for one call, in seconds. ``timeout=None`` runs the call inline with no limit.
DEFAULT_TIMEOUT = 60.0

_OUTPUT_KINDS: dict[type, str] = {ImageIO: "image", AudioIO: "audio", File: "file"}


@dataclass(frozen=True)
class ToolMeta:
    """What a tool is, derived once from its class or function."""

    name: str
    description: str
    inputs: type[BaseModel]
    outputs: tuple[str, ...] = ("text",)
    requires_approval: bool = False
    kind: ToolKind = "plugin"
    timeout: float | None = DEFAULT_TIMEOUT
    parameters: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", json_schema(self.inputs))

    def to_spec(self) -> ToolSpec:
        return ToolSpec(
            name=self.name,
            description=self.description,
            parameters=self.parameters,
            kind=self.kind,
            requires_approval=self.requires_approval,
        )


class BaseTool:
    """A typed tool. Subclasses set ``name``/``description`` (or a docstring) and implement ``apply``.

    ``apply`` may be ``async``. Its parameters become the tool's inputs; ``ImageIO`` / ``AudioIO`` / ``File``
    parameters accept the paths earlier tools returned. Options of the tool itself (a directory, an API key)
    belong in ``__init__``, not in ``apply``.
    """

    name: ClassVar[str | None] = None
    description: ClassVar[str | None] = None
    requires_approval: ClassVar[bool] = False
    kind: ClassVar[ToolKind] = "plugin"
    timeout: ClassVar[float | None] = DEFAULT_TIMEOUT

    def __init__(self, *, name: str | None = None, description: str | None = None,
                 requires_approval: bool | None = None, timeout: Any = ..., artifact_dir: str | None = None):
        """Override the class's name, description, approval or timeout (``timeout=None``: no limit)."""
        self._overrides = {
            "name": name,
            "description": description,
            "requires_approval": requires_approval,
            "timeout": timeout,
        }
        self.artifact_dir = artifact_dir
        self._setup_done = False
        self._setup_lock = threading.Lock()
        self._meta: ToolMeta | None = None

    # -- description -------------------------------------------------------------------------
    def _target(self) -> Callable[..., Any]:
        return self.apply

    def _class_doc(self) -> str:
        return inspect.getdoc(type(self)) if type(self).__doc__ else ""

    @property
    def meta(self) -> ToolMeta:
        if self._meta is None:
            self._meta = self._build_meta()
        return self._meta

    def _build_meta(self) -> ToolMeta:
        target = self._target()
        summary, arg_docs = parse_docstring(inspect.getdoc(target) or "")
        class_summary, _ = parse_docstring(self._class_doc())
        name = self._overrides["name"] or self.name or _snake(type(self).__name__)
        description = self._overrides["description"] or self.description or summary or class_summary
        if not description:
            raise TypeError(f"tool {name!r} needs a description: a docstring or description=...")
        timeout = self._overrides["timeout"]
        return ToolMeta(
            name=name,
            description=description,
            inputs=inputs_model(target, name, arg_docs),
            outputs=output_kinds(target),
            requires_approval=bool(self._overrides["requires_approval"] if self._overrides["requires_approval"]
                                   is not None else self.requires_approval),
            kind=self.kind,
            timeout=self.timeout if timeout is ... else timeout,
        )

    @property
    def spec(self) -> ToolSpec:
        return self.meta.to_spec()

    def to_openai(self) -> dict[str, Any]:
        return self.spec.to_openai()

    def to_internlm2(self) -> dict[str, Any]:
        return self.spec.to_internlm2()

    def to_langchain(self) -> Any:
        from agentkit.tools.langchain import to_langchain

        return to_langchain(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def setup(self) -> None:
        """Load what the tool needs (a model, a client). Runs once, on the first call."""

    def _ensure_setup(self) -> None:
        if self._setup_done:
            return
        with self._setup_lock:
            if not self._setup_done:
                self.setup()
                self._setup_done = True

    def apply(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement apply()")

    # -- calling -----------------------------------------------------------------------------
    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Arguments checked and converted to the declared types, or a ToolError naming what is wrong."""
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.meta.name} takes a JSON object of arguments, got {type(arguments).__name__}")
        try:
            model = self.meta.inputs.model_validate(arguments)
        except ValidationError as exc:
            raise ToolError(describe_validation_error(self.meta, exc)) from None
        return {name: getattr(model, name) for name in type(model).model_fields}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call like a function (positional or keyword), with validation; returns ``apply``'s own value."""
        bound = inspect.signature(self._target()).bind(*args, **kwargs)
        values = self.validate(dict(bound.arguments))
        self._ensure_setup()
        result = self._target()(**values)
        if inspect.isawaitable(result):
            result = _run_coroutine(result)
        return result

    def invoke(self, arguments: dict[str, Any]) -> ToolOutput:
        """Agent-facing call: validated, limited by the timeout, output made into message content."""
        values = self.validate(arguments)
        timeout = self.meta.timeout

        def call() -> Any:
            self._ensure_setup()
            result = self._target()(**values)
            return _run_coroutine(result) if inspect.isawaitable(result) else result

        result = call() if timeout is None else _call_with_timeout(call, timeout, self.meta.name)
        return to_tool_output(result, self.artifact_dir)

    async def ainvoke(self, arguments: dict[str, Any]) -> ToolOutput:
        values = self.validate(arguments)
        timeout = self.meta.timeout
        target = self._target()
        if inspect.iscoroutinefunction(target):
            await asyncio.to_thread(self._ensure_setup)
            try:
                result = await asyncio.wait_for(target(**values), timeout)
            except asyncio.TimeoutError:
                raise ToolError(_timeout_message(self.meta.name, timeout)) from None
            return to_tool_output(result, self.artifact_dir)
        return await asyncio.to_thread(self.invoke, arguments)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.meta.name!r})"


class DecoratedTool(BaseTool):
    """A tool made by ``@tool`` from a typed, documented function; calling it still calls the function."""

    def __init__(self, fn: Callable[..., Any], **options: Any):
        super().__init__(**options)
        self.fn = fn
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        if self._overrides["name"] is None:
            self._overrides["name"] = fn.__name__

    def _target(self) -> Callable[..., Any]:
        return self.fn

    def _class_doc(self) -> str:
        return ""


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None,
         requires_approval: bool = False, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
    """Turn a typed function into a tool: ``@tool`` or ``@tool(name=..., requires_approval=True)``.

    The docstring's first paragraph is the description; an ``Args:`` section (or ``Annotated[..., "text"]`` /
    ``Field(description=...)``) describes each argument.
    """

    def wrap(f: Callable[..., Any]) -> DecoratedTool:
        made = DecoratedTool(f, name=name, description=description, requires_approval=requires_approval,
                             timeout=timeout)
        made.meta  # fail at decoration time on a missing description or an unsupported signature
        return made

    return wrap(fn) if fn is not None else wrap


# -- schema derivation -------------------------------------------------------------------------

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$", re.IGNORECASE)
_SECTION = re.compile(r"^\s*(Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SPHINX = re.compile(r"^\s*:param\s+(?:[\w\[\], |]+\s+)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary (first paragraph) and per-argument descriptions of a Google- or Sphinx-style docstring."""
    lines = doc.strip().splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ARGS_HEADER.match(line) or _SPHINX.match(line):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    current: str | None = None
    in_args = False
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, current = True, None
            continue
        if _SECTION.match(line):
            in_args, current = False, None
            continue
        sphinx = _SPHINX.match(line)
        if sphinx:
            current = sphinx.group(1)
            args[current] = sphinx.group(2).strip()
            continue
        if not in_args:
            continue
        match = _ARG_LINE.match(line)
        if match and (current is None or _indent(line) <= _indent_of_first_arg(lines, line)):
            current = match.group(1)
            args[current] = match.group(2).strip()
        elif current is not None and line.strip():
            args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(summary), args


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _indent_of_first_arg(lines: list[str], fallback: str) -> int:
    for i, line in enumerate(lines):
        if _ARGS_HEADER.match(line):
            for nxt in lines[i + 1:]:
                if nxt.strip():
                    return _indent(nxt)
    return _indent(fallback)


def inputs_model(fn: Callable[..., Any], tool_name: str, arg_docs: dict[str, str]) -> type[BaseModel]:
    """A pydantic model of ``fn``'s parameters: types from hints, defaults kept, descriptions from the docstring."""
    signature = inspect.signature(fn)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise TypeError(f"tool {tool_name!r}: cannot resolve the type hints of {fn.__qualname__}: {exc}") from exc
    fields: dict[str, Any] = {}
    for pname, param in signature.parameters.items():
        if pname in ("self", "cls"):
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name!r}: *args/**kwargs cannot be described to a model; name each argument")
        annotation = hints.get(pname, Any)
        if annotation is Any and param.annotation is inspect.Parameter.empty:
            annotation = type(param.default) if param.default not in (inspect.Parameter.empty, None) else str
        fields[pname] = _field(annotation, arg_docs.get(pname), param.default)
    model_name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]", tool_name) if p) + "Inputs"
    return create_model(model_name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)


def _field(annotation: Any, doc: str | None, default: Any) -> tuple[Any, FieldInfo]:
    description = doc
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        kept = []
        for extra in extras:
            if isinstance(extra, str):
                description = description or extra
            elif isinstance(extra, FieldInfo):
                description = description or extra.description
                kept.append(extra)
            else:
                kept.append(extra)
        annotation = Annotated[(base, *kept)] if kept else base
    kwargs: dict[str, Any] = {"description": description} if description else {}
    if default is not inspect.Parameter.empty:
        kwargs["default"] = default
    return annotation, Field(**kwargs)


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON Schema without pydantic's titles: shorter prompts, the same meaning."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.pop("additionalProperties", None)
    return _strip_titles(schema)


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_titles(v) for k, v in node.items()
                if not (k == "title" and isinstance(v, str))}
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    return node


def output_kinds(fn: Callable[..., Any]) -> tuple[str, ...]:
    """What ``fn`` returns, as the kinds a model is told about: text, image, audio, file."""
    try:
        hint = typing.get_type_hints(fn).get("return", str)
    except Exception:
        return ("text",)
    items = get_args(hint) if get_origin(hint) is tuple else (hint,)
    kinds = []
    for item in items:
        if item is Ellipsis:
            continue
        kinds.append(next((k for t, k in _OUTPUT_KINDS.items() if isinstance(item, type) and issubclass(item, t)),
                          "text"))
    return tuple(kinds) or ("text",)


# -- errors, output ----------------------------------------------------------------------------

_TYPE_WORDS = {
    "string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
    "array": "a list", "object": "an object",
}


def _expected(prop: dict[str, Any]) -> str:
    if "enum" in prop:
        return "one of " + ", ".join(json.dumps(v) for v in prop["enum"])
    if "format" in prop and prop.get("type") == "string" and prop["format"] in ("image", "audio", "file"):
        return f"the path of {'an' if prop['format'][0] in 'aeiou' else 'a'} {prop['format']} file"
    if "anyOf" in prop:
        return " or ".join(_expected(p) for p in prop["anyOf"] if p.get("type") != "null")
    return _TYPE_WORDS.get(prop.get("type", ""), prop.get("type", "a value"))


def describe_validation_error(meta: ToolMeta, exc: ValidationError) -> str:
    """One line per problem, each naming the argument and what it should be, then the full signature."""
    props = meta.parameters.get("properties", {})
    problems = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        top = str(err["loc"][0]) if err["loc"] else ""
        if err["type"] == "extra_forbidden":
            problems.append(f"unknown argument {loc!r}")
        elif err["type"] == "missing":
            problems.append(f"missing argument {loc!r} ({_expected(props.get(top, {}))})")
        else:
            got = json.dumps(err.get("input"), default=str)
            msg = err["msg"].removeprefix("Value error, ")
            if len(got) > 60:
                got = got[:57] + "..."
            problems.append(f"argument {loc!r} should be {_expected(props.get(top, {}))}: {msg} (got {got})")
    required = set(meta.parameters.get("required", []))
    signature = ", ".join(f"{n}: {_expected(p)}{'' if n in required else ' (optional)'}" for n, p in props.items())
    return f"invalid arguments for {meta.name}: " + "; ".join(problems) + f". It takes {{{signature}}}."


def to_tool_output(value: Any, artifact_dir: str | None = None) -> ToolOutput:
    """Message content for a tool's return value: IO values become references, data becomes JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return "(no output)"
    if isinstance(value, IOType):
        return [value.to_part(artifact_dir)]
    if isinstance(value, tuple):
        parts: list[ContentPart] = []
        for item in value:
            out = to_tool_output(item, artifact_dir)
            parts.extend([TextPart(text=out)] if isinstance(out, str) else out)
        return parts
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, IOType):
        return str(value.to_path())
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return str(value)


def _snake(name: str) -> str:
    name = re.sub(r"Tool$", "", name) or name
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _timeout_message(name: str, timeout: float | None) -> str:
    return f"{name} did not finish within {timeout:g} s and was abandoned; try a smaller input or another approach"


def _call_with_timeout(call: Callable[[], Any], timeout: float, name: str) -> Any:
    """Run ``call`` in a daemon thread and stop waiting after ``timeout``.

    Python cannot kill a thread, so a call that overruns keeps running in the background until it returns; tools
    that must really be killed (the code interpreter) run in processes of their own.
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def runner() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=runner, name=f"tool-{name}", daemon=True).start()
    if not done.wait(timeout):
        raise ToolError(_timeout_message(name, timeout))
    if "error" in box:
        raise box["error"]
    return box["value"]


def _run_coroutine(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, Any] = {}

    def runner() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=runner)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
