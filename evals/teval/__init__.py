"""T-Eval v1 (the leaderboard / OpenCompass version): run a model over the English files, score six dimensions.

``run_teval(TEvalConfig(data=..., model=...))`` or ``agentkit eval teval --data DIR --model SPEC``. Metrics follow
the upstream evaluators, quirks included; similarity metrics use a pluggable sentence embedder whose name is
in every report (see docs/evals.md).
"""

from __future__ import annotations

from agentkit.evals.teval.data import DIMENSIONS, KINDS, TEvalSample, find_files, load_samples
from agentkit.evals.teval.runner import TEvalConfig, run_teval

__all__ = ["DIMENSIONS", "KINDS", "TEvalConfig", "TEvalSample", "find_files", "load_samples", "run_teval"]
