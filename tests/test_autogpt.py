"""AutoGPT: JSON commands until finish, tolerant parsing, recovery, budgets, streaming and approvals."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.agents import create_agent
from agentkit.budgets import Budget
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.protocols.autogpt import FORMAT_HINT, AutoGPTProtocol
from agentkit.toolspec import ToolSpec
from agentkit.tools import tool

P = AutoGPTProtocol()


def command(name: str, **args) -> str:
    return json.dumps({"thoughts": {"text": f"use {name}", "reasoning": "needed", "plan": "- do it",
                                    "criticism": "none", "speak": f"running {name}"},
                       "command": {"name": name, "args": args}})


def finish(response: str) -> str:
    return json.dumps({"thoughts": {"text": "done"}, "command": {"name": "finish", "args": {"response": response}}})


def notes_tool(log: list, requires_approval: bool = False):
    @tool(requires_approval=requires_approval)
    def note(text: str) -> str:
        """Write a note down."""
        log.append(text)
        return f"noted {len(log)}"

    return note


def test_keeps_going_after_successful_commands_until_finish():
    log: list = []
    script = [command("note", text="a"), command("note", text="b"), command("note", text="c"), finish("three notes")]
    agent = create_agent("autogpt", ScriptedModel(script), tools=[notes_tool(log)], checkpointer="memory")
    result = agent.run("Write three notes.")
    assert log == ["a", "b", "c"]
    assert result.outcome == "answer" and result.answer == "three notes" and result.steps == 4
    assistant = [m for m in result.messages if m.role == "assistant"]
    assert assistant[0].meta["thoughts"]["plan"] == "- do it" and assistant[0].text == "use note"
    prompt = P.render(result.messages[:-1], tools=[notes_tool([]).spec])
    assert "Command note returned: noted 3" in prompt and '"name": "finish"' not in prompt.split("Commands:")[0]


@pytest.mark.parametrize(("text", "name", "args"), [
    ("```json\n" + command("note", text="x") + "\n```", "note", {"text": "x"}),
    ("Sure! Here it is: " + command("note", text="x") + " Hope that helps.", "note", {"text": "x"}),
    ("{'command': {'name': 'note', 'args': {'text': 'x',},},}", "note", {"text": "x"}),
    ('{"command": "note", "args": {"text": "x"}}', "note", {"text": "x"}),
    ('{"command": {"name": "note", "arguments": {"text": "x"}}}', "note", {"text": "x"}),
    ('{"thoughts": "plain", "command": {"name": "note", "args": "{\\"text\\": \\"x\\"}"}}', "note", {"text": "x"}),
    ('{"command": {"name": "python", "args": {"code": "print(1)"}}}', "python_interpreter", {"code": "print(1)"}),
    ('{"command": [{"name": "note", "args": {"text": "x"}}]}', "note", {"text": "x"}),
    ('{"command": {"name": "note", "args": {"text": "x"}}', "note", {"text": "x"}),  # the last brace missing
])
def test_tolerant_parsing(text, name, args):
    message = P.parse(text)
    assert message.parse_error is None
    [call] = message.tool_calls
    assert call.name == name and call.arguments == args


@pytest.mark.parametrize(("text", "problem"), [
    ("I will write a note now.", "expected a JSON object"),
    ('{"thoughts": {"text": "hm"}}', 'no "command"'),
    ('{"command": {"args": {}}}', 'no "name"'),
    ('{"command": {"name": "finish", "args": {}}}', "needs args"),
    ('{"command": {"name": "note", "args": [1, 2]}}', "must be a JSON object"),
    ('{"command": [{"name": "a"}, {"name": "b"}]}', "exactly one"),
    ('{"thoughts": {"text": "t"}, "command": {"name": "note", "args": {"text": "cut off', "could not be read"),
])
def test_unparseable_replies_say_what_is_wrong(text, problem):
    message = P.parse(text)
    assert problem in message.parse_error and message.parse_error.endswith(FORMAT_HINT)
    assert message.tool_calls == []


def test_finish_variants_and_answer():
    assert P.parse('{"command": {"name": "finish", "args": {"response": "42"}}}').text == "42"
    assert P.parse('{"command": "task_complete", "args": {"reason": "done it"}}').text == "done it"
    assert P.parse('{"command": {"name": "finish", "args": {"response": {"a": 1}}}}').text == '{"a": 1}'
    final = P.parse('{"thoughts": {"text": "t", "plan": ["a", "b"]}, "command": {"name": "finish", "args": "ok"}}')
    assert final.text == "ok" and final.meta["thoughts"] == {"text": "t", "plan": "- a\n- b"}
    # a generic word is a tool name, not "finish": the parser cannot know the tools, so it must not guess
    assert P.parse('{"command": {"name": "answer", "args": {"q": "x"}}}').tool_calls[0].name == "answer"


def test_history_shows_unparsed_replies_as_written_and_names_each_result():
    call = ToolCall(id="c1", name="note", arguments={"text": "x"})
    unparsed = P.parse("I think I will write a note.")
    unparsed.meta["raw"] = "I think I will write a note."
    result = Message(role="environment", name="plugin", tool_call_id="c1", content="noted 1")  # no tool_name
    prompt = P.render([Message.user("goal"), unparsed, P.error_feedback(unparsed.parse_error),
                       Message.assistant("", [call]), result])
    assert "assistant\nI think I will write a note.<|im_end|>" in prompt
    assert "Command note returned: noted 1" in prompt
    assert '"finish", "args"' not in prompt.split("<|im_start|>user")[1]
    assert P.render_assistant(P.parse("no json here")) == ""  # without the raw text: nothing made up


def test_a_malformed_reply_is_fed_back_and_the_model_recovers():
    log: list = []
    agent = create_agent("autogpt", ScriptedModel(["I think I should write a note.", command("note", text="x"),
                                                   finish("ok")]), tools=[notes_tool(log)], checkpointer="memory")
    result = agent.run("note x")
    assert result.outcome == "answer" and log == ["x"]
    feedback = [m for m in result.messages if m.meta.get("feedback") == "parse_error"]
    assert len(feedback) == 1 and "could not be understood" in feedback[0].text


def test_a_failing_command_is_reported_and_the_loop_goes_on():
    @tool
    def fragile(text: str) -> str:
        """Fails."""
        raise RuntimeError("disk full")

    agent = create_agent("autogpt", ScriptedModel([command("fragile", text="a"), finish("gave up politely")]),
                         tools=[fragile], checkpointer="memory")
    result = agent.run("try it")
    assert result.outcome == "answer" and result.answer == "gave up politely"
    prompt = P.render(result.messages[:-1], tools=[fragile.spec])
    assert "Command fragile returned: Error: RuntimeError: disk full" in prompt


def test_unparseable_output_gives_up_after_the_retries():
    agent = create_agent("autogpt", ScriptedModel(lambda m: "no json, ever"), tools=[notes_tool([])],
                         checkpointer="memory", budget=Budget(max_parse_retries=2))
    result = agent.run("go")
    assert result.outcome == "parse_error" and result.steps == 3


def test_a_run_that_never_finishes_stops_at_the_budget():
    log: list = []
    counter = iter(range(1000))
    agent = create_agent("autogpt", ScriptedModel(lambda m: command("note", text=f"n{next(counter)}")),
                         tools=[notes_tool(log)], checkpointer="memory", budget=Budget(max_steps=4))
    result = agent.run("never stop")
    assert result.outcome == "max_steps" and len(log) == 4


def test_the_same_command_again_and_again_is_stopped():
    log: list = []
    agent = create_agent("autogpt", ScriptedModel(lambda m: command("note", text="same")), tools=[notes_tool(log)],
                         checkpointer="memory")
    result = agent.run("loop")
    assert result.outcome == "repeated_tool_call" and len(log) == 2


def test_token_and_time_budgets_stop_an_endless_run():
    counter = iter(range(1000))
    endless = ScriptedModel(lambda m: command("note", text=f"n{next(counter)}"))
    result = create_agent("autogpt", endless, tools=[notes_tool([])], checkpointer="memory",
                          budget=Budget(max_steps=100, max_tokens=100)).run("never stop")
    assert result.outcome == "max_tokens" and result.usage.completion_tokens >= 100 and result.steps < 10

    @tool
    def slow(text: str) -> str:
        """Takes a while."""
        time.sleep(0.05)
        return "ok"

    counter2 = iter(range(1000))
    agent = create_agent("autogpt", ScriptedModel(lambda m: command("slow", text=f"n{next(counter2)}")),
                         tools=[slow], checkpointer="memory", budget=Budget(max_steps=100, max_seconds=0.3))
    result = agent.run("never stop")
    assert result.outcome == "max_seconds" and 1 <= result.steps < 100


def test_stream_reports_steps_and_the_result():
    agent = create_agent("autogpt", ScriptedModel([command("note", text="s"), finish("streamed")]),
                         tools=[notes_tool([])], checkpointer="memory")
    events = list(agent.stream("go"))
    assert [e.node for e in events if e.type == "step"] == ["call_model", "run_tools", "call_model"]
    tokens = "".join(e.delta for e in events if e.type == "token")
    assert tokens == command("note", text="s") + finish("streamed")
    assert events[-1].type == "result" and events[-1].result.answer == "streamed"


async def test_async_run_keeps_going_until_finish():
    log: list = []
    agent = create_agent("autogpt", ScriptedModel([command("note", text="a"), command("note", text="b"),
                                                   finish("two")]), tools=[notes_tool(log)], checkpointer="memory")
    assert agent.parts.protocol.name == "autogpt"
    result = await agent.arun("two notes")
    assert result.answer == "two" and log == ["a", "b"]


def test_a_command_needing_approval_waits_and_resumes():
    log: list = []
    guarded = notes_tool(log, requires_approval=True)
    agent = create_agent("autogpt", ScriptedModel([command("note", text="risky"), finish("noted")]),
                         tools=[guarded], checkpointer="memory")
    waiting = agent.run("note it")
    assert waiting.outcome == "interrupted" and log == [] and waiting.pending[0].arguments == {"text": "risky"}
    done = agent.resume(waiting.thread_id, "approve")
    assert done.answer == "noted" and log == ["risky"]


def test_a_rejected_command_is_reported_and_the_model_goes_on():
    log: list = []
    script = [command("note", text="risky"), command("note", text="safe"), finish("kept it safe")]

    guarded = notes_tool(log, requires_approval=True)
    agent = create_agent("autogpt", ScriptedModel(script), tools=[guarded], checkpointer="memory")
    waiting = agent.run("note something")
    rejected = agent.resume(waiting.thread_id, "reject")
    assert rejected.outcome == "interrupted" and log == []  # the second command needs approval too
    done = agent.resume(waiting.thread_id, "approve")
    assert done.answer == "kept it safe" and log == ["safe"]
    history = P.render(agent.history(waiting.thread_id))
    assert "Command note returned: Error: the user rejected this call" in history


names = st.sampled_from(["note", "search", "python_interpreter"])
values = st.one_of(st.text(max_size=30), st.integers(), st.booleans())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), names, st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), values, max_size=3),
       st.text(min_size=1, max_size=40).filter(str.strip))
def test_render_then_parse_round_trips(thought, name, args, answer):
    if name == "python_interpreter":
        call = ToolCall(name=name, arguments={"code": "print(1)"}, kind="interpreter")
    else:
        call = ToolCall(name=name, arguments=args)
    parsed = P.parse(P.render_assistant(Message.assistant(thought, [call])))
    assert parsed.parse_error is None and parsed.text == thought.strip()
    assert [(c.name, c.arguments, c.kind) for c in parsed.tool_calls] == [(call.name, call.arguments, call.kind)]
    thoughts = {"text": thought, "plan": "- a\n- b"} if thought else {}
    final = P.parse(P.render_assistant(Message.assistant(answer, meta={"thoughts": thoughts})))
    assert final.tool_calls == [] and final.text == answer.strip()
    assert final.meta.get("thoughts", {}) == thoughts


def test_render_lists_commands_with_their_arguments():
    spec = ToolSpec(name="search", description="Search the web.",
                    parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    prompt = P.render([Message.user("Find the tallest tower.")], tools=[spec])
    assert '- search: Search the web. args: {"query": {"type": "string"}}' in prompt
    assert "one of [search, finish]" in prompt and prompt.endswith("<|im_start|>assistant\n")
    required = spec.model_copy(update={"parameters": {**spec.parameters, "required": ["query"]}})
    assert 'args: {"query": {"type": "string"}} (required: query)' in P.render([Message.user("x")], tools=[required])
