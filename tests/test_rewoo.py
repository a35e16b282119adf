"""ReWOO: planned steps fan out with LangGraph Send, evidence flows into later steps, failures reach the
solver, bad plans go back to the planner, and a killed run resumes without re-running finished steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from agentkit.agents import create_agent
from agentkit.messages import Message
from agentkit.models.scripted import ScriptedModel
from agentkit.protocols.rewoo import parse_plan
from agentkit.toolspec import FunctionTool, ToolSpec

TEXT = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


def echo_tool(log: list, barrier: threading.Barrier | None = None, fail_on: str | None = None):
    def echo(text: str) -> str:
        log.append(text)
        if barrier is not None and text.startswith("item"):
            barrier.wait()  # deadlocks (then times out) unless the items run at the same time
        if fail_on and fail_on in text:
            raise RuntimeError(f"cannot handle {text!r}")
        return f"<{text}>"

    return FunctionTool(echo, ToolSpec(name="echo", description="Echo the text.", parameters=TEXT))


def plan_text(n: int, extra: str = "") -> str:
    return "\n".join(f"Plan: item {i}\n#E{i} = echo[item {i}]" for i in range(1, n + 1)) + extra


def rewoo(script, tools, **kw):
    return create_agent("rewoo", ScriptedModel(script), tools=tools, checkpointer=kw.pop("checkpointer", "memory"), **kw)


def test_independent_steps_run_in_parallel_and_evidence_flows_into_dependent_steps():
    log: list = []
    barrier = threading.Barrier(4, timeout=10)
    seen: list = []

    def script(messages):
        seen.append(messages)
        if len(seen) == 1:
            return plan_text(4, "\nPlan: combine\n#E5 = echo[#E1 + #E4]")
        return "Final Answer: combined"

    result = rewoo(script, [echo_tool(log, barrier)]).run("do four things then combine", thread_id="p")
    assert result.outcome == "answer" and result.answer == "combined"
    assert sorted(log[:4]) == [f"item {i}" for i in range(1, 5)]
    assert log[4] == "<item 1> + <item 4>"
    evidence = {m.meta["step"]: m.text for m in result.messages if m.role == "environment"}
    assert evidence["E5"] == "<<item 1> + <item 4>>"
    solver_prompt = seen[1][-1].text
    assert "#E5 = echo[#E1 + #E4]" in solver_prompt and "Evidence: <<item 1> + <item 4>>" in solver_prompt
    plan_message = [m for m in result.messages if m.role == "assistant"][0]
    assert [c.name for c in plan_message.tool_calls] == ["echo"] * 5
    assert result.steps == 2  # planner + solver: the tools cost no model calls


def test_a_failed_step_is_reported_to_the_solver_not_fatal():
    seen: list = []

    def script(messages):
        seen.append(messages)
        return plan_text(2) if len(seen) == 1 else "Final Answer: partial"

    result = rewoo(script, [echo_tool([], fail_on="item 2")]).run("go")
    assert result.outcome == "answer"
    assert "Evidence: Error: RuntimeError: cannot handle 'item 2'" in seen[1][-1].text


def test_an_unparseable_plan_goes_back_to_the_planner_with_the_error():
    seen: list = []

    def script(messages):
        seen.append(messages)
        return ["I will just think about it.", plan_text(1), "Final Answer: ok"][len(seen) - 1]

    result = rewoo(script, [echo_tool([])]).run("go")
    assert result.outcome == "answer" and result.answer == "ok"
    feedback = seen[1][-1]
    assert feedback.role == "environment" and "the plan has no steps" in feedback.text


def test_plan_parser_reports_unknown_tools_missing_references_and_cycles():
    spec = ToolSpec(name="echo")
    assert "unknown tool 'search'" in parse_plan("#E1 = search[x]", [spec])[1]
    assert "refers to #E2" in parse_plan("#E1 = echo[#E2]", [spec])[1]
    assert "cycle" in parse_plan("#E1 = echo[#E2]\n#E2 = echo[#E1]", [spec])[1]
    steps, error = parse_plan("1. Plan: a\nE1 = echo(hello)\n#E2=echo[{\"text\": \"#E1\"}]", [spec])
    assert error is None and [s.deps for s in steps] == [[], ["E1"]]


def guarded(log: list, predicate=None):
    tool = echo_tool(log)
    if predicate is None:
        tool._spec = tool.spec.model_copy(update={"requires_approval": True})
    else:
        tool.needs_approval = predicate
    return tool


def test_a_plan_with_steps_needing_approval_waits_for_a_decision_on_each():
    log: list = []
    plan = "Plan: a\n#E1 = echo[first]\nPlan: b\n#E2 = echo[#E1 again]"
    agent = rewoo([plan, "Final Answer: done"], [guarded(log)])
    result = agent.run("go")
    assert result.outcome == "interrupted" and log == []
    first, second = result.pending
    assert first.arguments == {"text": "first"} and second.arguments == {"text": "#E1 again"}  # as planned
    still = agent.resume(result.thread_id)  # no decision: nothing runs
    assert still.outcome == "interrupted" and log == []
    done = agent.resume(result.thread_id, {first.id: "approve",
                                           second.id: {"action": "edit", "arguments": {"text": "edited"}}})
    assert done.outcome == "answer" and done.answer == "done"
    assert log == ["first", "edited"]


def test_a_rejected_step_becomes_evidence_and_only_matching_calls_need_approval():
    log: list = []
    plan = "Plan: a\n#E1 = echo[safe]\nPlan: b\n#E2 = echo[delete everything]"
    tool = guarded(log, predicate=lambda arguments: "delete" in arguments.get("text", ""))
    agent = rewoo([plan, "Final Answer: kept it safe"], [tool])
    result = agent.run("go")
    [pending] = result.pending
    assert pending.arguments == {"text": "delete everything"} and log == []
    done = agent.resume(result.thread_id, {"action": "reject", "reason": "too dangerous"})
    assert log == ["safe"]
    evidence = [m for m in done.messages if m.role == "environment"]
    assert any("rejected this call: too dangerous" in m.text for m in evidence)
    assert done.outcome == "answer"


def test_stream_reports_each_step_as_it_finishes():
    agent = rewoo([plan_text(3), "Final Answer: done"], [echo_tool([])])
    nodes = [e.node for e in agent.stream("go", thread_id="s") if e.type == "step"]
    assert nodes[0] == "plan" and nodes.count("work") == 3 and nodes[-1] == "solve"


SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from agentkit.agents import create_agent
    from agentkit.models import load_model
    from agentkit.toolspec import FunctionTool, ToolSpec

    db, script, log_path, mode = sys.argv[1:5]

    def work(text: str) -> str:
        with open(log_path, "a") as fh:
            fh.write(f"start {text}\\n")
        if text == "item 3" and mode == "run":
            time.sleep(60)
        with open(log_path, "a") as fh:
            fh.write(f"end {text}\\n")
        return f"<{text}>"

    tool = FunctionTool(work, ToolSpec(name="echo", parameters={"type": "object", "properties": {"text": {}},
                                                                "required": ["text"]}))
    agent = create_agent("rewoo", load_model("scripted:" + script), tools=[tool], checkpointer=db)
    result = agent.run("four things", thread_id="job") if mode == "run" else agent.resume("job")
    print(json.dumps({"outcome": result.outcome, "answer": result.answer}))
    """
)


@pytest.mark.timeout(120)
def test_sigkill_mid_plan_resumes_without_rerunning_finished_steps(tmp_path):
    from agentkit.models.scripted import dump_script

    dump_script([plan_text(4), "Final Answer: all four"], tmp_path / "s.jsonl")
    (tmp_path / "agent.py").write_text(SCRIPT)
    log = tmp_path / "log.txt"
    args = [sys.executable, str(tmp_path / "agent.py"), str(tmp_path / "cp.sqlite"), str(tmp_path / "s.jsonl"), str(log)]
    proc = subprocess.Popen([*args, "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while True:
        lines = log.read_text().splitlines() if log.exists() else []
        if sum(line.startswith("end") for line in lines) == 3 and "start item 3" in lines:
            break
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    time.sleep(1.0)  # let the finished steps' writes reach the checkpoint (LangGraph writes them in the background)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)

    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == {"outcome": "answer", "answer": "all four"}
    lines = log.read_text().splitlines()
    for i in (1, 2, 4):
        assert lines.count(f"start item {i}") == 1, f"finished step {i} ran again: {lines}"
    assert lines.count("start item 3") == 2 and lines.count("end item 3") == 1
