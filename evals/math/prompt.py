"""The solving prompt: reason, compute with the stateful interpreter, give the final answer in ``\\boxed{}``.

Laid out as InternLM evaluates InternLM2-Chat on GSM8K / MATH with its code interpreter: guidelines that say to
combine step-by-step reasoning with Jupyter code and to present the result in LaTeX as ``\\boxed{}`` without
units, the question as the user turn, and the interpreter itself announced by the agent's protocol
(``system name=<|interpreter|>`` for InternLM2, a ``python_interpreter`` tool for chat APIs). The wording is ours.
"""

from __future__ import annotations

from agentkit.evals.math.data import Problem
from agentkit.messages import Message

SYSTEM_PROMPT = (
    "You solve math problems by combining step-by-step reasoning with Python code. You have a stateful Python "
    "interpreter (a Jupyter kernel): variables, functions and imports stay defined between your code runs, and "
    "what the code prints comes back to you.\n"
    "- Use code for arithmetic, algebra (e.g. with sympy) and checking, instead of computing in your head.\n"
    "- Read the output before you go on; if the code fails, fix it and run it again.\n"
    "- Finish with the final result in LaTeX as \\boxed{answer}: a number or a simplified expression, without units."
)

QUESTION_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def problem_input(problem: Problem) -> str:
    """The user turn for one problem."""
    return problem.question.strip() + QUESTION_SUFFIX


def build_messages(problem: Problem, system_prompt: str | None = SYSTEM_PROMPT) -> list[Message]:
    """The agent's input for one problem: the guidelines as the system turn (if any), then the question."""
    user = Message.user(problem_input(problem))
    return [Message.system(system_prompt), user] if system_prompt else [user]
