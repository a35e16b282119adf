"""Reason, retrieve and understand: the next step of a tool-use conversation, judged part by part.

- reason: cosine similarity of the predicted thought and the reference thought (sentence embeddings);
- retrieve: the tool name. JSON replies: exact equality. Str replies: the reference name must appear and every
  ``a.b`` name or ``FinishAction`` mentioned must be the reference one;
- understand: cosine similarity of ``str(args)`` predicted and referenced (v1; v2 switched to exact match).

JSON replies (the ``reason_retrieve_understand`` file) are a dict cut from ``{`` to ``}``: one that does not
parse scores 0 everywhere and counts as unparsed. Str replies (``reason_str``, ``retrieve_str``,
``understand_str``) are taken whole as the one field asked for, so upstream counts every str reply as parsed,
even an empty one; kept, so parse rates compare with published ones.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from agentkit.evals.teval.embedder import Embedder, pair_cosine
from agentkit.evals.teval.parsing import ParseFailure, load_structured

__all__ = ["normalize_step", "retrieve_str_hit", "score_rru_samples", "FIELDS"]

#: Which fields each file kind scores.
FIELDS: dict[str, tuple[str, ...]] = {
    "rru_json": ("thought", "name", "args"),
    "reason_str": ("thought",),
    "retrieve_str": ("name",),
    "understand_str": ("args",),
}
_NAMES = re.compile(r"\w+\.\w+|FinishAction")


def normalize_step(value: Any, args_as_dict: bool) -> dict[str, Any]:
    """``{"thought", "name", "args"}`` from a reply or reference (missing fields empty); ``{}`` if not a dict."""
    try:
        loaded = load_structured(value, "{", "}")
    except ParseFailure:
        return {}
    if not isinstance(loaded, dict):
        return {}
    step = {"thought": str(loaded.get("thought", "")), "name": str(loaded.get("name", ""))}
    args = loaded.get("args", {} if args_as_dict else "")
    step["args"] = (args if isinstance(args, dict) else {}) if args_as_dict else str(args)
    return step


def retrieve_str_hit(reply: str, name: str) -> bool:
    """The str rule: the reference name is mentioned and no other tool name (or FinishAction) is."""
    return name in reply and all(found == name for found in _NAMES.findall(reply))


def score_rru_samples(kind: str, samples: Sequence[Any], replies: Sequence[str],
                      embedder: Embedder) -> list[dict[str, float]]:
    """Per-sample scores of the fields ``kind`` asks for, plus ``parse_rate``."""
    fields = FIELDS[kind]
    json_kind = kind == "rru_json"
    results: list[dict[str, float]] = []
    thought_pairs: list[tuple[int, str, str]] = []
    args_pairs: list[tuple[int, str, str]] = []
    for index, (sample, reply) in enumerate(zip(samples, replies)):
        gt = normalize_step(sample.ground_truth, args_as_dict=json_kind)
        if json_kind:
            pred = normalize_step(reply, args_as_dict=True)
            pred = pred if pred and gt else {}
        else:
            pred = {fields[0]: str(reply)}
        scores = {field: 0.0 for field in fields}
        scores["parse_rate"] = float(bool(pred))
        if pred and gt:
            if "thought" in pred:
                thought_pairs.append((index, pred["thought"], gt["thought"]))
            if "args" in pred:
                args_pairs.append((index, str(pred["args"]), str(gt["args"])))
            if "name" in pred:
                hit = pred["name"] == gt["name"] if json_kind else retrieve_str_hit(pred["name"], gt["name"])
                scores["name"] = float(hit)
        results.append(scores)
    for field, pairs in (("thought", thought_pairs), ("args", args_pairs)):
        cosines = pair_cosine(embedder, [p for _, p, _ in pairs], [g for _, _, g in pairs])
        for (index, _, _), cosine in zip(pairs, cosines):
            results[index][field] = cosine
    return results
