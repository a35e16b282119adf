"""Code-interpreter math solving on GSM8K and MATH: loaders, answer checking, a concurrent runner, reports.

Nothing heavy is imported here: sympy loads when an answer needs symbolic comparison, matplotlib when a chart
is drawn, the model and the interpreter when a run starts.
"""

from __future__ import annotations

from agentkit._lazy import lazy_exports


_EXPORTS = {
    "Problem": "agentkit.evals.math.data",
    "load_gsm8k": "agentkit.evals.math.data",
    "load_math": "agentkit.evals.math.data",
    "load_dataset": "agentkit.evals.math.data",
    "extract_answer": "agentkit.evals.math.answers",
    "normalize": "agentkit.evals.math.answers",
    "is_equivalent": "agentkit.evals.math.answers",
    "SYSTEM_PROMPT": "agentkit.evals.math.prompt",
    "build_messages": "agentkit.evals.math.prompt",
    "MathEvalConfig": "agentkit.evals.math.runner",
    "ProblemResult": "agentkit.evals.math.runner",
    "grade": "agentkit.evals.math.runner",
    "run_math_eval": "agentkit.evals.math.runner",
    "MathReport": "agentkit.evals.math.report",
    "summarize": "agentkit.evals.math.report",
    "write_report": "agentkit.evals.math.report",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
