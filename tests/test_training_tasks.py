"""Task sets: exact verifiers, references that really solve the tasks, a fixed split, GSM8K loading."""

from __future__ import annotations

import json

import pytest

from agentkit.errors import ConfigError
from agentkit.messages import Message, ToolCall
from agentkit.training.tasks import TASK_SETS, Task, load_task_set, numeric_match, split_tasks
from agentkit.training.tasks.tooluse import KINDS, convert, make_tools


def test_every_reference_passes_its_own_verifier_and_uses_real_tool_output():
    task_set = load_task_set("tooluse", per_kind=12, seed=3)
    assert {t.kind for t in task_set.tasks} == set(KINDS) and len(task_set.tasks) == 60
    tools = {t.spec.name: t for t in task_set.make_tools()}
    for task in task_set.tasks:
        answer = task.reference[-1].text
        assert task.check(answer, task.reference).success, (task.id, answer)
        for message in task.reference:
            if message.role == "assistant" and message.tool_calls:
                call = message.tool_calls[0]
                result = next(m for m in task.reference if m.tool_call_id == call.id)
                assert tools[call.name].invoke(call.arguments) == result.text


def test_verifier_rejects_wrong_answers_and_wrong_tool_use():
    task = Task(id="a", question="What is 12 times 7?", answer="84", kind="arithmetic")
    call = ToolCall(name="calculator", arguments={"expression": "12*7"})
    used = [Message.assistant("", [call]), Message.tool_result(call, "84")]
    assert task.check("12 * 7 = 84.", used).success
    assert not task.check("12 * 7 = 85.", used).success
    assert task.check("84", []).reason == "answered without calling a tool"
    direct = Task(id="b", question="Say apple.", answer="apple", kind="no_tool", needs_tool=False)
    assert direct.check("Apple.", []).success
    assert not direct.check("pineapple", []).success  # whole words only
    assert "needs none" in direct.check("apple", used).reason
    assert numeric_match("about 1,234.5 units", 1234.5) and not numeric_match("no number", 1.0)


def test_split_is_fixed_by_seed_and_keeps_every_kind():
    tasks = load_task_set("tooluse", per_kind=20).tasks
    train, held = split_tasks(tasks, 0.25, seed=7)
    again_train, again_held = split_tasks(list(reversed(tasks)), 0.25, seed=7)
    assert [t.id for t in held] == [t.id for t in again_held] and len(held) == 25
    assert {t.kind for t in held} == set(KINDS)
    assert not {t.id for t in train} & {t.id for t in held}
    assert [t.id for t in split_tasks(tasks, 0.25, seed=8)[1]] != [t.id for t in held]
    with pytest.raises(ValueError, match="held_out"):
        split_tasks(tasks, 1.0, seed=0)


def test_tools_give_clear_errors():
    tools = {t.spec.name: t for t in make_tools()}
    with pytest.raises(Exception, match="no product named"):
        tools["inventory"].invoke({"product": "purple spaceship"})
    with pytest.raises(Exception, match="cannot convert"):
        tools["unit_convert"].invoke({"value": 3, "from_unit": "km", "to_unit": "kg"})
    converted = tools["unit_convert"].invoke({"value": "100", "from_unit": "celsius", "to_unit": "fahrenheit"})
    assert converted == "212 fahrenheit"
    assert convert(10, "miles", "km") == 16.09


def test_gsm8k_loader_builds_tasks_and_references(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Natalia sold 48 clips in April and half as many in May. How many in total?",
         "answer": "She sold 48/2 = <<48/2=24>>24 in May.\n48+24 = <<48+24=72>>72\n#### 72"},
        {"question": "Odd one?", "answer": "It is <<x*2=4>>4\n#### 1,000"},
    ]) + "\n")
    task_set = load_task_set("gsm8k", path=path)
    first, second = task_set.tasks
    assert (first.answer, second.answer) == ("72", "1000")
    code = first.reference[0].tool_calls[0]
    assert code.kind == "interpreter" and code.arguments["code"] == "print(48/2)\nprint(48+24)"
    assert first.reference[1].text == "24.0\n72"
    assert first.check(first.reference[-1].text, first.reference).success
    assert second.reference is None  # a step with a variable is not plain arithmetic
    with pytest.raises(ConfigError, match="not found"):
        load_task_set("gsm8k", path=tmp_path / "nope.jsonl")
    path.write_text('{"question": "q", "answer": "no final line"}\n')
    with pytest.raises(ConfigError, match="####"):
        load_task_set("gsm8k", path=path)


def test_the_shared_gsm8k_train_file_loads():
    from agentkit.training.tasks.gsm8k import DEFAULT_GSM8K_PATH

    if not DEFAULT_GSM8K_PATH.is_file():
        pytest.skip("the shared GSM8K data is not on this machine")
    tasks = load_task_set("gsm8k", limit=50).tasks
    assert len(tasks) == 50 and sum(t.reference is not None for t in tasks) > 25


def test_unknown_task_set_names_the_choices():
    with pytest.raises(ConfigError, match=", ".join(TASK_SETS)):
        load_task_set("chess")
