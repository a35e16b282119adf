"""Batched collection: concurrent agent runs share one generate call per step; every run is scored."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.training.rollout import BatchingModel, CollectOptions, collect  # noqa: E402
from agentkit.training.tasks import load_task_set  # noqa: E402


@pytest.fixture(scope="module")
def tiny_hf():
    from agentkit.models.hf import HFModel
    from agentkit.training.data import add_action_tokens
    from agentkit.training.tiny import tiny_model

    model, tokenizer = tiny_model()
    add_action_tokens(tokenizer, model)
    return HFModel(model, tokenizer)


def test_first_turns_of_all_runs_go_through_one_batch(tiny_hf, monkeypatch):
    calls: list[int] = []
    original = type(tiny_hf).complete

    def counting(self, prompts, config):
        calls.append(len(prompts))
        return original(self, prompts, config)

    monkeypatch.setattr(type(tiny_hf), "complete", counting)
    task_set = load_task_set("tooluse", per_kind=2)
    seen = []
    records = collect(tiny_hf, task_set, task_set.tasks[:5],
                      CollectOptions(samples=2, temperature=1.0, max_new_tokens=6, max_steps=2, max_batch=16),
                      on_done=seen.append)
    assert len(records) == len(seen) == 10
    assert calls[0] == 10  # all ten runs asked at once, and got one generate call
    assert sum(calls) == sum(r.steps for r in records)  # every model call went through a batch
    assert {(r.meta["task_id"], r.meta["sample"]) for r in records} == {
        (t.id, k) for t in task_set.tasks[:5] for k in (0, 1)}
    for record in records:
        assert record.messages[0].role == "system" and record.messages[1].text in {t.question for t in task_set.tasks}
        assert {"success", "valid_tool_use", "calls", "invalid_calls", "kind"} <= set(record.meta)
        assert [t["name"] for t in record.tools] == ["calculator", "unit_convert", "inventory"]


def test_batch_size_is_capped(tiny_hf, monkeypatch):
    calls: list[int] = []
    original = type(tiny_hf).complete
    monkeypatch.setattr(type(tiny_hf), "complete",
                        lambda self, prompts, config: calls.append(len(prompts)) or original(self, prompts, config))
    task_set = load_task_set("tooluse", per_kind=2)
    collect(tiny_hf, task_set, task_set.tasks[:6], CollectOptions(max_new_tokens=4, max_steps=1, max_batch=4))
    assert max(calls) == 4 and sum(calls) == 6


def test_only_completion_models_can_be_batched():
    with pytest.raises(ConfigError, match="completion model"):
        BatchingModel(object())  # type: ignore[arg-type]
