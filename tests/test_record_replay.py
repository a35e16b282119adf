"""Record a run of a real (tiny) model and replay it with the scripted model: same replies, same outcome."""

from __future__ import annotations

import pytest

from agentkit.agents import create_agent
from agentkit.budgets import Budget
from agentkit.messages import Message, ToolCall
from agentkit.models import load_model
from agentkit.models.scripted import ScriptedModel
from agentkit.testing import RecordingModel


def _run(model, question="What is 12 * 7? Use the calculator."):
    agent = create_agent("react", model, tools=["calculator"], checkpointer="memory",
                         budget=Budget(max_steps=3), generation={"max_new_tokens": 48})
    return agent.run(question)


def test_scripted_text_replies_round_trip_through_a_recording(tmp_path):
    original = ScriptedModel([
        'Thought: use it\nAction: calculator\nAction Input: {"expression": "12*7"}',
        "Final Answer: 84",
    ])
    recorder = RecordingModel(original)
    first = _run(recorder)
    path = recorder.save(tmp_path / "rec.jsonl")
    again = _run(load_model(f"scripted:{path}"))
    assert first.outcome == again.outcome == "answer"
    assert [(m.role, m.text) for m in first.messages] == [(m.role, m.text) for m in again.messages]
    assert [c.arguments for c in first.tool_calls] == [c.arguments for c in again.tool_calls]


def test_message_replies_are_recorded_as_messages(tmp_path):
    reply = Message.assistant("", [ToolCall(name="calculator", arguments={"expression": "2+2"})])
    recorder = RecordingModel(ScriptedModel([reply, Message.assistant("4")]))
    _run(recorder)
    assert isinstance(recorder.replies[0], Message)  # message outputs have no raw text: kept whole
    replay = recorder.replay()
    assert _run(replay).answer == "4"


@pytest.mark.slow
def test_a_real_embedded_run_replays_identically(tmp_path):
    recorder = RecordingModel(load_model("embedded"))
    first = _run(recorder)
    replayed = _run(load_model(f"scripted:{recorder.save(tmp_path / 'embedded.jsonl')}"))
    assert replayed.outcome == first.outcome
    assert replayed.answer == first.answer
    assert [m.text for m in replayed.messages] == [m.text for m in first.messages]
