"""A run killed with SIGKILL mid-run resumes from its SQLite checkpoint in another process.

The agent runs in a real subprocess; its tool logs "start i" / "end i" around a sleep. We kill
the process while step 3's tool is running, then resume the thread here: steps 1 and 2 must not
run again (their results were checkpointed), step 3 runs again (it never finished), and no
step is missing from the thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import dump_script

STEPS = 5

AGENT_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from agentkit.agents import create_agent
    from agentkit.models import load_model
    from agentkit.toolspec import FunctionTool, ToolSpec

    log_path, db_path, script_path, mode = sys.argv[1:5]

    def work(i: int) -> str:
        with open(log_path, "a") as fh:
            fh.write(f"start {i}\\n")
        time.sleep(float(sys.argv[5]) if i == 3 else 0.0)
        with open(log_path, "a") as fh:
            fh.write(f"end {i}\\n")
        return f"result {i}"

    tool = FunctionTool(work, ToolSpec(name="work", parameters={"type": "object", "properties": {"i": {"type": "integer"}}}))
    agent = create_agent("react", load_model("scripted:" + script_path), tools=[tool], checkpointer=db_path,
                         budget={"max_steps": 20})
    if mode == "run":
        agent.run("do the work", thread_id="job")
    else:
        result = agent.resume("job")
        print(result.model_dump_json())
    """
)


@pytest.fixture()
def files(tmp_path):
    script = [Message.assistant(f"step {i}", [ToolCall(id=f"call_{i}", name="work", arguments={"i": i})])
              for i in range(1, STEPS + 1)]
    script.append(Message.assistant("all work done"))
    dump_script(script, tmp_path / "script.jsonl")
    (tmp_path / "agent.py").write_text(AGENT_SCRIPT)
    return tmp_path


def _spawn(files, mode: str, sleep: float) -> subprocess.Popen:
    args = [sys.executable, str(files / "agent.py"), str(files / "log.txt"), str(files / "cp.sqlite"),
            str(files / "script.jsonl"), mode, str(sleep)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.timeout(120)
def test_sigkill_mid_run_then_resume_in_a_new_process(files):
    log = files / "log.txt"
    proc = _spawn(files, "run", sleep=60)
    deadline = time.monotonic() + 60
    while "start 3" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the agent never reached step 3"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert log.read_text().splitlines() == ["start 1", "end 1", "start 2", "end 2", "start 3"]

    resumed = _spawn(files, "resume", sleep=0)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])

    lines = log.read_text().splitlines()
    assert lines.count("start 1") == 1 and lines.count("start 2") == 1, "a checkpointed step ran twice"
    assert lines.count("start 3") == 2, "the interrupted step must run again"
    assert [line for line in lines if line.startswith("end")] == [f"end {i}" for i in range(1, STEPS + 1)]

    assert result["outcome"] == "answer" and result["answer"] == "all work done"
    observations = [m["content"] for m in result["messages"] if m["role"] == "environment"]
    assert observations == [f"result {i}" for i in range(1, STEPS + 1)], "a step was lost"
    calls = [c["id"] for m in result["messages"] if m["role"] == "assistant" for c in m["tool_calls"]]
    assert calls == [f"call_{i}" for i in range(1, STEPS + 1)]
