"""Instruct dimension: does the reply follow the requested output format, with the exact tool and arguments.

Each sample's ``template`` names the format. JSON: the reply is a dict and the template maps ``thought``,
``action`` and ``args`` to the keys to read. Str: the template gives the text around each field
(``thought_start`` .. ``args_end``), e.g. ``Thought: ... Action: ... Action Input: {...}``. A reply that fits
scores format 1 and ``args_em`` = (action right + each reference argument equal) / (number of arguments + 1);
one that does not fit scores 0 for both. The dimension averages ``(format + args_em) / 2`` over the two formats.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from agentkit.errors import ConfigError
from agentkit.evals.teval.parsing import ParseFailure, load_structured, match_template

__all__ = ["args_exact_match", "parse_instruct", "score_instruct_samples"]

_STR_FIELDS = ("thought_start", "thought_end", "action_start", "action_end", "args_start", "args_end")


def parse_instruct(reply: str, template: dict[str, str], fmt: str) -> dict[str, Any] | None:
    """``{"thought", "action", "args"}`` read from ``reply`` in the template's format, or ``None``."""
    if fmt == "json":
        try:
            value = load_structured(reply)
            parsed = {"thought": value[template["thought"]], "action": value[template["action"]],
                      "args": value[template["args"]]}
        except (ParseFailure, KeyError, TypeError, IndexError):
            return None
        parsed["args"] = parsed["args"] if isinstance(parsed["args"], dict) else {}
        return parsed
    missing = [f for f in _STR_FIELDS if f not in template]
    if missing:
        raise ConfigError(f"a str instruct template needs {', '.join(missing)}")
    pattern = (template["thought_start"] + "{thought}" + template["thought_end"] + template["action_start"]
               + "{action}" + template["action_end"] + template["args_start"] + "{args}" + template["args_end"])
    fields = match_template(pattern, str(reply))
    if fields is None:
        return None
    try:
        args = ast.literal_eval(fields["args"].strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        args = {}
    return {"thought": fields["thought"], "action": fields["action"].strip(),
            "args": args if isinstance(args, dict) else {}}


def args_exact_match(gt_action: Any, pred_action: Any, gt_args: dict[str, Any], pred_args: dict[str, Any]) -> float:
    """(right action + reference arguments given exactly) / (number of reference arguments + 1)."""
    hits = float(gt_action == pred_action)
    hits += sum(1.0 for key, value in gt_args.items() if pred_args.get(key, "") == value)
    return hits / (len(gt_args) + 1)


def score_instruct_samples(samples: Sequence[Any], replies: Sequence[str]) -> list[dict[str, Any]]:
    """Per-sample ``format`` and ``args_em``, with the sample's ``response_format`` (json or str)."""
    out = []
    for sample, reply in zip(samples, replies):
        fmt = sample.meta.get("response_format", "json")
        if not isinstance(sample.template, dict):
            raise ConfigError(f"instruct sample {sample.id!r} has no template dict: it cannot be scored")
        parsed = parse_instruct(reply, sample.template, fmt)
        gt = sample.ground_truth
        em = 0.0 if parsed is None else args_exact_match(gt["action"], parsed["action"], gt.get("args") or {},
                                                         parsed["args"])
        out.append({"response_format": fmt, "format": float(parsed is not None), "args_em": em,
                    "parse_rate": float(parsed is not None)})
    return out
