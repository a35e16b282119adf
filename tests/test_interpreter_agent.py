"""The internlm2 agent runs <|interpreter|> actions through the real local interpreter."""

from __future__ import annotations

import pytest

pytest.importorskip("ipykernel")

from agentkit.agents import create_agent  # noqa: E402
from agentkit.models.scripted import ScriptedModel  # noqa: E402
from agentkit.protocols.internlm2 import InternLM2Protocol  # noqa: E402
from agentkit.tools.interpreter import PythonInterpreter  # noqa: E402


def code_action(code: str) -> str:
    return f"Let me compute it.<|action_start|><|interpreter|>\n```python\n{code}\n```<|action_end|>"


@pytest.mark.timeout(120)
def test_interpreter_actions_run_statefully_and_results_come_back_as_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path))
    script = [
        code_action("apples = 12 * 7"),
        code_action("print(apples + 1)"),
        code_action("1 / 0"),
        "The answer is \\boxed{85}.",
    ]
    with PythonInterpreter(backend="local") as interpreter:
        agent = create_agent("internlm2", ScriptedModel(script), tools=[interpreter], checkpointer="memory")
        result = agent.run("What is 12 * 7 + 1?")
    assert result.outcome == "answer" and result.answer.endswith("\\boxed{85}.")
    env = [m for m in result.messages if m.role == "environment"]
    assert [m.name for m in env] == ["interpreter"] * 3
    assert env[0].text == "(no output)" and env[1].text == "85"
    assert "ZeroDivisionError" in env[2].text and env[2].meta.get("error")  # counted as a failed call
    rendered = InternLM2Protocol().render(result.messages, tools=[interpreter.spec])
    assert "<|im_start|>system name=<|interpreter|>" in rendered
    assert "<|im_start|>environment name=<|interpreter|>\n85<|im_end|>" in rendered


@pytest.mark.timeout(120)
def test_per_thread_sessions_keep_each_threads_variables_apart(tmp_path):
    """``per_thread=True`` (what the chat UI uses): a variable set in one thread is not there in another, and is
    still there when its own thread continues; close() frees every thread's kernel."""
    from agentkit.tools.interpreter.pool import InterpreterPool

    pool = InterpreterPool(max_sessions=4)
    interpreter = PythonInterpreter(backend="local", pool=pool, per_thread=True, workdir=str(tmp_path))
    try:  # one tool shared by two agents (as by two users of a server), each agent scripted for its own thread
        alice = create_agent("internlm2", ScriptedModel([code_action("secret = 41"), "set",
                                                         code_action("print(secret + 1)"), "same"]),
                             tools=[interpreter], checkpointer="memory")
        bob = create_agent("internlm2", ScriptedModel([code_action("print(secret)"), "other"]),
                           tools=[interpreter], checkpointer="memory")
        alice.run("set it", thread_id="alice")
        other = bob.run("read it", thread_id="bob")
        same = alice.run("read it again", thread_id="alice")
        assert "NameError" in [m for m in other.messages if m.role == "environment"][-1].text
        assert [m for m in same.messages if m.role == "environment"][-1].text == "42"
        assert len(pool._entries) == 2
    finally:
        interpreter.close()
    assert pool._entries == {}
    with pytest.raises(Exception, match="local backend"):
        PythonInterpreter(backend="e2b", per_thread=True)
