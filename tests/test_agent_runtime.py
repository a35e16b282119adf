"""The agent runtime with the scripted model standing in for the LLM: tool calls, recovery, budgets,
tool failures, threads, streaming and async. Model text is parsed by the real protocols."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest

from agentkit.agents import create_agent
from agentkit.budgets import Budget
from agentkit.errors import ConfigError
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import FunctionTool, ToolError, ToolSpec
from agentkit.trajectory import read_trajectories

NUMBERS = {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}


def make_add(log: list | None = None) -> FunctionTool:
    def add(a: float, b: float) -> str:
        if log is not None:
            log.append((a, b))
        return str(a + b)

    return FunctionTool(add, ToolSpec(name="add", description="Add two numbers.", parameters=NUMBERS))


def call(name: str, **arguments) -> Message:
    return Message.assistant("", [ToolCall(name=name, arguments=arguments)])


def agent_with(script, tools=None, **kwargs):
    kwargs.setdefault("checkpointer", "memory")
    return create_agent("react", ScriptedModel(script), tools=tools if tools is not None else [make_add()], **kwargs)


def test_tool_call_then_answer_records_everything(tmp_path):
    log: list = []
    trajectory = tmp_path / "runs.jsonl"
    agent = agent_with([call("add", a=2, b=3), Message.assistant("2 + 3 = 5")], tools=[make_add(log)],
                       trajectory_path=trajectory)
    result = agent.run("What is 2 + 3?")
    assert result.outcome == "answer" and result.ok
    assert result.answer == "2 + 3 = 5"
    assert log == [(2, 3)]
    assert [m.role for m in result.messages] == ["user", "assistant", "environment", "assistant"]
    env = result.messages[2]
    assert env.text == "5" and env.name == "plugin" and env.tool_call_id == result.tool_calls[0].id
    assert result.steps == 2
    assert result.usage.completion_tokens > 0 and result.usage.prompt_tokens > 0
    [record] = list(read_trajectories(trajectory, strict=True))
    assert record.id == result.trajectory_id
    assert record.outcome == "answer" and record.answer == "2 + 3 = 5"
    assert [c.name for c in record.tool_calls] == ["add"]
    assert record.tools[0]["name"] == "add" and record.agent == "react"


def test_text_output_is_parsed_by_the_agents_protocol():
    script = [
        'Thought: I should add.\nAction: add\nAction Input: {"a": 20, "b": 22}',
        "Thought: done\nFinal Answer: 42",
    ]
    result = agent_with(script).run("What is 20 + 22?")
    assert result.outcome == "answer"
    assert result.tool_calls[0].arguments == {"a": 20, "b": 22}
    assert result.messages[2].text == "42"
    assert "42" in result.answer


def test_internlm2_agent_runs_plugin_actions():
    script = [
        'I will add.<|action_start|><|plugin|>\n{"name": "add", "parameters": {"a": 1, "b": 2}}<|action_end|>',
        "The sum is 3.",
    ]
    agent = create_agent("internlm2", ScriptedModel(script), tools=[make_add()], checkpointer="memory")
    result = agent.run("1 + 2?")
    assert result.outcome == "answer" and result.answer == "The sum is 3."
    assert result.messages[2].role == "environment" and result.messages[2].text == "3"


def test_parse_error_is_shown_to_the_model_and_retried():
    seen: list[list[Message]] = []

    def script(messages):
        seen.append(list(messages))
        turn = sum(m.role == "assistant" for m in messages)
        if turn == 0:
            return Message.assistant("garbled", meta={"parse_error": "the action JSON has no 'name'"})
        return Message.assistant("fixed answer")

    result = agent_with(script).run("hi")
    assert result.outcome == "answer" and result.answer == "fixed answer"
    feedback = seen[1][-1]
    assert feedback.role == "environment" and "the action JSON has no 'name'" in feedback.text
    assert feedback.meta["feedback"] == "parse_error"


def test_unrecoverable_output_ends_the_run_without_crashing():
    bad = Message.assistant("???", meta={"parse_error": "no action found"})
    result = agent_with(lambda _: bad, budget=Budget(max_parse_retries=2)).run("hi")
    assert result.outcome == "parse_error"
    assert result.steps == 3  # the first try and two retries


def test_max_steps_budget():
    counter = iter(range(1000))
    result = agent_with(lambda _: call("add", a=next(counter), b=1), budget=Budget(max_steps=4)).run("loop")
    assert result.outcome == "max_steps"
    assert result.steps == 4
    assert len(result.tool_calls) == 4


def test_max_tokens_budget_caps_generation():
    long_reply = Message.assistant("word " * 50, tool_calls=[ToolCall(name="add", arguments={"a": 1, "b": 1})])
    counter = iter(range(1000))

    def script(_):
        reply = long_reply.model_copy(deep=True)
        reply.tool_calls[0].arguments["a"] = next(counter)
        return reply

    result = agent_with(script, budget=Budget(max_tokens=120)).run("talk")
    assert result.outcome == "max_tokens"
    assert result.steps == 3  # 50 + 50 tokens fit, the third reply crosses 120
    assert result.usage.completion_tokens >= 120


def test_wall_time_budget():
    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    tool = FunctionTool(slow, ToolSpec(name="sleep", parameters={"type": "object", "properties": {"seconds": {}}}))
    counter = iter(range(1000))
    started = time.monotonic()
    result = agent_with(lambda _: call("sleep", seconds=0.2 + next(counter) / 1000), tools=[tool],
                        budget=Budget(max_seconds=0.5)).run("wait")
    assert result.outcome == "max_seconds"
    assert time.monotonic() - started < 2.0


def test_repeated_tool_call_stops_the_run():
    log: list = []
    result = agent_with(lambda _: call("add", a=1, b=1), tools=[make_add(log)]).run("loop")
    assert result.outcome == "repeated_tool_call"
    assert len(log) == 2  # the third identical call is not executed


def test_tool_exception_becomes_an_environment_message():
    def explode(**_):
        raise RuntimeError("disk on fire")

    def refuse(**_):
        raise ToolError("account 42 not found; use an id from list_accounts")

    tools = [FunctionTool(explode, ToolSpec(name="explode")), FunctionTool(refuse, ToolSpec(name="refuse"))]
    script = [call("explode"), call("refuse"), call("missing_tool"), Message.assistant("sorry")]
    result = agent_with(script, tools=tools).run("go")
    assert result.outcome == "answer"
    errors = [m for m in result.messages if m.role == "environment"]
    assert errors[0].text == "Error: RuntimeError: disk on fire" and errors[0].meta["error"] is True
    assert errors[1].text == "Error: account 42 not found; use an id from list_accounts"
    assert "unknown tool 'missing_tool'" in errors[2].text and "explode, refuse" in errors[2].text


def test_interpreter_call_without_interpreter_is_explained():
    script = [Message.assistant("", [ToolCall(name="python_interpreter", kind="interpreter",
                                              arguments={"code": "1+1"})]), Message.assistant("ok")]
    agent = create_agent("internlm2", ScriptedModel(script), tools=[make_add()], checkpointer="memory")
    result = agent.run("compute")
    env = result.messages[2]
    assert env.name == "interpreter" and "no code interpreter is enabled" in env.text


def test_parallel_tool_calls_run_concurrently_and_keep_order():
    barrier = threading.Barrier(3, timeout=5)

    def wait(i: int) -> str:
        barrier.wait()  # deadlocks unless all three run at once
        return f"done {i}"

    tool = FunctionTool(wait, ToolSpec(name="wait", parameters={"type": "object", "properties": {"i": {}}}))
    first = Message.assistant("", [ToolCall(name="wait", arguments={"i": i}) for i in range(3)])
    result = agent_with([first, Message.assistant("all done")], tools=[tool]).run("go")
    assert [m.text for m in result.messages if m.role == "environment"] == ["done 0", "done 1", "done 2"]
    ids = [c.id for c in first.tool_calls]
    assert [m.tool_call_id for m in result.messages if m.role == "environment"] == ids


def test_threads_keep_history_and_results_cover_one_run():
    def script(messages):
        users = [m.text for m in messages if m.role == "user"]
        return Message.assistant(f"you said {len(users)} things: {' / '.join(users)}")

    agent = agent_with(script)
    agent.run("first", thread_id="t")
    second = agent.run("second", thread_id="t")
    assert second.answer == "you said 2 things: first / second"
    assert [m.text for m in second.messages] == ["second", second.answer]
    assert len(agent.history("t")) == 4


def test_stream_yields_tokens_steps_and_result():
    agent = agent_with([call("add", a=1, b=2), Message.assistant("three it is")])
    events = list(agent.stream("1+2", thread_id="s"))
    tokens = "".join(e.delta for e in events if e.type == "token")
    assert "three it is" in tokens
    steps = [e.node for e in events if e.type == "step"]
    assert steps == ["call_model", "run_tools", "call_model"]
    assert events[-1].type == "result" and events[-1].result.answer == "three it is"


def test_async_run_and_stream():
    async def slow_add(a: float, b: float) -> str:
        await asyncio.sleep(0.01)
        return str(a + b)

    class AsyncAdd:
        spec = ToolSpec(name="add", parameters=NUMBERS)

        def invoke(self, arguments):
            raise AssertionError("the async path must use ainvoke")

        async def ainvoke(self, arguments):
            return await slow_add(**arguments)

    agent = agent_with([call("add", a=2, b=2), Message.assistant("four")], tools=[AsyncAdd()])

    async def main():
        result = await agent.arun("2+2")
        events = [e async for e in agent.astream("2+2 again")]
        return result, events

    result, events = asyncio.run(main())
    assert result.answer == "four" and result.messages[2].text == "4"
    assert events[-1].result.outcome == "answer"


def test_no_checkpointer_runs_but_refuses_threads():
    agent = agent_with([Message.assistant("hi")], checkpointer=None)
    assert agent.run("hello").answer == "hi"
    with pytest.raises(ConfigError, match="checkpointer"):
        agent.run("hello", thread_id="x")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="unknown agent 'nope'"):
        create_agent("nope", ScriptedModel(["x"]))
    with pytest.raises(ConfigError, match="not a tool"):
        create_agent("react", ScriptedModel(["x"]), tools=[object()], checkpointer=None)
    with pytest.raises(ConfigError, match="unique"):
        create_agent("react", ScriptedModel(["x"]), tools=[make_add(), make_add()], checkpointer=None)
    with pytest.raises(ConfigError, match="needs an input"):
        agent_with(["x"]).run([])


def test_trajectory_lines_survive_concurrent_runs(tmp_path):
    path = tmp_path / "t.jsonl"
    agent = agent_with(lambda _: Message.assistant("ok " * 200), checkpointer=None, trajectory_path=path)
    threads = [threading.Thread(target=lambda: [agent.run("go") for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 20
    assert all(json.loads(line)["outcome"] == "answer" for line in lines)
