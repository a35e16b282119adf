"""The loop end to end on a tiny random model and a few tool-use tasks: every stage, files, resume."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

from agentkit.training.loop import LoopConfig, run_loop  # noqa: E402
from agentkit.training.tiny import save_tiny_model  # noqa: E402
from agentkit.trajectory import read_trajectories  # noqa: E402


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> str:
    return "hf:" + str(save_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


def _config(tiny_spec: str, out) -> LoopConfig:
    return LoopConfig(out=str(out), model=tiny_spec, task_options={"per_kind": 4}, samples=2, train_limit=5,
                      eval_limit=3, max_new_tokens=8, max_steps=2, epochs=1, batch_size=4, lora_r=4,
                      progress=False, dpo=True)


def test_loop_runs_every_stage_and_resumes(tiny_spec, tmp_path):
    logs: list[str] = []
    result = run_loop(_config(tiny_spec, tmp_path), log=logs.append)
    state = json.loads((tmp_path / "state.json").read_text())
    assert list(state["done"]) == ["eval_before", "round1.collect", "round1.build", "round1.train", "round1.eval"]
    collected = list(read_trajectories(tmp_path / "round1" / "trajectories.jsonl"))
    assert len(collected) == 5 * 2  # K samples per train task
    assert {(r.meta["task_id"], r.meta["sample"]) for r in collected} == {
        (t, k) for t in {r.meta["task_id"] for r in collected} for k in (0, 1)}
    assert all(r.meta["success"] is False for r in collected)  # a random model solves nothing...
    assert (tmp_path / "round1" / "adapter" / "adapter_model.safetensors").is_file()
    assert any("5 reference solutions" in line for line in logs)  # ...so references carry the round
    assert len(list(read_trajectories(tmp_path / "round1" / "eval.jsonl"))) == 3
    assert result.before.runs == 3 and result.rounds[0][1].runs == 3
    report = result.report.read_text()
    assert "| task success |" in report and "| tool-call validity |" in report
    assert result.chart is not None and result.chart.stat().st_size > 1000

    # a second call resumes: nothing is redone, and the report is the same
    logs.clear()
    again = run_loop(_config(tiny_spec, tmp_path), log=logs.append)
    assert sum("already done" in line for line in logs) == 5
    assert again.rounds[0][1] == result.rounds[0][1]


def test_resume_refuses_other_settings(tiny_spec, tmp_path):
    from agentkit.errors import ConfigError

    (tmp_path / "state.json").write_text(json.dumps({"config": {**_config(tiny_spec, tmp_path).__dict__,
                                                                 "samples": 9}, "done": {}}))
    with pytest.raises(ConfigError, match="samples"):
        run_loop(_config(tiny_spec, tmp_path), log=lambda line: None)


def test_collect_resumes_inside_the_stage(tiny_spec, tmp_path):
    """Runs already written survive a crash: only the missing (task, sample) runs are made again."""
    from agentkit.training.loop import _run_tasks
    from agentkit.training.tasks import load_task_set

    config = _config(tiny_spec, tmp_path)
    task_set = load_task_set("tooluse", per_kind=2)
    path = tmp_path / "runs.jsonl"
    first = _run_tasks(config, task_set, task_set.tasks[:2], path, None, 2, 0.8, "collect")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")  # as if it crashed after three runs
    second = _run_tasks(config, task_set, task_set.tasks[:2], path, None, 2, 0.8, "collect")
    assert len(first) == len(second) == 4
    assert path.read_text().splitlines()[:3] == lines[:3]


def test_prompt_variants_change_the_prompt_never_the_reply():
    """A varied sample keeps every assistant turn and the tools it calls; only tool list, wording and system
    prompt move."""
    import random

    from agentkit.training.loop import _reference_record, vary_prompt
    from agentkit.training.tasks import load_task_set

    task_set = load_task_set("tooluse", per_kind=3)
    two_step = next(t for t in task_set.tasks if t.kind == "two_step")
    record = _reference_record(two_step, task_set, "internlm2")
    seen_subsets, seen_wordings, dropped_system = set(), set(), 0
    for seed in range(40):
        varied = vary_prompt(record, random.Random(seed), task_set.spec_variants)
        names = [t["name"] for t in varied.tools]
        assert {"inventory", "calculator"} <= set(names) and len(names) == len(set(names))
        assert [m for m in varied.messages if m.role != "system"] == [m for m in record.messages if m.role != "system"]
        seen_subsets.add(tuple(sorted(names)))
        seen_wordings.add(next(t["description"] for t in varied.tools if t["name"] == "calculator"))
        dropped_system += varied.messages[0].role != "system"
    assert len(seen_subsets) == 2 and len(seen_wordings) == 2 and 5 < dropped_system < 35
    assert record.tools == _reference_record(two_step, task_set, "internlm2").tools  # the original is untouched
