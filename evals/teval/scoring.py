"""From replies to T-Eval numbers: per-sample scores by file kind, file means, then the six dimensions.

Dimension formulas follow T-Eval v1's ``convert_results``: instruct = mean over json and str of
``(format + args_em) / 2``; plan = mean of the str and json F1; reason / retrieve / understand = mean of the str
file and the json ``reason_retrieve_understand`` file; review = review accuracy; overall = mean of the six.
A dimension whose files are missing is left out (and the overall says over how many it was taken).
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean
from typing import Any

from agentkit.evals.teval.data import DIMENSIONS, KINDS, TEvalSample
from agentkit.evals.teval.embedder import Embedder

__all__ = ["score_samples", "file_metrics", "dimension_scores"]


def score_samples(kind: str, samples: Sequence[TEvalSample], replies: Sequence[str],
                  embedder: Embedder) -> list[dict[str, Any]]:
    """One dict of metrics per sample (all in [0, 1], plus ``response_format`` for instruct)."""
    if len(samples) != len(replies):
        raise ValueError(f"{len(samples)} samples but {len(replies)} replies")
    scorer = KINDS[kind].scorer
    if scorer == "plan":
        from agentkit.evals.teval.plan import score_plan_samples

        return score_plan_samples(samples, replies, embedder, KINDS[kind].fmt)
    if scorer == "review":
        from agentkit.evals.teval.review import score_review_samples

        return score_review_samples(samples, replies)
    if scorer == "instruct":
        from agentkit.evals.teval.instruct import score_instruct_samples

        return score_instruct_samples(samples, replies)
    from agentkit.evals.teval.rru import score_rru_samples

    return score_rru_samples(kind, samples, replies, embedder)


def file_metrics(kind: str, per_sample: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Means over a file. Instruct keeps json and str apart (``json_format``, ``str_args_em``, ...)."""
    if not per_sample:
        return {}
    if KINDS[kind].scorer == "instruct":
        out: dict[str, float] = {"parse_rate": fmean(s["parse_rate"] for s in per_sample)}
        for fmt in ("json", "str"):
            rows = [s for s in per_sample if s["response_format"] == fmt]
            if rows:
                out[f"{fmt}_format"] = fmean(s["format"] for s in rows)
                out[f"{fmt}_args_em"] = fmean(s["args_em"] for s in rows)
        return out
    keys = [k for k, v in per_sample[0].items() if isinstance(v, (int, float))]
    return {key: fmean(float(s[key]) for s in per_sample) for key in keys}


def dimension_scores(files: dict[str, dict[str, float]]) -> dict[str, float]:
    """The six dimensions (0-1) from file means keyed by kind; dimensions without data are absent."""
    parts: dict[str, list[float]] = {dim: [] for dim in DIMENSIONS}
    instruct = files.get("instruct", {})
    for fmt in ("json", "str"):
        if f"{fmt}_format" in instruct:
            parts["instruct"].append((instruct[f"{fmt}_format"] + instruct[f"{fmt}_args_em"]) / 2)
    for kind, dim, key in (("plan_str", "plan", "f1_score"), ("plan_json", "plan", "f1_score"),
                           ("reason_str", "reason", "thought"), ("rru_json", "reason", "thought"),
                           ("retrieve_str", "retrieve", "name"), ("rru_json", "retrieve", "name"),
                           ("understand_str", "understand", "args"), ("rru_json", "understand", "args"),
                           ("review_str", "review", "review_quality")):
        if key in files.get(kind, {}):
            parts[dim].append(files[kind][key])
    return {dim: fmean(values) for dim, values in parts.items() if values}
