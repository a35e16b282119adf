"""The solving prompt: reason step by step, compute with the stateful interpreter, answer in ``\\boxed{}``.

Modelled on how InternLM2-Chat is prompted for math with its code interpreter (the interpreter described in a
``system name=<|interpreter|>`` turn, the question asking for a boxed final answer); the wording is ours.
"""

from __future__ import annotations

from agentkit.evals.math.data import Problem

SYSTEM_PROMPT = (
    "You are a careful math solver. You can run Python in a stateful Jupyter interpreter: send code, read its "
    "output, then continue. Use code for arithmetic, algebra and checking, rather than computing in your head. "
    "When you are sure, write the final answer once as \\boxed{answer}: a number or a simplified expression, "
    "without units."
)

QUESTION_SUFFIX = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def problem_input(problem: Problem) -> str:
    """The user turn for one problem (the system prompt is the agent's)."""
    return problem.question.strip() + QUESTION_SUFFIX
