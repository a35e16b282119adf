"""examples/chatbot.py runs as a user would start it: threads persist across processes in a SQLite file, threads
are separate, and the model sees a bounded part of a long thread.

The scripted model answers the N-th assistant turn *of what it is shown* with reply N, so the reply tells how much
of the thread reached the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "chatbot.py"


def chat(tmp_path: Path, thread: str, text: str, *extra: str) -> str:
    args = [sys.executable, str(EXAMPLE), "--model", f"scripted:{tmp_path / 'replies.jsonl'}",
            "--db", str(tmp_path / "threads.sqlite"), "--thread", thread, *extra]
    done = subprocess.run(args, input=text, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_threads_persist_across_processes_and_stay_separate(tmp_path):
    (tmp_path / "replies.jsonl").write_text("".join(json.dumps({"text": f"reply {i}"}) + "\n" for i in range(1, 6)))
    assert chat(tmp_path, "ada", "My name is Ada.\n") == "bot> reply 1\n"
    assert chat(tmp_path, "ada", "What is my name?\n") == "bot> reply 2\n", "the second process saw the first turn"
    assert chat(tmp_path, "bob", "Hello\n") == "bot> reply 1\n", "a new thread starts empty"

    shown = chat(tmp_path, "ada", "/history\n/threads\n")
    assert "thread ada: 4 messages; the model sees the last 4" in shown
    assert "  user: My name is Ada.\n  assistant: reply 1\n  user: What is my name?\n  assistant: reply 2" in shown
    assert "threads: ada, bob" in shown


def test_a_small_history_budget_bounds_what_the_model_sees(tmp_path):
    (tmp_path / "replies.jsonl").write_text("".join(json.dumps({"text": f"reply {i}"}) + "\n" for i in range(1, 9)))
    turns = "".join(f"This is message number {i} with a few more words in it.\n" for i in range(4))
    assert chat(tmp_path, "long", turns).splitlines() == [f"bot> reply {i}" for i in range(1, 5)]
    bounded = chat(tmp_path, "long", "And now?\n/history\n", "--history-tokens", "60")
    first, summary = bounded.splitlines()[:2]
    assert first != "bot> reply 5", "with 60 tokens the model cannot see all four earlier turns"
    assert summary.startswith("thread long: 10 messages; the model sees the last ")
    assert int(summary.split("the last ")[1].split()[0]) < 10
