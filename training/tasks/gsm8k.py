"""GSM8K (train split) as a task set for the InternLM2 agent with the code interpreter.

The answer is the number after ``####``. A reference solution is built from the ``<<expr=value>>``
annotations of the worked answer: one interpreter call that prints each step, its output computed
the way Python prints it, then the final answer sentence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentkit.errors import ConfigError
from agentkit.messages import INTERPRETER_TOOL_NAME, Message, ToolCall
from agentkit.toolspec import Tool
from agentkit.training.tasks.base import Task, TaskSet

__all__ = ["DEFAULT_GSM8K_PATH", "SYSTEM_PROMPT", "gsm8k_tasks", "gsm8k_task_set"]

DEFAULT_GSM8K_PATH = Path("/work/shared/data/gsm8k/train.jsonl")
SYSTEM_PROMPT = ("You are a helpful assistant. Solve math problems by running Python code in the interpreter, "
                 "then state the final answer as a number.")

_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>]*)>>")
_ARITHMETIC = re.compile(r"^[\d.+\-*/() ]{1,80}$")


def _final_answer(answer: str) -> str | None:
    if "####" not in answer:
        return None
    return answer.split("####")[-1].strip().replace(",", "")


def _reference(worked: str, final: str) -> list[Message] | None:
    """Interpreter code from the annotations, when every step is plain arithmetic (else ``None``)."""
    steps = [expr.strip() for expr, _ in _ANNOTATION.findall(worked)]
    if not steps or any(not _ARITHMETIC.match(s) or "**" in s for s in steps):
        return None
    outputs = []
    try:
        for step in steps:
            outputs.append(str(eval(step, {"__builtins__": {}}, {})))  # noqa: S307 - digits and operators only
    except (SyntaxError, ZeroDivisionError, TypeError, ValueError):
        return None
    code = "\n".join(f"print({s})" for s in steps)
    call = ToolCall(name=INTERPRETER_TOOL_NAME, arguments={"code": code}, kind="interpreter")
    return [
        Message.assistant("", [call]),
        Message.tool_result(call, "\n".join(outputs)),
        Message.assistant(f"The answer is {final}."),
    ]


def gsm8k_tasks(path: str | Path = DEFAULT_GSM8K_PATH, limit: int | None = None) -> list[Task]:
    """Tasks from a GSM8K JSONL file (``question`` / ``answer`` with ``#### N``); ``limit`` keeps the first N."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"GSM8K file {str(path)!r} not found: pass the path of train.jsonl "
                          "(lines with 'question' and 'answer' ending in '#### N')")
    tasks: list[Task] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                question, worked = row["question"], row["answer"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"{path}:{number}: not a GSM8K record (needs 'question' and 'answer')") from None
            final = _final_answer(worked)
            if final is None:
                raise ConfigError(f"{path}:{number}: the answer has no '#### N' final line")
            tasks.append(Task(id=f"gsm8k-{number:05d}", question=question, answer=final, kind="gsm8k",
                              tolerance=1e-4, reference=_reference(worked, final)))
            if limit is not None and len(tasks) >= limit:
                break
    return tasks


def _interpreter() -> list[Tool]:
    from agentkit.tools.interpreter import PythonInterpreter

    return [PythonInterpreter(timeout_s=15.0)]


def gsm8k_task_set(path: str | Path = DEFAULT_GSM8K_PATH, limit: int | None = None) -> TaskSet:
    """GSM8K with a fresh interpreter session per run (the collector closes it afterwards)."""
    return TaskSet(name="gsm8k", tasks=gsm8k_tasks(path, limit), make_tools=_interpreter,
                   system_prompt=SYSTEM_PROMPT)
