"""GRPO with the verifier as reward and the agent's tools as environment, on a tiny random model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("trl")

from agentkit.models.lora import ADAPTER_META  # noqa: E402
from agentkit.protocols.internlm2 import InternLM2Protocol  # noqa: E402
from agentkit.training.data import add_action_tokens  # noqa: E402
from agentkit.training.grpo import GRPORunConfig, _split, agent_rollouts, train_grpo  # noqa: E402
from agentkit.training.loop import _reference_record  # noqa: E402
from agentkit.training.tasks import load_task_set  # noqa: E402
from agentkit.training.tiny import tiny_model  # noqa: E402


@pytest.fixture()
def tiny():
    model, tokenizer = tiny_model()
    add_action_tokens(tokenizer, model)
    return model, tokenizer


def test_a_run_splits_into_prompt_and_a_completion_whose_tool_results_are_masked(tiny):
    _, tokenizer = tiny
    task_set = load_task_set("tooluse", per_kind=2)
    two_step = next(t for t in task_set.tasks if t.kind == "two_step")
    record = _reference_record(two_step, task_set, "internlm2")
    prompt, completion, mask = _split(record, tokenizer, InternLM2Protocol(), 1024)
    assert tokenizer.decode(prompt).endswith("<|im_start|>assistant\n")
    assert len(completion) == len(mask) and mask[0] == mask[-1] == 1 and 0 in mask
    assert completion[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>") == tokenizer.eos_token_id
    model_text = tokenizer.decode([t for t, m in zip(completion, mask) if m])
    tool_text = tokenizer.decode([t for t, m in zip(completion, mask) if not m])
    assert model_text.count("<|action_start|>") == 2 and "<|plugin|>" in model_text
    assert "environment" in tool_text and '"price"' in tool_text and '"price"' not in model_text


def test_rollouts_give_one_completion_per_prompt_entry(tiny):
    model, tokenizer = tiny
    task_set = load_task_set("tooluse", per_kind=2)
    config = GRPORunConfig(output_dir="unused", num_generations=2, max_new_tokens=6, max_agent_steps=1)
    rollout = agent_rollouts(task_set, config, tokenizer)
    ids = [task_set.tasks[0].id] * 2 + [task_set.tasks[3].id] * 2
    model.train()
    out = rollout(ids, SimpleNamespace(model=model, state=SimpleNamespace(global_step=0)))
    assert model.training  # the rollout put the policy back in training mode
    assert len(out["prompt_ids"]) == len(out["completion_ids"]) == len(out["env_mask"]) == len(out["success"]) == 4
    assert all(len(c) == len(m) for c, m in zip(out["completion_ids"], out["env_mask"]))
    assert out["prompt_ids"][0] == out["prompt_ids"][1] != out["prompt_ids"][2]
    assert set(out["success"]) <= {0.0, 1.0} and out["logprobs"] is None
    with pytest.raises(Exception, match="task ids"):
        rollout(["not-a-task"], SimpleNamespace(model=model, state=SimpleNamespace(global_step=0)))


def test_grpo_steps_run_and_save_an_adapter(tiny, tmp_path):
    model, tokenizer = tiny
    task_set = load_task_set("tooluse", per_kind=2)
    config = GRPORunConfig(output_dir=str(tmp_path / "grpo"), num_generations=2, tasks_per_step=2, max_steps=2,
                           max_new_tokens=6, max_agent_steps=1, progress=False, bf16=False)
    result = train_grpo(model, tokenizer, task_set, task_set.tasks[:4], config)
    assert result.steps == 2 and len(result.rewards) == 2 and all(0.0 <= r <= 1.0 for r in result.rewards)
    assert (tmp_path / "grpo" / "adapter_model.safetensors").is_file()
    meta = json.loads((tmp_path / "grpo" / ADAPTER_META).read_text())
    assert meta["method"] == "grpo" and meta["rewards"] == result.rewards


def test_the_loop_runs_grpo_after_sft_and_evaluates_both_adapters(tmp_path):
    from agentkit.training.loop import LoopConfig, run_loop
    from agentkit.training.tiny import save_tiny_model

    tiny_spec = "hf:" + str(save_tiny_model(tmp_path / "tiny"))
    logs: list[str] = []
    with pytest.raises(Exception, match="held-out"):
        run_loop(LoopConfig(out=str(tmp_path / "tiny-set"), model=tiny_spec, task_options={"per_kind": 1}),
                 log=logs.append)
    config = LoopConfig(out=str(tmp_path / "run"), model=tiny_spec, task_options={"per_kind": 4}, samples=1,
                        train_limit=4, eval_limit=2, max_new_tokens=6, max_steps=1, epochs=1, batch_size=4, lora_r=4,
                        grpo_steps=1, grpo_generations=2, progress=False)
    result = run_loop(config, log=logs.append)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert list(state["done"]) == ["eval_before", "round1.collect", "round1.build", "round1.train", "round1.grpo",
                                   "round1.eval"]
    assert result.adapter == tmp_path / "run" / "round1" / "adapter_grpo"
    assert any(line.startswith("GRPO: 1 steps") for line in logs)
    assert "GRPO 1 steps" in result.report.read_text()
