"""End to end on the real embedded model (SmolLM2-135M): a run completes and writes a trajectory.

The model is tiny and often misformats its actions; the point is that the agent survives whatever
it writes, ends with a known outcome, and records everything."""

from __future__ import annotations

import pytest

from agentkit.agents import create_agent
from agentkit.budgets import OUTCOMES, Budget
from agentkit.trajectory import read_trajectories

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded():
    from agentkit.models import load_model

    return load_model("embedded")


@pytest.mark.parametrize("pattern", ["react", "internlm2"])
def test_embedded_model_completes_a_run_and_writes_a_trajectory(embedded, pattern, tmp_path):
    path = tmp_path / "runs.jsonl"
    agent = create_agent(pattern, embedded, tools=["calculator"], checkpointer=tmp_path / "cp.sqlite",
                         budget=Budget(max_steps=4, max_tokens=600), generation={"max_new_tokens": 96},
                         trajectory_path=path)
    result = agent.run("What is 12 * 7? Use the calculator.", thread_id="e2e")
    assert result.outcome in OUTCOMES and result.outcome != "error"
    assert 1 <= result.steps <= 4
    replies = [m for m in result.messages if m.role == "assistant"]
    assert replies and all(m.usage is not None and m.usage.completion_tokens > 0 for m in replies)
    assert all("raw" in m.meta for m in replies)
    [record] = list(read_trajectories(path, strict=True))
    assert record.outcome == result.outcome and record.model.startswith("embedded")
    assert record.protocol == pattern
    assert len(agent.history("e2e")) == len(result.messages)
