"""The ``agentkit`` command in a real subprocess: steps and answer printed, one-line errors, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def agentkit(*args: str, env_home=None, input: str | None = None) -> subprocess.CompletedProcess:
    env = None
    if env_home is not None:
        import os

        env = {**os.environ, "AGENTKIT_HOME": str(env_home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agentkit", *args], capture_output=True, text=True, timeout=120,
                          env=env, input=input)


@pytest.fixture()
def script(tmp_path):
    path = tmp_path / "script.jsonl"
    lines = [
        {"text": 'Thought: I need the calculator.\nAction: calculator\nAction Input: {"expression": "12*7"}'},
        {"text": "Thought: I have it.\nFinal Answer: 12 * 7 = 84"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_run_prints_steps_and_answer(script, tmp_path):
    proc = agentkit("run", "What is 12*7?", "--model", f"scripted:{script}", "--agent", "react", "--tools", "calculator",
                    "--trajectory", str(tmp_path / "t.jsonl"), env_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Action: calculator" in proc.stdout
    assert "Result (calculator): 84" in proc.stdout
    assert "Answer: 12 * 7 = 84" in proc.stdout
    assert "outcome=answer" in proc.stderr and "thread=" in proc.stderr
    record = json.loads((tmp_path / "t.jsonl").read_text().splitlines()[0])
    assert record["outcome"] == "answer"
    assert (tmp_path / "checkpoints.sqlite").exists()


def test_run_continues_a_thread(script, tmp_path):
    first = agentkit("run", "q1", "--model", f"scripted:{script}", "--agent", "react", "--thread", "abc", env_home=tmp_path)
    assert first.returncode == 0, first.stderr
    # The script has two outputs and the thread already used both: a third turn exhausts it, and says so.
    second = agentkit("run", "q2", "--model", f"scripted:{script}", "--agent", "react", "--thread", "abc", env_home=tmp_path)
    assert second.returncode == 2
    assert "the script has 2 outputs" in second.stderr
    assert "Traceback" not in second.stderr


def test_chat_streams_in_a_persistent_thread(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text('"Final Answer: hello there"\n"Final Answer: still here"\n')
    proc = agentkit("chat", "--model", f"scripted:{path}", "--agent", "react", "--thread", "c1", input="hi\nagain\n\n", env_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "hello there" in proc.stdout and "still here" in proc.stdout
    resumed = agentkit("chat", "--model", f"scripted:{path}", "--agent", "react", "--thread", "c1", input="\n", env_home=tmp_path)
    assert "resumed thread c1 (4 messages)" in resumed.stderr


def test_models_lists_specs():
    proc = agentkit("models")
    assert proc.returncode == 0
    for spec in ("embedded", "hf:PATH", "openai:BASE_URL#MODEL", "scripted:FILE"):
        assert spec in proc.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "hi", "--model", "nope"], "unknown model spec 'nope'"),
        (["run", "hi", "--model", "scripted:/does/not/exist.jsonl"], "does not exist"),
        (["run", "hi", "--agent", "nope"], "unknown agent 'nope'"),
        (["run", "hi", "--bogus"], "No such option: --bogus"),
        (["run", "hi", "--max-steps", "0"], "--max-steps"),
        (["run", "hi", "--tools", "nope", "--model", "scripted:{script}"], "unknown tool 'nope'"),
        (["run"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(args, message, script, tmp_path):
    args = [a.replace("{script}", str(script)) for a in args]
    proc = agentkit(*args, env_home=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_malformed_script_file_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('"fine"\n{not json\n')
    proc = agentkit("run", "hi", "--model", f"scripted:{path}", env_home=tmp_path)
    assert proc.returncode == 2
    assert f"{path}:2" in proc.stderr and "Traceback" not in proc.stderr


def test_a_command_exit_code_reaches_the_shell():
    import typer

    from agentkit.cli import app, main

    @app.command("exit-code-probe", hidden=True)
    def probe(code: int) -> None:
        raise typer.Exit(code)

    assert main(["exit-code-probe", "3"]) == 3
    assert main(["exit-code-probe", "0"]) == 0
