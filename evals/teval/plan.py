"""Plan dimension: the predicted list of tool calls against the reference plan (T-Eval v1, ``bertscore`` match).

1. Parse. JSON prompts: a list of ``{"id", "name", "args"}`` (``[`` .. ``]`` cut out of the reply, any item
   lacking a field fails the whole plan). Str prompts: the reply is cut at newlines and at ``". "``; each piece
   that mentions an API from the sample's ``API_list`` is a step named after the earliest-mentioned API, with
   the whole piece as its args.
2. A trailing ``FinishAction`` is dropped from both plans.
3. Similarity of a predicted and a reference step: ``0.75 * cos(names) + 0.25 * cos(str(args))`` (cosines clipped
   at 0); pairs above 0.7 are edges of a bipartite graph, paired by maximum-weight matching.
4. Matched steps count when their reference positions increase along the prediction (longest increasing run);
   upstream seeds that count at 1 for every predicted step, so a plan that parses but matches nothing still
   gets precision ``1/len(pred)`` and recall ``1/len(gt)`` — kept, because leaderboard numbers include it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentkit.errors import ConfigError
from agentkit.evals.teval.embedder import Embedder, cosine_matrix
from agentkit.evals.teval.parsing import ParseFailure, load_structured

__all__ = ["PlanWeights", "parse_plan_json", "parse_plan_str", "plan_metrics", "ordered_matches",
           "match_steps", "score_plan_samples"]

FINISH = "FinishAction"


@dataclass(frozen=True)
class PlanWeights:
    """T-Eval v1's settings: name weight, args weight, edge threshold (v2 raised it to 0.8)."""

    name: float = 0.75
    args: float = 0.25
    threshold: float = 0.7


def parse_plan_json(reply: Any) -> list[dict[str, Any]]:
    """Steps ``{"id": int, "name": str, "args": str}`` from a reply, or ``[]`` when it does not parse."""
    try:
        value = load_structured(reply, "[", "]")
    except ParseFailure:
        return []
    if not isinstance(value, list):
        return []
    steps = []
    for item in value:
        try:
            steps.append({"id": int(item["id"]), "name": str(item["name"]), "args": str(item["args"])})
        except (KeyError, TypeError, ValueError):
            return []
    return steps


def parse_plan_str(reply: str, api_list: Sequence[str]) -> list[dict[str, Any]]:
    """Steps from a free-text plan: one per piece of text that mentions an API of ``api_list``."""
    steps = []
    for piece in str(reply).replace(". ", "\n").split("\n"):
        hits = [(piece.find(api), api) for api in api_list if api in piece]
        if hits:
            first = min(hits, key=lambda hit: hit[0])[1]  # ties keep API_list order, like upstream's strict <
            steps.append({"id": len(steps), "name": first, "args": piece})
    return steps


def match_steps(similarity: np.ndarray, threshold: float) -> dict[int, int]:
    """Predicted step → reference step for a maximum-weight matching over pairs scoring above ``threshold``."""
    if similarity.size == 0:
        return {}
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError as exc:  # scipy comes with sentence-transformers
        raise ConfigError(f"T-Eval plan scoring needs scipy ({exc}): pip install scipy") from exc
    similarity = np.round(similarity, 6)  # float32 matmuls differ in the last bits from cell to cell
    weights = np.where(similarity > threshold, similarity, 0.0)
    # Among matchings of equal weight (repeated identical steps), prefer the one that keeps the order.
    n_rows, n_cols = weights.shape
    skew = np.abs(np.arange(n_rows)[:, None] - np.arange(n_cols)[None, :])
    rows, cols = linear_sum_assignment(np.where(weights > 0.0, weights - 1e-9 * skew, 0.0), maximize=True)
    return {int(r): int(c) for r, c in zip(rows, cols) if weights[r, c] > 0.0}


def ordered_matches(mapping: dict[int, int], n_pred: int) -> int:
    """Upstream's count: longest run of predicted steps whose matched reference ids increase, at least 1."""
    best = [1] * n_pred
    for i in range(n_pred):
        for j in range(i):
            if i in mapping and j in mapping and mapping[i] > mapping[j]:
                best[i] = max(best[i], best[j] + 1)
    return max(best, default=0)


def plan_metrics(pred: list[dict[str, Any]], gt: list[dict[str, Any]], embedder: Embedder,
                 weights: PlanWeights = PlanWeights()) -> dict[str, float]:
    """Precision, recall and F1 of one predicted plan against its reference."""
    zero = {"precision": 0.0, "recall": 0.0, "f1_score": 0.0}
    pred = sorted(pred, key=lambda step: step["id"])
    gt = sorted(gt, key=lambda step: step["id"])
    if pred and pred[-1]["name"] == FINISH:
        pred = pred[:-1]
    if gt and gt[-1]["name"] == FINISH:
        gt = gt[:-1]
    if not pred or not gt:  # upstream fails here (max of an empty list / division by zero): score it 0
        return zero
    names = cosine_matrix(embedder, [s["name"] for s in pred], [s["name"] for s in gt])
    args = cosine_matrix(embedder, [str(s["args"]) for s in pred], [str(s["args"]) for s in gt])
    mapping = match_steps(weights.name * names + weights.args * args, weights.threshold)
    correct = ordered_matches(mapping, len(pred))
    recall, precision = correct / len(gt), correct / len(pred)
    return {"precision": precision, "recall": recall, "f1_score": 2 * recall * precision / (recall + precision)}


def score_plan_samples(samples: Sequence[Any], replies: Sequence[str], embedder: Embedder,
                       fmt: str) -> list[dict[str, float]]:
    """Per-sample precision, recall, F1 and parse rate for a plan file (``fmt`` is ``json`` or ``str``)."""
    plans = []
    for sample, reply in zip(samples, replies):
        prompt_type = sample.meta.get("prompt_type", fmt)
        if prompt_type == "json":
            pred = parse_plan_json(reply)
        elif prompt_type == "str":
            pred = parse_plan_str(reply, sample.meta.get("API_list", []))
        else:
            raise ConfigError(f"plan sample {sample.id!r} has prompt_type {prompt_type!r}: expected json or str")
        plans.append((pred, parse_plan_json(sample.ground_truth)))
    # One batched encode of every distinct text up front; the per-plan matrices then come from the cache.
    embedder.encode(list(dict.fromkeys(str(step[key]) for pred, gt in plans for step in (*pred, *gt)
                                       for key in ("name", "args"))))
    out = []
    for pred, gt in plans:
        metrics = plan_metrics(pred, gt, embedder) if pred and gt else {"precision": 0.0, "recall": 0.0,
                                                                        "f1_score": 0.0}
        metrics["parse_rate"] = float(bool(pred) and bool(gt))
        out.append(metrics)
    return out
