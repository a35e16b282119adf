"""The registry: built-ins load lazily, unknown names say what exists, third-party tools come from entry points."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types
from typing import Any

import pytest

import agentkit.tools
from agentkit.errors import ConfigError
from agentkit.tools import registry
from agentkit.toolspec import Tool, ToolSpec


class EchoTool:
    """A minimal third-party tool."""

    def __init__(self, prefix: str = ""):
        self.prefix = prefix

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(name="echo", parameters={"type": "object", "properties": {"text": {"type": "string"}}})

    def invoke(self, arguments: dict[str, Any]) -> str:
        return self.prefix + arguments["text"]


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the built-ins and no installed entry points."""
    monkeypatch.setattr(registry, "_registered", {})
    fake_entry_points(monkeypatch, [])


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, eps: list[importlib.metadata.EntryPoint]) -> None:
    def entry_points(**params: Any) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == params.get("group")]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)


def third_party_module(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("fake_agentkit_plugin")
    module.EchoTool = EchoTool  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_agentkit_plugin", module)


def ep(name: str, value: str, group: str = "agentkit.tools") -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=group)


def test_lists_and_loads_builtin() -> None:
    assert "calculator" in agentkit.tools.list_tools()
    tool = agentkit.tools.load_tool("calculator")
    assert isinstance(tool, Tool) and tool.spec.name == "calculator"
    assert tool.invoke({"expression": "6*7"}) == "42"


def test_load_tool_passes_kwargs() -> None:
    tool = agentkit.tools.load_tool("calculator", use_numexpr=False)
    assert not tool.uses_numexpr  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="rejected options.*bogus"):
        agentkit.tools.load_tool("calculator", bogus=1)


def test_unknown_name_lists_available() -> None:
    with pytest.raises(ConfigError) as info:
        agentkit.tools.load_tool("calculater")
    message = str(info.value)
    assert "unknown tool 'calculater'" in message
    assert "Did you mean 'calculator'" in message
    assert "Available: " in message and "calculator" in message.split("Available: ")[1]


def test_invalid_name() -> None:
    with pytest.raises(ConfigError, match="invalid tool name"):
        agentkit.tools.load_tool("a b")
    with pytest.raises(ConfigError, match="invalid tool name"):
        agentkit.tools.register_tool("x,y", EchoTool)


def test_register_tool() -> None:
    agentkit.tools.register_tool("echo", EchoTool)
    assert agentkit.tools.list_tools() == sorted({*registry._BUILTINS, "echo"})
    assert agentkit.tools.load_tool("echo", prefix="> ").invoke({"text": "hi"}) == "> hi"
    agentkit.tools.register_tool("echo", lambda: EchoTool(prefix="new "))
    assert agentkit.tools.load_tool("echo").invoke({"text": "hi"}) == "new hi"


def test_register_by_import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    third_party_module(monkeypatch)
    agentkit.tools.register_tool("echo", "fake_agentkit_plugin:EchoTool")
    assert agentkit.tools.load_tool("echo").invoke({"text": "x"}) == "x"
    agentkit.tools.register_tool("missing", "no_such_module_xyz:Tool")
    with pytest.raises(ConfigError, match=r"pip install 'agentkit\[tools\]'"):
        agentkit.tools.load_tool("missing")
    with pytest.raises(ConfigError, match="factory must be callable"):
        agentkit.tools.register_tool("bad", 42)  # type: ignore[arg-type]


def test_factory_must_return_a_tool() -> None:
    agentkit.tools.register_tool("notatool", lambda: object())
    with pytest.raises(ConfigError, match="no spec/invoke"):
        agentkit.tools.load_tool("notatool")


def test_load_tools_comma_list() -> None:
    agentkit.tools.register_tool("echo", EchoTool)
    tools = agentkit.tools.load_tools("calculator, echo,,calculator ")
    assert [t.spec.name for t in tools] == ["calculator", "echo"]
    assert agentkit.tools.load_tools("") == []
    assert [t.spec.name for t in agentkit.tools.load_tools(["echo"])] == ["echo"]
    with pytest.raises(ConfigError, match="unknown tool 'nope'"):
        agentkit.tools.load_tools("calculator,nope")


def test_entry_point_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    third_party_module(monkeypatch)
    fake_entry_points(
        monkeypatch,
        [ep("echo", "fake_agentkit_plugin:EchoTool"), ep("other_group_tool", "x:y", group="something.else")],
    )
    assert agentkit.tools.list_tools() == sorted({*registry._BUILTINS, "echo"})
    tool = agentkit.tools.load_tool("echo", prefix="ep:")
    assert tool.invoke({"text": "ok"}) == "ep:ok"
    assert [t.spec.name for t in agentkit.tools.load_tools("echo,calculator")] == ["echo", "calculator"]


def test_entry_point_cannot_shadow_builtin(monkeypatch: pytest.MonkeyPatch) -> None:
    third_party_module(monkeypatch)
    fake_entry_points(monkeypatch, [ep("calculator", "fake_agentkit_plugin:EchoTool")])
    with pytest.warns(UserWarning, match="shadowed"):
        assert agentkit.tools.list_tools() == sorted(registry._BUILTINS)
    assert agentkit.tools.load_tool("calculator").spec.name == "calculator"


def test_broken_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_entry_points(monkeypatch, [ep("broken", "no_such_module_xyz:Tool")])
    assert "broken" in agentkit.tools.list_tools()
    with pytest.raises(ConfigError, match="'broken'.*failed to import"):
        agentkit.tools.load_tool("broken")


def test_imports_stay_cheap() -> None:
    """Importing the package and listing tools must not import numexpr or the calculator."""
    code = (
        "import sys, agentkit.tools as t; t.list_tools(); "
        "assert 'numexpr' not in sys.modules, 'numexpr'; "
        "assert 'agentkit.tools.calculator' not in sys.modules, 'calculator'; "
        "from agentkit.tools import Calculator; assert 'numexpr' not in sys.modules, 'numexpr on class import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_exports() -> None:
    assert {"BaseTool", "tool", "ImageIO", "Calculator", "list_tools", "load_tool", "search_tool"} <= set(
        agentkit.tools.__all__
    )
    for name in agentkit.tools.__all__:
        assert getattr(agentkit.tools, name) is not None
    assert set(agentkit.tools.__all__) <= set(dir(agentkit.tools))
    with pytest.raises(AttributeError):
        agentkit.tools.does_not_exist  # noqa: B018


def test_search_tool_is_fuzzy_on_names_and_matches_descriptions() -> None:
    assert agentkit.tools.search_tool("calculater")[0].name == "calculator"  # a typo still finds it
    hits = agentkit.tools.search_tool("find passages in my documents")
    assert hits[0].name == "knowledge_base" and "documents" in hits[0].description
    assert all(h.score >= 0.3 for h in hits) and hits == sorted(hits, key=lambda h: -h.score)
    assert agentkit.tools.search_tool("zzzz qqqq") == []
    with pytest.raises(ConfigError, match="needs a query"):
        agentkit.tools.search_tool(" ")
