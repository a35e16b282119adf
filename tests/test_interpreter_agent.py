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
