"""The math runner: concurrent problems, one interpreter session each, files, report numbers, failures, the CLI.

The model is scripted in InternLM2's format and the interpreter is ``InProcessPython`` below: a real, stateful
``exec`` in a dict namespace, for tests only (no isolation at all). One last test uses the real default tool.
"""

from __future__ import annotations

import builtins
import io
import json
import re
import threading
import traceback

import pytest
from typer.testing import CliRunner

from agentkit.cli import app, main
from agentkit.errors import ConfigError
from agentkit.evals.math import runner as math_runner
from agentkit.evals.math.data import Problem
from agentkit.evals.math.report import read_results, summarize, write_report
from agentkit.evals.math.runner import MathEvalConfig, run_math_eval
from agentkit.messages import Message
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import ToolError, ToolSpec
from agentkit.trajectory import read_trajectories

pytestmark = pytest.mark.timeout(60)

CODE = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}


class InProcessPython:
    """For tests only: runs code with ``exec`` in this process, keeping one namespace per instance (a session).

    ``print`` is bound per session (not ``sys.stdout`` redirection, which is process-wide), so sessions in
    concurrent threads never see each other's output."""

    spec = ToolSpec(name="python_interpreter", description="Run Python; state persists.", parameters=CODE,
                    kind="interpreter")

    def __init__(self, log: list | None = None):
        self.namespace: dict = {}
        self.codes: list[str] = []
        self.closed = False
        if log is not None:
            log.append(self)

    def invoke(self, arguments: dict) -> str:
        assert not self.closed, "a closed session was used"
        code = arguments["code"]
        self.codes.append(code)
        out = io.StringIO()
        self.namespace["print"] = lambda *args, **kw: builtins.print(*args, **{**kw, "file": out})
        try:
            exec(compile(code, "<cell>", "exec"), self.namespace)
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            raise ToolError(out.getvalue() + last) from None
        return out.getvalue()

    def close(self) -> None:
        self.closed = True


def action(code: str) -> str:
    return f"<|action_start|><|interpreter|>\n```python\n{code}\n```<|action_end|>"


def make_solver(barrier: threading.Barrier | None = None):
    """Scripted replies by problem: right, wrong, buggy code then fixed, no tool at all, or a crashing model."""

    def solver(messages: list[Message]) -> str:
        question = next(m.text for m in messages if m.role == "user")
        a, b = map(int, re.findall(r"\d+", question)[:2])
        turn = sum(m.role == "assistant" for m in messages)
        if turn == 0 and barrier is not None and question.startswith(("What is 12", "What is 100", "buggy")):
            barrier.wait()  # the first three problems are in flight together, or this times out
        if "crash" in question:
            raise RuntimeError("model server went away")
        if "guess" in question:
            return "I know this one: \\boxed{7}."
        # a session shared with another problem would already have a different owner
        claim = f"owner = globals().setdefault('owner', {a})\n"
        if "buggy" in question and turn == 0:
            return "Let me add.\n" + action(f"{claim}total = {a} + {b}\nprint(totl)")
        if turn == 0 or ("buggy" in question and turn == 1):
            return action(f"{claim}total = {a} + {b}\nprint(-1 if owner != {a} else total)")
        printed = int(messages[-1].text.strip())
        return f"The sum is \\boxed{{{printed + (1 if 'off' in question else 0)}}}."

    return solver


PROBLEMS = [
    Problem(id="p1", question="What is 12 + 30?", answer="42", source="t"),
    Problem(id="p2", question="What is 100 + 23?", answer="123", source="t", subject="Algebra"),
    Problem(id="p3", question="buggy: what is 5 + 6?", answer="11", source="t", subject="Algebra"),
    Problem(id="p4", question="off: what is 1 + 1?", answer="2", source="t"),
    Problem(id="p5", question="guess: what is 3 + 4?", answer="7", source="t"),
    Problem(id="p6", question="crash: what is 8 + 8?", answer="16", source="t"),
]


def test_six_problems_at_concurrency_three_give_hand_counted_numbers(tmp_path):
    sessions: list[InProcessPython] = []
    out = tmp_path / "run"
    config = MathEvalConfig(concurrency=3, out=str(out), max_steps=5)
    seen: list[str] = []
    results = run_math_eval(PROBLEMS, ScriptedModel(make_solver(threading.Barrier(3, timeout=10))), config,
                            tool_factory=lambda: InProcessPython(sessions), on_result=lambda r: seen.append(r.id))

    assert [r.id for r in results] == [p.id for p in PROBLEMS] and sorted(seen) == sorted(r.id for r in results)
    by_id = {r.id: r for r in results}
    expected = {  # id: (predicted, correct, steps, tool calls, tool errors, outcome)
        "p1": ("42", True, 2, 1, 0, "answer"),
        "p2": ("123", True, 2, 1, 0, "answer"),
        "p3": ("11", True, 3, 2, 1, "answer"),
        "p4": ("3", False, 2, 1, 0, "answer"),
        "p5": ("7", True, 1, 0, 0, "answer"),
        "p6": (None, False, 0, 0, 0, "error"),
    }
    for problem_id, row in expected.items():
        r = by_id[problem_id]
        assert (r.predicted, r.correct, r.steps, r.tool_calls, r.tool_errors, r.outcome) == row, problem_id
    assert "RuntimeError: model server went away" in by_id["p6"].error

    # one session per problem (the crashing one got its own too), each closed, none shared
    assert len(sessions) == 6 and all(s.closed for s in sessions)
    assert sorted(len(s.codes) for s in sessions) == [0, 0, 1, 1, 1, 2]
    assert all(len({re.findall(r"= (\d+) \+", c)[0] for c in s.codes}) == 1 for s in sessions if s.codes)

    report = summarize(results)
    assert (report.problems, report.correct, report.tool_calls, report.errors) == (6, 4, 5, 1)
    assert report.accuracy == pytest.approx(4 / 6)
    assert report.tool_use_rate == pytest.approx(4 / 6)
    assert report.executable_rate == pytest.approx(4 / 5)  # 5 calls, one NameError
    assert report.mean_steps == pytest.approx((2 + 2 + 3 + 2 + 1 + 0) / 6)
    assert report.outcomes == {"answer": 5, "error": 1}
    assert report.by_subject == {"Algebra": 1.0}

    written = read_results(out / "results.jsonl")
    assert sorted(r.id for r in written) == sorted(by_id) and {r.id: r for r in written} == by_id
    trajectories = list(read_trajectories(out / "trajectories.jsonl", strict=True))
    assert len(trajectories) == 5 and all(t.agent == "internlm2" and t.protocol == "internlm2" for t in trajectories)
    meta = {t.meta["problem_id"]: t.meta for t in trajectories}
    assert meta["p4"] == {"task": "math", "problem_id": "p4", "source": "t", "gold": "2", "predicted": "3",
                          "correct": False}
    assert {t.id for t in trajectories} == {r.trajectory_id for r in results if r.trajectory_id}
    p3 = next(t for t in trajectories if t.meta["problem_id"] == "p3")
    assert p3.messages[0].role == "system" and "\\boxed" in p3.messages[0].text
    assert [m.role for m in p3.messages[1:]] == ["user", "assistant", "environment", "assistant", "environment",
                                                 "assistant"]
    assert "NameError" in p3.messages[3].text and p3.messages[3].meta["error"]

    assert write_report(results, out, title="scripted") == report
    markdown = (out / "report.md").read_text()
    assert "| accuracy | 66.7% |" in markdown and "| executable rate (tool calls without error) | 80.0% |" in markdown
    assert "| mean steps | 1.67 |" in markdown and "| Algebra | 100.0% |" in markdown
    assert json.loads((out / "report.json").read_text())["correct"] == 4
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "a temp file was left behind"


def test_a_used_output_directory_needs_overwrite(tmp_path):
    config = MathEvalConfig(concurrency=1, out=str(tmp_path))
    model = ScriptedModel(["\\boxed{7}"])
    run_math_eval(PROBLEMS[4:5], model, config, tool_factory=InProcessPython)
    with pytest.raises(ConfigError, match="already has results: choose a new --out directory or pass --overwrite"):
        run_math_eval(PROBLEMS[4:5], model, config, tool_factory=InProcessPython)
    config.overwrite = True
    run_math_eval(PROBLEMS[:2], model, config, tool_factory=InProcessPython)
    assert [r.id for r in read_results(tmp_path / "results.jsonl")] == ["p1", "p2"]


def test_concurrency_one_runs_on_the_calling_thread_and_failing_tools_are_results(tmp_path):
    threads: set[str] = set()

    def reply(messages):
        threads.add(threading.current_thread().name)
        return "\\boxed{42}"

    class StubbornSession(InProcessPython):
        def close(self) -> None:
            raise OSError("kernel will not die")

    def factory():
        factory.calls += 1
        if factory.calls == 2:
            raise RuntimeError("no kernel available")
        return StubbornSession()

    factory.calls = 0
    config = MathEvalConfig(concurrency=1, out=str(tmp_path))
    first, second, third = run_math_eval(PROBLEMS[:3], ScriptedModel(reply), config, tool_factory=factory)
    assert threads == {threading.current_thread().name}
    assert first.correct and "closing the interpreter failed: OSError: kernel will not die" in first.error
    assert second.outcome == "error" and second.error == "RuntimeError: no kernel available"
    assert not third.correct and third.predicted == "42" and third.outcome == "answer"


def test_a_budget_stopped_run_only_counts_a_boxed_answer(tmp_path):
    looping = ScriptedModel(lambda messages: "I will compute 42 next." + action("x = 6 * 7\nprint(x)"))
    config = MathEvalConfig(concurrency=1, max_steps=2, out=str(tmp_path))
    (result,) = run_math_eval([Problem(id="q", question="6*7?", answer="42", source="t")], looping, config,
                              tool_factory=InProcessPython)
    assert result.outcome == "max_steps" and result.predicted is None and not result.correct
    assert (result.steps, result.tool_calls, result.tool_errors) == (2, 2, 0)


def test_config_alone_loads_the_dataset_and_the_model(tmp_path):
    data = tmp_path / "gsm.jsonl"
    data.write_text("\n".join(json.dumps({"question": f"Q{i}: 9 * 2?", "answer": f"9*2 #### {a}"})
                              for i, a in enumerate([18, 19, 18])))
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps(line) for line in [action("print(9 * 2)"), "So \\boxed{18}."]))
    config = MathEvalConfig(data=str(data), limit=2, model=f"scripted:{script}", concurrency=2, out=str(tmp_path / "o"))
    results = run_math_eval(config, tool_factory=InProcessPython)
    assert [(r.id, r.correct, r.tool_calls) for r in results] == [("gsm8k-0", True, 1), ("gsm8k-1", False, 1)]
    with pytest.raises(ConfigError, match="unknown agent 'plan': use one of"):
        run_math_eval(MathEvalConfig(data=str(data), agent="plan"))
    with pytest.raises(ConfigError, match="no problems"):
        run_math_eval(MathEvalConfig())


def test_cli_runs_a_scripted_model_over_a_dataset_file(tmp_path, monkeypatch):
    monkeypatch.setattr(math_runner, "default_tool_factory", InProcessPython)
    data = tmp_path / "gsm.jsonl"
    data.write_text("\n".join(json.dumps({"question": q, "answer": f"work #### {a}"})
                              for q, a in [("Ducks: 9 * 2?", 18), ("Geese: 6 * 3?", 18), ("Hens: 2 * 2?", 5),
                                           ("never asked", 1)]))
    script = tmp_path / "script.jsonl"
    script.write_text("\n".join(json.dumps(line) for line in [action("print(9 * 2)"), "So \\boxed{18}."]))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["eval", "math", "--dataset", "gsm8k", "--data", str(data), "--limit", "3",
                                      "--model", f"scripted:{script}", "--concurrency", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| accuracy | 66.7% |" in result.stdout and "| tool-use rate (problems with ≥ 1 tool call) | 100.0% |" \
        in result.stdout
    assert len(read_results(out / "results.jsonl")) == 3
    assert {p.name for p in out.iterdir()} == {"results.jsonl", "trajectories.jsonl", "report.md", "report.json",
                                              "report.png"}


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "/nonexistent/x.jsonl"], "error: no dataset file at /nonexistent/x.jsonl"),
    (["--data", "x.jsonl", "--agent", "plan"], "error: unknown agent 'plan'"),
    (["--data", "x.jsonl", "--dataset", "aime"], "error: Invalid value for '--dataset'"),
    (["--data", "x.jsonl", "--concurrency", "0"], "error: Invalid value for '--concurrency'"),
])
def test_cli_errors_are_one_line_with_status_2(args, message, capsys):
    assert main(["eval", "math", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err


def test_help_lists_the_options():
    result = CliRunner().invoke(app, ["eval", "math", "--help"])
    assert result.exit_code == 0
    for option in ("--dataset", "--data", "--limit", "--model", "--concurrency", "--out", "--agent"):
        assert option in result.stdout


def test_the_default_tool_is_the_real_stateful_interpreter(tmp_path):
    """The contract with ``tools/interpreter``: a fresh stateful session per problem, closed afterwards."""
    pytest.importorskip("ipykernel")
    script = ScriptedModel([action("x = 20"), action("print(x + 22)"), "\\boxed{42}"])
    config = MathEvalConfig(concurrency=2, out=str(tmp_path))
    problems = [Problem(id=f"r{i}", question="20 + 22?", answer="42", source="t") for i in range(2)]
    results = run_math_eval(problems, script, config)
    assert [(r.correct, r.tool_calls, r.tool_errors) for r in results] == [(True, 2, 0)] * 2, [r.error for r in results]
