"""Find tools by name: built-ins, ones registered in code, and third-party packages' entry points.

Built-ins are named by import path and imported only when loaded, so importing the registry (and the CLI that
lists tools) never pulls in numexpr or other heavy extras. A package adds tools with an entry point::

    [project.entry-points."agentkit.tools"]
    weather = "my_pkg.weather:WeatherTool"

The entry point's object is a factory (usually the tool class) called with ``load_tool``'s keyword arguments.
Precedence: ``register_tool`` > built-ins > entry points, so an installed package cannot silently replace a
built-in; entry points are read on each lookup, so a package installed mid-session is found.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import re
import warnings
from typing import Any, Callable, Iterable, Union

from pydantic import BaseModel

from agentkit.errors import ConfigError
from agentkit.toolspec import Tool

ENTRY_POINT_GROUP = "agentkit.tools"

#: A tool factory: a callable returning a Tool, or a ``"module:attribute"`` path to one (imported on load).
Factory = Union[Callable[..., Tool], str]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what OpenAI accepts as a function name

_BUILTINS: dict[str, str] = {
    "calculator": "agentkit.tools.calculator:Calculator",
    "knowledge_base": "agentkit.tools.knowledge_base:KnowledgeBase",
    "python_interpreter": "agentkit.tools.interpreter:PythonInterpreter",
    "sympy": "agentkit.tools.symbolic:SymPyTool",
    "web_search": "agentkit.tools.web_search:WebSearch",
    "image_info": "agentkit.tools.image:ImageInfo",
    "crop": "agentkit.tools.image:Crop",
    "resize": "agentkit.tools.image:Resize",
    "draw_boxes": "agentkit.tools.image:DrawBoxes",
    "annotate": "agentkit.tools.image:Annotate",
    "plot": "agentkit.tools.image:Plot",
}
_registered: dict[str, Factory] = {}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"invalid tool name {name!r}: use 1-64 letters, digits, '_' or '-'")
    return name


def register_tool(name: str, factory: Factory) -> None:
    """Make ``load_tool(name)`` call ``factory``; a later registration of the same name replaces the earlier one."""
    _check_name(name)
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ConfigError(f"tool {name!r}: factory must be callable or a 'module:attribute' string, got {factory!r}")
    _registered[name] = factory


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _NAME.match(ep.name):
            warnings.warn(f"ignoring {ENTRY_POINT_GROUP} entry point with invalid name {ep.name!r}", stacklevel=3)
        elif ep.name in _BUILTINS or ep.name in _registered:
            warnings.warn(
                f"{ENTRY_POINT_GROUP} entry point {ep.name!r} ({ep.value}) is shadowed by a tool of the same name",
                stacklevel=3,
            )
        else:
            found.setdefault(ep.name, ep)
    return found


def list_tools() -> list[str]:
    """Names of every tool ``load_tool`` can load, sorted."""
    return sorted({*_BUILTINS, *_registered, *_entry_points()})


def _import_path(path: str, name: str) -> Callable[..., Tool]:
    module, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise ConfigError(
            f"tool {name!r} cannot be imported ({exc}); its extras may be missing: pip install 'agentkit[tools]'"
        ) from exc
    except AttributeError as exc:
        raise ConfigError(f"tool {name!r}: {path!r} does not exist ({exc})") from exc
    return obj


def _resolve(name: str) -> Callable[..., Tool]:
    if name in _registered:
        factory = _registered[name]
        return _import_path(factory, name) if isinstance(factory, str) else factory
    if name in _BUILTINS:
        return _import_path(_BUILTINS[name], name)
    eps = _entry_points()
    if name in eps:
        ep = eps[name]
        try:
            return ep.load()
        except Exception as exc:
            dist = getattr(getattr(ep, "dist", None), "name", None) or "its package"
            raise ConfigError(
                f"tool {name!r} from {dist} ({ep.value}) failed to import: {exc}; reinstall or upgrade {dist}"
            ) from exc
    available = sorted({*_BUILTINS, *_registered, *eps})
    close = difflib.get_close_matches(name, available, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown tool {name!r}.{hint} Available: {', '.join(available) or '(none)'}")


def load_tool(name: str, **kwargs: Any) -> Tool:
    """Build the tool registered as ``name``; ``kwargs`` go to its factory."""
    name = _check_name(name.strip() if isinstance(name, str) else name)
    factory = _resolve(name)
    try:
        tool = factory(**kwargs)
    except TypeError as exc:
        if kwargs:
            raise ConfigError(f"tool {name!r} rejected options {sorted(kwargs)}: {exc}") from exc
        raise
    if not isinstance(tool, Tool):
        raise ConfigError(f"tool {name!r}: its factory returned {type(tool).__name__}, which has no spec/invoke")
    return tool


class ToolInfo(BaseModel):
    """A search hit: enough to pick a tool without loading it for real."""

    name: str
    description: str
    score: float


def describe_tool(name: str) -> str:
    """The tool's description, read without running its ``setup()`` (heavy models are not loaded)."""
    factory = _resolve(name)
    try:
        made = factory()
        return made.spec.description
    except Exception:
        doc = inspect.getdoc(factory) or ""
        return getattr(factory, "description", None) or doc.split("\n\n")[0].replace("\n", " ")


_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in _WORD.findall(text.lower()) if len(w) > 1}


def search_tool(query: str, k: int = 5) -> list[ToolInfo]:
    """Tools whose name or description fit ``query`` best (fuzzy on the name, word overlap on the description)."""
    if not query or not query.strip():
        raise ConfigError("search_tool needs a query, e.g. search_tool('image resize')")
    wanted = _words(query)
    hits: list[ToolInfo] = []
    for name in list_tools():
        try:
            description = describe_tool(name)
        except ConfigError:
            continue  # a tool whose extras are missing cannot be offered
        name_score = max(difflib.SequenceMatcher(None, query.lower().strip(), name.lower()).ratio(),
                         max((difflib.SequenceMatcher(None, w, name.lower()).ratio() for w in wanted), default=0.0))
        have = _words(name.replace("_", " ") + " " + description)
        overlap = len(wanted & have) / len(wanted) if wanted else 0.0
        score = round(max(name_score, overlap) + 0.25 * min(name_score, overlap), 4)
        if score >= 0.3:
            hits.append(ToolInfo(name=name, description=description, score=score))
    hits.sort(key=lambda h: (-h.score, h.name))
    return hits[:k]


def load_tools(names: str | Iterable[str]) -> list[Tool]:
    """Load ``"calculator,search"`` (as the CLI's ``--tools`` gives it) or a list of names; duplicates once."""
    if isinstance(names, str):
        names = names.split(",")
    wanted = list(dict.fromkeys(n.strip() for n in names if n and n.strip()))
    return [load_tool(n) for n in wanted]
