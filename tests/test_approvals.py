"""Approvals declared on tools: the graph interrupts before the call; resume approves, edits or rejects.

A tool that needs approval never runs without one — checked with every agent pattern, with parallel
calls, and with the decision coming from another process through the SQLite checkpoint."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

from agentkit.agents import AGENTS, create_agent
from agentkit.agents.nodes import Decision
from agentkit.errors import ConfigError
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import FunctionTool, ToolSpec

ORDER = {"type": "object", "properties": {"order": {"type": "integer"}, "amount": {"type": "number"}}}


def refund_tool(log: list, *, always: bool = True):
    def refund(order: int, amount: float = 10.0) -> str:
        log.append((order, amount))
        return f"refunded {amount} on order {order}"

    return FunctionTool(refund, ToolSpec(name="refund", parameters=ORDER, requires_approval=always))


def lookup_tool(log: list):
    def lookup(order: int) -> str:
        log.append(("lookup", order))
        return f"order {order} shipped"

    return FunctionTool(lookup, ToolSpec(name="lookup", parameters=ORDER))


def refund_call(order: int = 7, amount: float = 10.0, call_id: str | None = None) -> ToolCall:
    return ToolCall(id=call_id or f"call_refund_{order}", name="refund", arguments={"order": order, "amount": amount})


def agent_for(pattern: str, first: Message, tools, **kw):
    script = [first, Message.assistant("done")]
    return create_agent(pattern, ScriptedModel(script), tools=tools, checkpointer=kw.pop("checkpointer", "memory"), **kw)


@pytest.mark.parametrize("pattern", sorted(set(AGENTS) - {"rewoo"}))  # ReWOO: see tests/test_rewoo.py
def test_every_pattern_waits_for_approval_and_runs_once_approved(pattern):
    log: list = []
    agent = agent_for(pattern, Message.assistant("", [refund_call()]), [refund_tool(log)])
    result = agent.run("refund order 7", thread_id="t")
    assert result.outcome == "interrupted"
    assert [c.name for c in result.pending] == ["refund"] and result.pending[0].arguments["order"] == 7
    assert log == []
    assert [c.id for c in agent.pending("t")] == ["call_refund_7"]

    again = agent.resume("t")  # no decision: still waiting, still not run
    assert again.outcome == "interrupted" and log == []

    done = agent.resume("t", "approve")
    assert done.outcome == "answer" and done.answer == "done"
    assert log == [(7, 10.0)]
    assert agent.pending("t") == []


def test_reject_with_a_reason_the_model_reads():
    log: list = []
    seen: list = []

    def script(messages):
        seen.append(messages[-1])
        return Message.assistant("", [refund_call()]) if len(seen) == 1 else Message.assistant("ok, no refund")

    agent = create_agent("react", ScriptedModel(script), tools=[refund_tool(log)], checkpointer="memory")
    agent.run("refund", thread_id="r")
    result = agent.resume("r", {"action": "reject", "reason": "orders over 30 days cannot be refunded"})
    assert log == []
    assert result.answer == "ok, no refund"
    feedback = seen[-1]
    assert feedback.role == "environment" and feedback.meta["rejected"] is True
    assert "orders over 30 days cannot be refunded" in feedback.text


def test_edit_runs_with_the_edited_arguments():
    log: list = []
    agent = agent_for("react", Message.assistant("", [refund_call(amount=500)]), [refund_tool(log)])
    agent.run("refund", thread_id="e")
    result = agent.resume("e", Decision(action="edit", arguments={"order": 7, "amount": 50}))
    assert log == [(7, 50)]
    assert "refunded 50" in [m for m in result.messages if m.role == "environment"][0].text


def test_parallel_calls_list_each_pending_call_and_take_decisions_by_id():
    log: list = []
    calls = [refund_call(1, call_id="a"), ToolCall(id="b", name="lookup", arguments={"order": 2}),
             refund_call(3, call_id="c")]
    agent = agent_for("react", Message.assistant("", calls), [refund_tool(log), lookup_tool(log)])
    result = agent.run("three things", thread_id="p")
    assert [c.id for c in result.pending] == ["a", "c"]  # the lookup needs no approval
    assert log == []  # nothing in the turn runs before the decisions
    with pytest.raises(ConfigError, match="no decision for pending call"):
        agent.resume("p", {"a": "approve"})
    done = agent.resume("p", {"a": "approve", "c": {"action": "reject", "reason": "duplicate"}})
    assert sorted(log, key=str) == sorted([(1, 10.0), ("lookup", 2)], key=str)
    texts = [m.text for m in done.messages if m.role == "environment"]
    assert texts[0].startswith("refunded") and texts[1] == "order 2 shipped" and "duplicate" in texts[2]


def test_a_predicate_on_the_arguments_decides_which_calls_need_approval():
    log: list = []

    class Refund(FunctionTool):
        def needs_approval(self, arguments) -> bool:
            return arguments.get("amount", 0) > 100

    tool = Refund(lambda order, amount: log.append(amount) or "ok", ToolSpec(name="refund", parameters=ORDER))
    small = agent_for("react", Message.assistant("", [refund_call(amount=20)]), [tool])
    assert small.run("small", thread_id="s").outcome == "answer" and log == [20]
    big = agent_for("react", Message.assistant("", [refund_call(amount=900)]), [tool])
    assert big.run("big", thread_id="b").outcome == "interrupted" and log == [20]


def test_bad_decisions_are_clear_errors():
    agent = agent_for("react", Message.assistant("", [refund_call()]), [refund_tool([])])
    agent.run("refund", thread_id="x")
    with pytest.raises(ConfigError, match="not a decision"):
        agent.resume("x", "maybe")
    finished = agent_for("react", Message.assistant("no tools needed"), [refund_tool([])])
    finished.run("hi", thread_id="y")
    with pytest.raises(ConfigError, match="nothing is waiting"):
        finished.resume("y", "approve")


def test_async_resume_and_stream_report_the_interrupt():
    log: list = []
    agent = agent_for("react", Message.assistant("", [refund_call()]), [refund_tool(log)])

    async def main():
        events = [e async for e in agent.astream("refund", thread_id="a")]
        done = await agent.aresume("a", "approve")
        return events, done

    events, done = asyncio.run(main())
    assert events[-1].result.outcome == "interrupted" and events[-1].result.pending[0].name == "refund"
    assert done.outcome == "answer" and log == [(7, 10.0)]


SCRIPT = textwrap.dedent(
    """
    import json, sys
    from agentkit.agents import create_agent
    from agentkit.models import load_model
    from agentkit.toolspec import FunctionTool, ToolSpec

    db, script, log_path, mode = sys.argv[1:5]

    def refund(order: int, amount: float = 10.0) -> str:
        with open(log_path, "a") as fh:
            fh.write(f"{order}\\n")
        return "refunded"

    tool = FunctionTool(refund, ToolSpec(name="refund", requires_approval=True,
                                         parameters={"type": "object", "properties": {"order": {}}}))
    agent = create_agent("react", load_model("scripted:" + script), tools=[tool], checkpointer=db)
    result = agent.run("refund order 7", thread_id="job") if mode == "run" else agent.resume("job", mode)
    print(json.dumps({"outcome": result.outcome, "pending": [c.name for c in result.pending]}))
    """
)


def test_the_decision_can_come_from_another_process(tmp_path):
    from agentkit.models.scripted import dump_script

    dump_script([Message.assistant("", [refund_call()]), Message.assistant("done")], tmp_path / "s.jsonl")
    (tmp_path / "agent.py").write_text(SCRIPT)
    log = tmp_path / "log.txt"

    def run(mode: str) -> dict:
        proc = subprocess.run([sys.executable, str(tmp_path / "agent.py"), str(tmp_path / "cp.sqlite"),
                               str(tmp_path / "s.jsonl"), str(log), mode], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert run("run") == {"outcome": "interrupted", "pending": ["refund"]}
    assert not log.exists()
    assert run("approve") == {"outcome": "answer", "pending": []}
    assert log.read_text().splitlines() == ["7"]


def test_async_runs_use_the_sqlite_checkpoint_and_sync_calls_read_it(tmp_path):
    """The default checkpointer is SQLite: arun / aresume / astream work on it, and the thread they wrote is the
    one run / history see (one file, one saver)."""
    log: list = []
    script = [Message.assistant("", [ToolCall(name="refund", arguments={"order": 7, "amount": 5})]),
              Message.assistant("refunded"), Message.assistant("anything else?")]
    agent = create_agent("react", ScriptedModel(script), tools=[refund_tool(log)],
                         checkpointer=tmp_path / "threads.sqlite")

    async def main():
        first = await agent.arun("refund order 7", thread_id="t")
        done = await agent.aresume("t", "approve")
        events = [e async for e in agent.astream("thanks", thread_id="t")]
        return first, done, events

    first, done, events = asyncio.run(main())
    assert first.outcome == "interrupted" and [c.name for c in first.pending] == ["refund"]
    assert done.answer == "refunded" and log == [(7, 5)]
    assert events[-1].result.answer == "anything else?"
    texts = [m.text for m in agent.history("t")]
    assert texts == ["refund order 7", "", "refunded 5 on order 7", "refunded", "thanks", "anything else?"]


def test_stream_continues_past_an_approval_token_by_token():
    """``stream(None, thread, decision=...)`` is ``resume`` with the continuation streamed, sync and async."""
    log: list = []
    script = [Message.assistant("", [ToolCall(name="refund", arguments={"order": 3})]), Message.assistant("done"),
              Message.assistant("", [ToolCall(name="refund", arguments={"order": 4})]), Message.assistant("no")]
    agent = create_agent("react", ScriptedModel(script), tools=[refund_tool(log)], checkpointer="memory")
    assert agent.run("refund 3", thread_id="s").outcome == "interrupted"
    with pytest.raises(ConfigError, match="input=None"):
        list(agent.stream("refund 3", thread_id="s", decision="approve"))
    events = list(agent.stream(None, thread_id="s", decision="approve"))
    assert [e.type for e in events].count("step") >= 2 and events[-1].result.answer == "done"
    assert log == [(3, 10.0)]

    assert agent.run("refund 4", thread_id="s").outcome == "interrupted"

    async def rejected():
        return [e async for e in agent.astream(None, thread_id="s", decision={"action": "reject", "reason": "no"})]

    events = asyncio.run(rejected())
    assert events[-1].result.answer == "no" and log == [(3, 10.0)]  # the rejected refund never ran
    with pytest.raises(ConfigError, match="nothing is waiting"):
        list(agent.stream(None, thread_id="s", decision="approve"))
