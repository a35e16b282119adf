"""Typed tools: schemas from hints and docstrings, validation errors a model can act on, lazy setup, timeouts,
async tools, and multimodal values passed by reference from one tool to the next inside a real agent run."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Annotated, Literal

import numpy as np
import pytest
from pydantic import Field

from agentkit.agents import create_agent
from agentkit.messages import ImagePart, Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import Tool, ToolError
from agentkit.tools import AudioIO, BaseTool, File, ImageIO, tool
from agentkit.tools.base import parse_docstring, to_tool_output


@pytest.fixture(autouse=True)
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path / "artifacts"


@tool
def convert(amount: float, unit: Literal["km", "mi"], digits: Annotated[int, Field(ge=0, le=6)] = 2) -> str:
    """Convert a distance between kilometres and miles.

    Args:
        amount: the distance to convert.
        unit: the unit ``amount`` is in.
    """
    factor = 0.621371 if unit == "km" else 1.609344
    return f"{round(amount * factor, digits)}"


class Thumbnail(BaseTool):
    """Shrink an image so its longest side is ``size`` pixels."""

    setups = 0

    def setup(self) -> None:
        type(self).setups += 1

    def apply(self, image: ImageIO, size: Annotated[int, "longest side in pixels"] = 16) -> ImageIO:
        picture = image.to_pil().copy()
        picture.thumbnail((size, size))
        return ImageIO(picture)


class Describe(BaseTool):
    name = "describe"
    description = "Say how big an image is."

    def apply(self, image: ImageIO) -> str:
        width, height = image.size
        return f"{width}x{height}"


def test_schema_from_hints_and_docstring():
    spec = convert.spec
    assert spec.name == "convert"
    assert spec.description == "Convert a distance between kilometres and miles."
    props = spec.parameters["properties"]
    assert props["amount"] == {"type": "number", "description": "the distance to convert."}
    assert props["unit"]["enum"] == ["km", "mi"] and props["unit"]["description"].startswith("the unit")
    assert props["digits"]["default"] == 2 and props["digits"]["maximum"] == 6
    assert spec.parameters["required"] == ["amount", "unit"]
    assert "title" not in str(spec.parameters)
    assert convert.to_openai()["function"]["parameters"] == spec.parameters
    assert convert.to_internlm2() == {"name": "convert", "description": spec.description,
                                      "parameters": spec.parameters}
    assert convert.meta.outputs == ("text",) and Thumbnail().meta.outputs == ("image",)
    assert isinstance(convert, Tool)


def test_decorated_tool_still_calls_like_the_function():
    assert convert(10, "km") == "6.21"
    assert convert(amount="1", unit="mi", digits=0) == "2.0"  # lax coercion of "1"
    with pytest.raises(ToolError, match="unit"):
        convert(1, "furlong")


def test_validation_errors_name_the_field_and_the_expected_type():
    with pytest.raises(ToolError) as info:
        convert.invoke({"amount": "far", "unit": "km", "colour": "red"})
    text = str(info.value)
    assert "argument 'amount' should be a number" in text
    assert "unknown argument 'colour'" in text
    assert "It takes {amount: a number, unit: one of \"km\", \"mi\", digits: an integer (optional)}" in text
    with pytest.raises(ToolError, match=r"missing argument 'unit' \(one of \"km\", \"mi\"\)"):
        convert.invoke({"amount": 3})
    with pytest.raises(ToolError, match="JSON object"):
        convert.invoke(["km"])  # type: ignore[arg-type]


def test_docstring_parsing_google_and_sphinx():
    summary, args = parse_docstring("""Do a thing.

    Longer text.

    Args:
        path (str): where the file is,
            relative to the work dir.
        mode: how to open it.

    Returns:
        nothing: really.
    """)
    assert summary == "Do a thing."
    assert args == {"path": "where the file is, relative to the work dir.", "mode": "how to open it."}
    summary, args = parse_docstring("Fetch.\n\n:param str url: the address\n:param timeout: seconds\n")
    assert summary == "Fetch." and args == {"url": "the address", "timeout": "seconds"}


def test_a_tool_without_description_or_with_varargs_is_refused_at_definition():
    with pytest.raises(TypeError, match="needs a description"):
        @tool
        def nameless(x: int) -> int:
            return x

    with pytest.raises(TypeError, match=r"\*args"):
        @tool
        def spread(*values: int) -> int:
            """Sum."""
            return sum(values)


def test_setup_runs_once_lazily_even_under_concurrency():
    Thumbnail.setups = 0
    thumb = Thumbnail()
    assert thumb.spec.name == "thumbnail" and Thumbnail.setups == 0  # describing does not set up
    image = str(ImageIO(np.zeros((40, 20, 3), dtype=np.uint8)).path)
    threads = [threading.Thread(target=thumb.invoke, args=({"image": image},)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Thumbnail.setups == 1


def test_timeout_returns_an_error_and_the_tool_stays_usable():
    @tool(timeout=0.2)
    def slow(seconds: float) -> str:
        """Sleep."""
        time.sleep(seconds)
        return "woke"

    started = time.perf_counter()
    with pytest.raises(ToolError, match="did not finish within 0.2 s"):
        slow.invoke({"seconds": 30})
    assert time.perf_counter() - started < 15  # far from the 30 s call: it was abandoned, on any CI load
    assert slow.invoke({"seconds": 0}) == "woke"


async def test_async_tool_sync_and_async_paths():
    @tool(timeout=0.5)
    async def fetch(key: str) -> dict:
        """Look a key up."""
        await asyncio.sleep(0.01)
        if key == "slow":
            await asyncio.sleep(5)
        return {"key": key, "found": True}

    assert await fetch.ainvoke({"key": "a"}) == '{"key": "a", "found": true}'
    assert fetch.invoke({"key": "b"}) == '{"key": "b", "found": true}'  # called from inside a running loop
    with pytest.raises(ToolError, match="did not finish"):
        await fetch.ainvoke({"key": "slow"})


def test_io_types_convert_lazily_and_by_reference(artifacts):
    pixels = np.random.default_rng(0).integers(0, 255, (12, 30, 3), dtype=np.uint8)
    image = ImageIO(pixels)
    path = image.path
    assert path.parent == artifacts and path.suffix == ".png"
    assert ImageIO(pixels).path == path  # content-addressed: the same image is stored once
    again = ImageIO(path.name)  # a bare artifact name resolves in the store
    assert again.size == (30, 12) and np.array_equal(again.to_array(), pixels)
    assert ImageIO(f"[image: {path}]") == image and ImageIO(f"file://{path}") == image
    with pytest.raises(ValueError, match="no file at"):
        ImageIO("missing.png")
    with pytest.raises(TypeError, match="takes a path"):
        ImageIO(3.5)

    samples = np.sin(np.linspace(0, 40, 1600)).astype(np.float32)
    audio = AudioIO(samples, sample_rate=8000)
    assert audio.path.suffix == ".wav"
    decoded = AudioIO(str(audio.path))
    assert np.allclose(decoded.to_array(), samples, atol=1e-4) and decoded.sample_rate == 8000
    with pytest.raises(ValueError, match="sample_rate"):
        AudioIO(samples)

    doc = File(b"a,b\n1,2\n", mime_type="text/csv")
    assert doc.path.suffix == ".csv" and doc.path.read_bytes() == b"a,b\n1,2\n"
    assert to_tool_output((doc, "done"))[1].text == "done"


def test_image_flows_between_tools_inside_an_agent(artifacts):
    source = str(ImageIO(np.full((64, 32, 3), 200, dtype=np.uint8)).path)

    def script(messages: list[Message]):
        turn = sum(m.role == "assistant" for m in messages)
        if turn == 0:
            return Message.assistant("", [ToolCall(name="thumbnail", arguments={"image": source, "size": "8"})])
        if turn == 1:
            made = messages[-1].content[0]
            assert isinstance(made, ImagePart)
            return Message.assistant("", [ToolCall(name="describe", arguments={"image": made.url})])
        if turn == 2:
            return Message.assistant("", [ToolCall(name="describe", arguments={"picture": "x.png"})])
        return Message.assistant(f"The thumbnail is {messages[-3].text}.")

    agent = create_agent("react", ScriptedModel(script), tools=[Thumbnail(), Describe()], checkpointer="memory")
    result = agent.run("Make a thumbnail and tell me its size.")
    assert result.outcome == "answer"
    env = [m for m in result.messages if m.role == "environment"]
    assert env[0].text.startswith("[image: ") and str(artifacts) in env[0].text
    assert env[1].text == "4x8"
    assert env[2].meta.get("error") and "unknown argument 'picture'" in env[2].text
    assert "missing argument 'image'" in env[2].text
    assert result.answer == "The thumbnail is 4x8."


def test_a_raising_tool_becomes_an_environment_error_and_the_agent_continues():
    @tool
    def divide(a: float, b: float) -> float:
        """Divide a by b."""
        return a / b

    script = [
        Message.assistant("", [ToolCall(name="divide", arguments={"a": 1, "b": 0})]),
        Message.assistant("", [ToolCall(name="divide", arguments={"a": 1, "b": 4})]),
        Message.assistant("It is 0.25."),
    ]
    result = create_agent("react", ScriptedModel(script), tools=[divide], checkpointer="memory").run("1/4?")
    env = [m for m in result.messages if m.role == "environment"]
    assert "ZeroDivisionError" in env[0].text and env[0].meta.get("error")
    assert env[1].text == "0.25"
    assert result.outcome == "answer"
