"""DPO on (successful, failed) runs of the same task: pairs from scored records, and real TRL steps."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("trl")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.messages import Message, ToolCall  # noqa: E402
from agentkit.training.data import add_action_tokens  # noqa: E402
from agentkit.training.dpo import DPORunConfig, preference_pairs, train_dpo  # noqa: E402
from agentkit.training.tiny import tiny_model  # noqa: E402
from agentkit.trajectory import TrajectoryRecord  # noqa: E402


def _record(task_id: str, success: bool, reply: Message) -> TrajectoryRecord:
    messages = [Message.system("Use tools."), Message.user("What is 6 times 7?"), reply]
    return TrajectoryRecord(agent="internlm2", model="m", messages=messages, outcome="answer",
                            tools=[{"name": "calculator", "description": "math", "parameters": {"type": "object"}}],
                            meta={"task_id": task_id, "success": success})


def _records() -> list[TrajectoryRecord]:
    good = Message.assistant("", [ToolCall(name="calculator", arguments={"expression": "6*7"})])
    return [_record("t1", True, good), _record("t1", False, Message.assistant("It is 41.")),
            _record("t2", False, Message.assistant("No idea.")),  # no successful run: no pair
            _record("t3", True, good), _record("t3", True, good)]  # no failed run: no pair


def test_pairs_come_only_from_tasks_with_both_outcomes():
    pairs = preference_pairs(_records())
    assert [p["task_id"] for p in pairs] == ["t1"]
    assert pairs[0]["chosen"].startswith("<|action_start|><|plugin|>")
    assert pairs[0]["rejected"] == "It is 41.<|im_end|>"
    assert pairs[0]["prompt"].endswith("What is 6 times 7?<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(ConfigError, match="task_id"):
        preference_pairs([TrajectoryRecord(agent="a", model="m", messages=[], outcome="answer")])


def test_dpo_steps_start_at_log2_and_prefer_the_successful_run(tmp_path):
    model, tokenizer = tiny_model()
    add_action_tokens(tokenizer, model)
    pairs = preference_pairs(_records()) * 2
    config = DPORunConfig(output_dir=str(tmp_path / "dpo"), learning_rate=5e-2, epochs=3, batch_size=2,
                          lora_r=4, progress=False, bf16=False)
    result = train_dpo(model, tokenizer, pairs, config)
    assert result.steps == 3
    assert math.isclose(result.losses[0], math.log(2), abs_tol=1e-3)  # policy == reference at the start
    assert result.losses[-1] < result.losses[0]
    assert (result.output_dir / "adapter_model.safetensors").is_file()
    assert (result.output_dir / "added_tokens.safetensors").is_file()
    with pytest.raises(ConfigError, match="no preference pairs"):
        train_dpo(model, tokenizer, [], config)
