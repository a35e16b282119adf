"""The math runner end to end with the real local interpreter: concurrency, files, report numbers, failures, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

pytest.importorskip("ipykernel")

from agentkit.cli import app  # noqa: E402
from agentkit.evals.math.data import Problem  # noqa: E402
from agentkit.evals.math.report import read_results, summarize, write_report  # noqa: E402
from agentkit.evals.math.runner import MathEvalConfig, run_math_eval  # noqa: E402
from agentkit.messages import Message  # noqa: E402
from agentkit.models.scripted import ScriptedModel  # noqa: E402
from agentkit.trajectory import read_trajectories  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def action(code: str) -> str:
    return f"<|action_start|><|interpreter|>\n```python\n{code}\n```<|action_end|>"


def solver(messages: list[Message]) -> str:
    """A scripted solver whose behaviour depends on the problem: right, wrong, buggy code, or no tool at all."""
    question = next(m.text for m in messages if m.role == "user")
    a, b = map(int, re.findall(r"\d+", question)[:2])
    turn = sum(m.role == "assistant" for m in messages)
    if "crash" in question:
        raise RuntimeError("model server went away")
    if "guess" in question:
        return "I think it is \\boxed{7}."
    if "buggy" in question and turn == 0:
        return action(f"total = {a} + {b}\nprint(totl)")
    if turn <= (1 if "buggy" in question else 0):
        return action(f"total = {a} + {b}\nprint(total)")
    last = messages[-1].text.strip()
    answer = int(last) + (1 if "off" in question else 0)
    return f"The sum is \\boxed{{{answer}}}."


PROBLEMS = [
    Problem(id="p1", question="What is 12 + 30?", answer="42", source="t"),
    Problem(id="p2", question="What is 100 + 23?", answer="123", source="t"),
    Problem(id="p3", question="buggy: what is 5 + 6?", answer="11", source="t"),
    Problem(id="p4", question="off: what is 1 + 1?", answer="2", source="t"),
    Problem(id="p5", question="guess: what is 3 + 4?", answer="7", source="t"),
    Problem(id="p6", question="crash: what is 8 + 8?", answer="16", source="t"),
]


def test_problems_run_concurrently_and_the_report_counts_what_happened(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    config = MathEvalConfig(concurrency=3, out=str(tmp_path / "run"), max_steps=5)
    results = run_math_eval(PROBLEMS, ScriptedModel(solver), config)
    by_id = {r.id: r for r in results}
    assert [r.id for r in results] == [p.id for p in PROBLEMS]
    assert by_id["p1"].correct and by_id["p1"].predicted == "42" and by_id["p1"].tool_calls == 1
    assert by_id["p2"].correct and by_id["p2"].steps == 2
    assert by_id["p3"].correct and by_id["p3"].tool_calls == 2 and by_id["p3"].tool_errors == 1
    assert not by_id["p4"].correct and by_id["p4"].predicted == "3"
    assert by_id["p5"].correct and by_id["p5"].tool_calls == 0
    assert by_id["p6"].outcome == "error" and "model server went away" in by_id["p6"].error
    report = summarize(results)
    assert report.problems == 6
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.tool_use_rate == pytest.approx(4 / 6)
    assert report.executable_rate == pytest.approx(4 / 5)  # 5 interpreter calls, 1 NameError
    assert report.mean_steps == pytest.approx((2 + 2 + 3 + 2 + 1 + 0) / 6)
    assert report.errors == 1
    out = tmp_path / "run"
    assert sorted(r.id for r in read_results(out / "results.jsonl")) == sorted(by_id)
    trajectories = list(read_trajectories(out / "trajectories.jsonl", strict=True))
    assert len(trajectories) == 5 and all(t.agent == "internlm2" for t in trajectories)
    written = write_report(results, out)
    assert written == report
    assert "| accuracy | 66.7% |" in (out / "report.md").read_text()
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_runs_a_scripted_model_over_a_dataset_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    data = tmp_path / "gsm.jsonl"
    data.write_text("\n".join(json.dumps({"question": q, "answer": f"work #### {a}"})
                              for q, a in [("Ducks: 9 * 2?", 18), ("Geese: 6 * 3?", 18), ("Hens: 2 * 2?", 5)]))
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps(line) for line in [action("print(9 * 2)"), "So \\boxed{18}."]))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "math", "--dataset", "gsm8k", "--data", str(data), "--limit", "3",
                                      "--model", f"scripted:{script}", "--concurrency", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| accuracy | 66.7% |" in result.output
    assert (out / "report.png").exists() and len(read_results(out / "results.jsonl")) == 3
    missing = subprocess.run([sys.executable, "-m", "agentkit", "eval", "math", "--data", str(tmp_path / "x.jsonl")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no dataset file")


@pytest.mark.slow
def test_embedded_model_on_three_gsm8k_problems(tmp_path, monkeypatch):
    """The real tiny model, the real interpreter, real problems: every run ends with a known outcome."""
    from pathlib import Path

    from agentkit.budgets import OUTCOMES
    from agentkit.evals.math.data import load_gsm8k
    from agentkit.models import load_model

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
    if not data.exists():
        pytest.skip("../shared/data is not on this machine")
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    config = MathEvalConfig(concurrency=1, max_steps=3, max_tokens=600, out=str(tmp_path / "run"))
    results = run_math_eval(load_gsm8k(data, limit=3), load_model("embedded"), config)
    assert len(results) == 3
    assert all(r.outcome in OUTCOMES and r.outcome != "error" for r in results), [r.error for r in results]
    report = write_report(results, tmp_path / "run")
    assert 0.0 <= report.accuracy <= 1.0 and report.mean_steps >= 1
    assert len(list(read_trajectories(tmp_path / "run" / "trajectories.jsonl", strict=True))) == 3
