"""LangChain interop both ways: LangChain tools in agentkit agents, agentkit tools and models in LangChain /
LangGraph graphs, structured output, message conversion, and LangChain chat models driving agentkit agents.

The scripted model stands in for the LLM (these tests are about the adapters); model text still goes through the
real protocol parsers. One slow test runs the real embedded model inside LangChain's ``create_agent``."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain.agents import create_agent as create_langchain_agent
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool as LangChainBaseTool
from langchain_core.tools import StructuredTool, ToolException
from langchain_core.tools import tool as langchain_tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from pydantic import BaseModel, Field

from agentkit.agents import create_agent
from agentkit.errors import ConfigError
from agentkit.messages import AudioPart, FilePart, ImagePart, Message, TextPart, ToolCall, Usage
from agentkit.models.langchain import (
    AgentkitChatModel,
    LangChainChatModel,
    as_tool_spec,
    from_langchain_messages,
    to_langchain_messages,
)
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import FunctionTool, ToolError, ToolSpec
from agentkit.tools.base import BaseTool, tool
from agentkit.tools.io import ImageIO
from agentkit.tools.langchain import from_langchain, to_langchain

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@tool
def add(a: float, b: float) -> float:
    """Add two numbers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b


@tool
def find_account(account_id: int) -> str:
    """Look up an account."""
    raise ToolError(f"account {account_id} not found; use an id from list_accounts")


@langchain_tool
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def openai_call(tool_name: str, /, **arguments) -> str:
    """A reply in the openai_tools protocol's text format, as a completion model writes it."""
    return f'<tool_call>\n{json.dumps({"name": tool_name, "arguments": arguments})}\n</tool_call>'


# -- LangChain tools in agentkit agents --------------------------------------------------------------


def test_a_langchain_tool_serves_an_agentkit_react_agent():
    script = ['Thought: I should multiply.\nAction: multiply\nAction Input: {"a": 6, "b": 7}',
              "Thought: I know it now.\nFinal Answer: 6 * 7 = 42"]
    agent = create_agent("react", ScriptedModel(script), tools=[from_langchain(multiply)], checkpointer="memory")
    result = agent.run("What is 6 * 7?")
    assert result.outcome == "answer" and result.answer == "6 * 7 = 42"
    env = result.messages[2]
    assert (env.role, env.text, env.meta["tool_name"]) == ("environment", "42", "multiply")


def test_from_langchain_reads_the_schema_of_every_kind_of_langchain_tool():
    class Query(BaseModel):
        query: str = Field(description="what to look for")
        limit: int = 3

    structured = StructuredTool.from_function(lambda query, limit=3: f"{limit} hits for {query}", name="search",
                                              description="Search the docs.", args_schema=Query)
    dict_schema = StructuredTool(name="echo", description="Echo.", func=lambda **kw: kw["text"],
                                 args_schema={"type": "object", "properties": {"text": {"type": "string"}},
                                              "required": ["text"]})

    class Shout(LangChainBaseTool):
        name: str = "shout"
        description: str = "Say it loudly."

        def _run(self, text: str) -> str:
            return text.upper()

    specs = {t.name: from_langchain(t).spec for t in (multiply, structured, dict_schema, Shout())}
    assert specs["multiply"].parameters["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert specs["multiply"].description == "Multiply two integers."
    assert specs["search"].parameters["properties"]["query"]["description"] == "what to look for"
    assert specs["search"].parameters["required"] == ["query"]
    assert specs["echo"].parameters["required"] == ["text"]
    assert specs["shout"].parameters["properties"]["text"]["type"] == "string"
    assert from_langchain(structured).invoke({"query": "tools"}) == "3 hits for tools"
    assert from_langchain(Shout()).invoke({"text": "hi"}) == "HI"
    assert from_langchain(multiply, requires_approval=True).spec.requires_approval
    with pytest.raises(TypeError, match="LangChain tool"):
        from_langchain(add)  # an agentkit tool is already a tool


def test_from_langchain_turns_langchain_errors_into_tool_errors():
    def fail(x: int) -> str:
        raise ToolException(f"no record {x}")

    raising = StructuredTool.from_function(fail, name="lookup", description="Look up.")
    handled = StructuredTool.from_function(fail, name="lookup", description="Look up.", handle_tool_error=True)
    for lc_tool in (raising, handled):
        with pytest.raises(ToolError, match="no record 7"):
            from_langchain(lc_tool).invoke({"x": 7})
    with pytest.raises(ToolError, match=r"invalid arguments for multiply: argument 'a'.*\(got \"six\"\)"):
        from_langchain(multiply).invoke({"a": "six", "b": 7})


async def test_from_langchain_async_goes_through_ainvoke():
    async def slow_double(x: int) -> str:
        return str(2 * x)

    lc_tool = StructuredTool.from_function(coroutine=slow_double, name="double", description="Double it.")
    assert await from_langchain(lc_tool).ainvoke({"x": 21}) == "42"
    assert from_langchain(lc_tool).invoke({"x": 4}) == "8"  # an async-only tool still serves sync agents
    assert await from_langchain(multiply).ainvoke({"a": 2, "b": 5}) == "10"


# -- agentkit tools in LangChain -----------------------------------------------------------------------


def test_to_langchain_keeps_the_typed_schema_and_calls_through_invoke():
    lc_tool = to_langchain(add)
    assert isinstance(lc_tool, StructuredTool)
    assert lc_tool.args_schema is add.meta.inputs
    assert (lc_tool.name, lc_tool.description) == ("add", "Add two numbers.")
    assert lc_tool.tool_call_schema.model_json_schema()["properties"]["a"]["description"] == "the first number"
    assert lc_tool.invoke({"a": 1, "b": 2}) == "3.0"
    result = lc_tool.invoke({"type": "tool_call", "id": "c1", "name": "add", "args": {"a": 1, "b": 2}})
    assert isinstance(result, ToolMessage) and result.content == "3.0" and result.status == "success"
    failed = to_langchain(find_account).invoke({"type": "tool_call", "id": "c2", "name": "find_account",
                                                "args": {"account_id": 42}})
    assert failed.status == "error" and failed.content == "account 42 not found; use an id from list_accounts"
    assert add.to_langchain().args_schema is add.meta.inputs


async def test_to_langchain_async_and_plain_tools():
    assert await to_langchain(add).ainvoke({"a": 2, "b": 2}) == "4.0"
    plain = FunctionTool(lambda text: text[::-1], ToolSpec(
        name="reverse", description="Reverse text.",
        parameters={"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}))
    lc_tool = to_langchain(plain)
    assert lc_tool.args_schema == plain.spec.parameters
    assert lc_tool.invoke({"text": "abc"}) == "cba"
    assert await lc_tool.ainvoke({"text": "xyz"}) == "zyx"
    back = from_langchain(to_langchain(find_account))
    assert back.spec.parameters == find_account.spec.parameters
    with pytest.raises(ToolError, match="account 3 not found"):
        back.invoke({"account_id": 3})


def test_image_outputs_are_shown_by_path_with_the_parts_as_artifact(tmp_path):
    class Flip(BaseTool):
        """Flip an image upside down."""

        def apply(self, image: ImageIO) -> ImageIO:
            return ImageIO(image.to_bytes())

    source = tmp_path / "in.png"
    source.write_bytes(PNG)
    lc_tool = to_langchain(Flip(artifact_dir=str(tmp_path)))
    result = lc_tool.invoke({"type": "tool_call", "id": "c1", "name": "flip", "args": {"image": str(source)}})
    [part] = result.artifact
    assert isinstance(part, ImagePart) and part.url.startswith(str(tmp_path))
    assert result.content == f"[image: {part.url}]"
    assert from_langchain(lc_tool).invoke({"image": str(source)}) == f"[image: {part.url}]"


# -- agentkit models and tools in LangChain / LangGraph ------------------------------------------------------


@pytest.mark.parametrize("protocol, call", [
    ("openai_tools", "I will add.\n" + openai_call("add", a=2, b=3)),
    ("internlm2", ('I will add.<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 2, "b": 3}}'
                   "<|action_end|>")),
])
def test_langchain_create_agent_runs_an_agentkit_model_and_tool(protocol, call):
    seen: list[list[Message]] = []

    def script(messages: list[Message]) -> str:
        seen.append(messages)
        return [call, "The sum is 5."][sum(m.role == "assistant" for m in messages)]

    llm = AgentkitChatModel(ScriptedModel(script), protocol=protocol)
    agent = create_langchain_agent(model=llm, tools=[to_langchain(add)], system_prompt="Use tools.")
    out = agent.invoke({"messages": [{"role": "user", "content": "What is 2 + 3?"}]})
    ai, tool_msg, final = out["messages"][1:]
    assert ai.content == "I will add." and ai.tool_calls[0]["name"] == "add"
    assert ai.tool_calls[0]["args"] == {"a": 2, "b": 3}
    assert ai.usage_metadata["output_tokens"] > 0
    assert isinstance(tool_msg, ToolMessage) and tool_msg.content == "5.0"
    assert tool_msg.tool_call_id == ai.tool_calls[0]["id"]
    assert final.content == "The sum is 5."
    # the model saw the tool's schema (through its protocol) and the result as an environment message
    assert [m.role for m in seen[1]] == ["system", "user", "assistant", "environment"]
    assert seen[1][-1].text == "5.0" and seen[1][-1].tool_call_id == ai.tool_calls[0]["id"]


def test_a_validation_error_in_a_tool_node_reaches_the_model_naming_the_field():
    seen: list[list[Message]] = []

    def script(messages: list[Message]) -> str:
        seen.append(messages)
        turn = sum(m.role == "assistant" for m in messages)
        return [openai_call("add", a="two", b=3), openai_call("find_account", account_id=7), "I give up."][turn]

    tools = [to_langchain(add), to_langchain(find_account)]
    llm = AgentkitChatModel(ScriptedModel(script), protocol="openai_tools").bind_tools(tools)
    graph = StateGraph(MessagesState)
    graph.add_node("model", lambda state: {"messages": [llm.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", tools_condition)
    graph.add_edge("tools", "model")
    out = graph.compile().invoke({"messages": [HumanMessage("Add two and three, then find account 7.")]})
    errors = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.status for m in errors] == ["error", "error"]
    assert errors[0].content.startswith("invalid arguments for add: argument 'a' should be a number")
    assert errors[1].content == "account 7 not found; use an id from list_accounts"
    env = [m for m in seen[2] if m.role == "environment"]
    assert env[0].meta["error"] is True and "argument 'a'" in env[0].text
    assert out["messages"][-1].content == "I give up."


@pytest.mark.parametrize("protocol, reply", [
    ("openai_tools", openai_call("Person", name="Ada Lovelace", age=36)),
    ("internlm2", ('<|action_start|><|plugin|>\n{"name": "Person", "parameters": {"name": "Ada Lovelace", '
                   '"age": 36}}<|action_end|>')),
])
def test_with_structured_output_returns_a_pydantic_instance(protocol, reply):
    class Person(BaseModel):
        """A person."""

        name: str
        age: int

    model = ScriptedModel(lambda _: reply)
    structured = AgentkitChatModel(model, protocol=protocol).with_structured_output(Person)
    assert structured.invoke("Who wrote the first program?") == Person(name="Ada Lovelace", age=36)
    raw = AgentkitChatModel(model, protocol=protocol).with_structured_output(Person, include_raw=True)
    assert raw.invoke("Who?")["parsed"].age == 36


def test_bind_tools_accepts_every_kind_of_tool():
    class Weather(BaseModel):
        """Get the weather."""

        city: str

    specs = [as_tool_spec(t) for t in (add, to_langchain(add), multiply, Weather, add.spec,
                                       {"type": "function", "function": {"name": "f", "parameters": {}}})]
    assert [s.name for s in specs] == ["add", "add", "multiply", "Weather", "add", "f"]
    assert specs[1].parameters == add.spec.parameters
    assert specs[3].parameters["required"] == ["city"]
    llm = AgentkitChatModel(ScriptedModel(["ok"]))
    with pytest.raises(ValueError, match="names no bound tool"):
        llm.bind_tools([add], tool_choice="multiply")
    with pytest.raises(TypeError, match="cannot use"):
        as_tool_spec(42)


def test_streaming_chat_backends_chunk_by_chunk_and_completion_models_as_one_parsed_chunk():
    inner = LangChainChatModel(GenericFakeChatModel(messages=iter(["hello there, friend"])))
    chunks = list(AgentkitChatModel(inner).stream("hi"))
    assert len(chunks) > 3 and all(isinstance(c, AIMessageChunk) for c in chunks)
    total = chunks[0]
    for chunk in chunks[1:]:
        total += chunk
    assert total.content == "hello there, friend"

    scripted = AgentkitChatModel(ScriptedModel(["Adding.\n" + openai_call("add", a=1, b=2)]), protocol="openai_tools")
    [chunk] = [c for c in scripted.stream("1 + 2?") if c.content or c.tool_calls]
    assert chunk.content == "Adding." and chunk.tool_calls[0]["args"] == {"a": 1, "b": 2}
    assert chunk.usage_metadata["output_tokens"] > 0


async def test_async_invoke_and_stream():
    llm = AgentkitChatModel(ScriptedModel(["Adding.\n" + openai_call("add", a=1, b=2)]), protocol="openai_tools")
    reply = await llm.ainvoke([SystemMessage("Be brief."), HumanMessage("1 + 2?")])
    assert reply.content == "Adding." and reply.tool_calls[0]["name"] == "add"
    inner = LangChainChatModel(GenericFakeChatModel(messages=iter(["streamed async reply"])))
    chunks = [c async for c in AgentkitChatModel(inner).astream("hi")]
    assert "".join(str(c.content) for c in chunks) == "streamed async reply" and len(chunks) > 2


# -- message conversion ----------------------------------------------------------------------------------


def test_messages_convert_both_ways(tmp_path):
    call = ToolCall(name="add", arguments={"a": 1, "b": 2})
    messages = [
        Message.system("You add."),
        Message.user([TextPart(text="What is in"), ImagePart(url="https://example.com/a.png", detail="low")]),
        Message.assistant("Let me add.", [call], usage=Usage(prompt_tokens=9, completion_tokens=4, latency_s=0.5)),
        Message.tool_result(call, "3"),
        Message.tool_result(call, "Error: boom", error=True),
        Message.assistant("garbled", meta={"parse_error": "no JSON", "raw": "garbled <tool_call>"}),
        Message(role="environment", name="plugin", content="Reply again.", meta={"feedback": "parse_error"}),
    ]
    lc = to_langchain_messages(messages)
    assert [type(m).__name__ for m in lc] == ["SystemMessage", "HumanMessage", "AIMessage", "ToolMessage",
                                              "ToolMessage", "AIMessage", "HumanMessage"]
    assert lc[1].content[1] == {"type": "image", "url": "https://example.com/a.png", "extras": {"detail": "low"}}
    assert lc[2].tool_calls == [{"type": "tool_call", "id": call.id, "name": "add", "args": {"a": 1, "b": 2}}]
    assert lc[2].usage_metadata == {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13}
    assert (lc[3].tool_call_id, lc[3].name, lc[3].status, lc[4].status) == (call.id, "add", "success", "error")
    assert lc[5].invalid_tool_calls[0]["error"] == "no JSON"
    assert from_langchain_messages(lc) == messages

    # LangChain-native input: OpenAI-style image parts, invalid calls, reasoning, dicts and (role, text) pairs
    picture = tmp_path / "p.png"
    picture.write_bytes(PNG)
    native = from_langchain_messages([
        ("system", "Be brief."),
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
        AIMessage([{"type": "reasoning", "reasoning": "think"}, {"type": "text", "text": "ok"}],
                  invalid_tool_calls=[{"type": "invalid_tool_call", "name": "add", "args": "{a:", "id": "x",
                                       "error": "bad JSON"}]),
        ToolMessage("42", tool_call_id="c9", name="python_interpreter"),
    ])
    assert native[1].content == [ImagePart(url="data:image/png;base64,AAAA")]
    assert native[2].meta["reasoning"] == "think" and "tool call 'add': bad JSON" in native[2].parse_error
    assert (native[3].role, native[3].name, native[3].meta) == ("environment", "interpreter",
                                                                {"tool_name": "python_interpreter"})
    # local files reach a LangChain model inlined, as they do in agentkit's OpenAI conversion
    [block] = to_langchain_messages([Message.user([ImagePart(url=str(picture))])])[0].content
    assert block == {"type": "image", "base64": base64.b64encode(PNG).decode(), "mime_type": "image/png"}
    with pytest.raises(ValueError, match="unsupported content block"):
        from_langchain_messages([HumanMessage([{"type": "video", "url": "https://example.com/v.mp4"}])])


_text = st.text(max_size=20)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _text,
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
                     max_leaves=6)
_url = st.builds(lambda s: f"https://example.com/{s}", st.text("abc123", min_size=1, max_size=8))
_parts = st.lists(st.one_of(
    st.builds(TextPart, text=_text),
    st.builds(ImagePart, url=_url, detail=st.sampled_from([None, "low", "high"])),
    st.builds(AudioPart, url=_url, format=st.sampled_from([None, "wav", "mp3"])),
    st.builds(FilePart, path=_url, mime_type=st.sampled_from([None, "application/pdf"]),
              name=st.sampled_from([None, "report.pdf"])),
), max_size=3)
_content = _text | _parts
_meta = st.dictionaries(st.sampled_from(["raw", "note", "parse_error"]), _text, max_size=2)
_call = st.builds(ToolCall, name=st.sampled_from(["add", "search"]),
                  arguments=st.dictionaries(_text, _json, max_size=3), kind=st.sampled_from(["plugin", "interpreter"]))
_usage = st.none() | st.builds(Usage, prompt_tokens=st.integers(0, 999), completion_tokens=st.integers(0, 999),
                               latency_s=st.floats(0, 10, allow_nan=False))
_message = st.one_of(
    st.builds(Message, role=st.sampled_from(["system", "user"]), content=_content, name=st.none() | _text,
              meta=_meta),
    st.builds(Message, role=st.just("assistant"), content=_content, name=st.none() | _text, meta=_meta,
              tool_calls=st.lists(_call, max_size=2), usage=_usage),
    st.builds(Message, role=st.just("environment"), content=_content, name=st.sampled_from(["plugin", "interpreter"]),
              tool_call_id=st.none() | st.just("call_1"),
              meta=st.fixed_dictionaries({}, optional={"tool_name": _text, "error": st.booleans()})),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_message, max_size=4))
def test_message_conversion_round_trips(messages):
    assert from_langchain_messages(to_langchain_messages(messages)) == messages


# -- LangChain models driving agentkit agents --------------------------------------------------------------


def test_a_langchain_chat_model_drives_an_agentkit_agent_to_a_tool_call_and_an_answer():
    fake = FakeMessagesListChatModel(responses=[
        AIMessage("", tool_calls=[{"name": "add", "args": {"a": 2, "b": 3}, "id": "c1"}],
                  usage_metadata={"input_tokens": 20, "output_tokens": 8, "total_tokens": 28}),
        AIMessage("2 + 3 = 5"),
    ])
    agent = create_agent("react", LangChainChatModel(fake, bind_tools=False), tools=[add], checkpointer="memory")
    result = agent.run("What is 2 + 3?")
    assert result.outcome == "answer" and result.answer == "2 + 3 = 5"
    assert [m.role for m in result.messages] == ["user", "assistant", "environment", "assistant"]
    assert result.messages[2].text == "5.0" and result.messages[2].tool_call_id == "c1"
    assert result.usage.prompt_tokens == 20 and result.usage.latency_s > 0


def test_tools_are_bound_with_the_langchain_models_own_bind_tools():
    bound: list = []

    class ToolCallingFake(FakeMessagesListChatModel):
        def bind_tools(self, tools, **kwargs):
            bound.append(tools)
            return self.bind(tools=tools, **kwargs)

    fake = ToolCallingFake(responses=[
        AIMessage("", tool_calls=[{"name": "multiply", "args": {"a": 6, "b": 7}, "id": "c1"}]),
        AIMessage("42"),
    ])
    agent = create_agent("internlm2", LangChainChatModel(fake), tools=[from_langchain(multiply)],
                         checkpointer="memory")
    result = agent.run("6 * 7?")
    assert result.answer == "42" and result.messages[2].text == "42"
    assert bound[0][0]["function"]["name"] == "multiply"
    with pytest.raises(ConfigError, match="bind_tools=False"):
        create_agent("react", LangChainChatModel(FakeMessagesListChatModel(responses=[AIMessage("x")])),
                     tools=[add], checkpointer="memory").run("hi")


async def test_langchain_chat_model_streams_tokens_into_an_agentkit_agent():
    fake = GenericFakeChatModel(messages=iter(["The answer is 42."]))
    agent = create_agent("react", LangChainChatModel(fake), checkpointer="memory")
    tokens = [e.delta async for e in agent.astream("What is 6 * 7?") if e.type == "token"]
    assert len(tokens) > 3 and "".join(tokens) == "The answer is 42."


def test_importing_agentkit_does_not_import_langchain_adapters():
    code = ("import sys, agentkit, agentkit.tools, agentkit.models; "
            "print([m for m in sys.modules if m == 'langchain' or m.startswith('langchain.') "
            "or m.endswith('.langchain') or m == 'langchain_core.tools'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_example_runs_offline():
    example = Path(__file__).resolve().parents[1] / "examples" / "langchain_interop.py"
    out = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, check=True, timeout=120)
    assert "LangChain tool -> answer: 4 words." in out.stdout
    assert "tool: 6.5" in out.stdout and "ai: 2.5 + 4 = 6.5" in out.stdout


# -- the real embedded model ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_answers_inside_a_langchain_agent():
    from agentkit.models import load_model

    llm = AgentkitChatModel(load_model("embedded"), generation={"max_new_tokens": 48})
    agent = create_langchain_agent(model=llm, tools=[], system_prompt="You are a helpful assistant.")
    out = agent.invoke({"messages": [{"role": "user", "content": "Say hello in one short sentence."}]})
    reply = out["messages"][-1]
    assert isinstance(reply, AIMessage) and str(reply.content).strip()
    assert reply.usage_metadata["output_tokens"] > 0
