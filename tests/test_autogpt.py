"""AutoGPT: JSON commands until finish, tolerant parsing, recovery, budgets, streaming and approvals."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkit.agents import create_agent
from agentkit.budgets import Budget
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.protocols.autogpt import AutoGPTProtocol
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
])
def test_unparseable_replies_say_what_is_wrong(text, problem):
    message = P.parse(text)
    assert problem in message.parse_error
    assert '"command": {"name"' in message.parse_error or "finish" in message.parse_error
    assert message.tool_calls == []


def test_finish_variants_and_answer():
    assert P.parse('{"command": {"name": "finish", "args": {"response": "42"}}}').text == "42"
    assert P.parse('{"command": "task_complete", "args": {"reason": "done it"}}').text == "done it"


def test_a_malformed_reply_is_fed_back_and_the_model_recovers():
    log: list = []
    agent = create_agent("autogpt", ScriptedModel(["I think I should write a note.", command("note", text="x"),
                                                   finish("ok")]), tools=[notes_tool(log)], checkpointer="memory")
    result = agent.run("note x")
    assert result.outcome == "answer" and log == ["x"]
    feedback = [m for m in result.messages if m.meta.get("feedback") == "parse_error"]
    assert len(feedback) == 1 and "could not be understood" in feedback[0].text


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


def test_stream_reports_steps_and_the_result():
    agent = create_agent("autogpt", ScriptedModel([command("note", text="s"), finish("streamed")]),
                         tools=[notes_tool([])], checkpointer="memory")
    events = list(agent.stream("go"))
    assert [e.node for e in events if e.type == "step"][:2] == ["call_model", "run_tools"]
    assert events[-1].type == "result" and events[-1].result.answer == "streamed"


def test_a_command_needing_approval_waits_and_resumes():
    log: list = []
    guarded = notes_tool(log, requires_approval=True)
    agent = create_agent("autogpt", ScriptedModel([command("note", text="risky"), finish("noted")]),
                         tools=[guarded], checkpointer="memory")
    waiting = agent.run("note it")
    assert waiting.outcome == "interrupted" and log == [] and waiting.pending[0].arguments == {"text": "risky"}
    done = agent.resume(waiting.thread_id, "approve")
    assert done.answer == "noted" and log == ["risky"]


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
    assert parsed.parse_error is None
    assert [(c.name, c.arguments, c.kind) for c in parsed.tool_calls] == [(call.name, call.arguments, call.kind)]
    final = P.parse(P.render_assistant(Message.assistant(answer)))
    assert final.tool_calls == [] and final.text == answer.strip()


def test_render_lists_commands_with_their_arguments():
    spec = ToolSpec(name="search", description="Search the web.",
                    parameters={"type": "object", "properties": {"query": {"type": "string"}}})
    prompt = P.render([Message.user("Find the tallest tower.")], tools=[spec])
    assert '- search: Search the web. args: {"query": {"type": "string"}}' in prompt
    assert "one of [search, finish]" in prompt and prompt.endswith("<|im_start|>assistant\n")
