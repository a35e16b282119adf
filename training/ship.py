"""Package what a loop run learned as an adapter to ship: a few MB, a model card, and refusal when it did not help.

``ship_adapter(run, out)`` takes the adapter of a finished ``agentkit train loop`` run and writes ``out`` with:
the LoRA weights cast to bf16 (half the size; merging them into fp32 weights changes logits by ~1e-3),
the trained rows of the added protocol tokens, the adapter's meta file with the tokens' names (so loading
rebuilds the tokenizer from the base one instead of shipping a 2 MB copy of its vocabulary), and a
``README.md`` model card with the command that made it and its before/after figures. The directory is
written next to ``out`` and renamed into place, so a failed run never leaves half an adapter.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.models.lora import ADAPTER_META, ADDED_TOKENS_FILE
from agentkit.training.loop import LoopConfig
from agentkit.training.report import EvalScores

__all__ = ["ShippedAdapter", "loop_command", "ship_adapter"]

_WEIGHTS = "adapter_model.safetensors"


@dataclass
class ShippedAdapter:
    path: Path
    bytes: int
    before: EvalScores
    after: EvalScores


def loop_command(config: dict[str, Any]) -> str:
    """The ``agentkit train loop`` command line that reproduces a run's ``state.json`` config."""
    defaults = asdict(LoopConfig(out=""))
    flags = {"rounds": "--rounds", "samples": "--samples", "train_limit": "--train-limit",
             "eval_limit": "--eval-limit", "temperature": "--temperature", "epochs": "--epochs",
             "learning_rate": "--lr", "lora_r": "--lora-r", "max_new_tokens": "--max-new-tokens",
             "rollout_dtype": "--dtype", "grpo_steps": "--grpo-steps"}
    parts = ["agentkit", "train", "loop", "--model", config["model"], "--tasks", config["tasks"]]
    for key, value in config.get("task_options", {}).items():
        parts += [{"per_kind": "--per-kind", "path": "--gsm8k-path"}.get(key, f"--{key}"), str(value)]
    for key, flag in flags.items():
        if key in config and config[key] != defaults[key]:
            parts += [flag, str(config[key])]
    for key, flag in (("full", "--full"), ("dpo", "--dpo")):
        if config.get(key):
            parts.append(flag)
    if not config.get("use_references", True):
        parts.append("--no-references")
    return " ".join(shlex.quote(p) for p in parts) + " --out runs/tooluse"


def _read_run(run: Path) -> tuple[dict[str, Any], dict[str, Any], Path]:
    state_file, report_file = run / "state.json", run / "report.json"
    if not state_file.is_file() or not report_file.is_file():
        raise ConfigError(f"{run} is not a finished loop run (state.json and report.json are missing): "
                          "run agentkit train loop --out DIR to the end first")
    state = json.loads(state_file.read_text(encoding="utf-8"))
    report = json.loads(report_file.read_text(encoding="utf-8"))
    rounds = [k for k in report["scores"] if k != "before"]
    if not rounds:
        raise ConfigError(f"{run} has no evaluated round yet: finish the loop first")
    number = rounds[-1].split()[-1]
    folder = run / f"round{number}"
    adapter = folder / "adapter_dpo" if (folder / "adapter_dpo").is_dir() else folder / "adapter"
    if (folder / "adapter_grpo").is_dir():
        raise ConfigError(f"{folder} holds an SFT adapter and a GRPO adapter trained on top of it; shipping stacked "
                          "adapters is not supported: load them as MODEL,adapter=... with both, in order")
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"{adapter} holds no LoRA adapter (a --full run saves a whole model, which is not shipped "
                          "as an adapter)")
    return state, report, adapter


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def _model_card(name: str, state: dict[str, Any], report: dict[str, Any], before: EvalScores,
                after: EvalScores, files: dict[str, int]) -> str:
    config = state["config"]
    details = report["details"]
    rows = [("task success", before.success, after.success), ("tool-call validity", before.validity, after.validity)]
    lines = [
        f"# {name}",
        "",
        "A LoRA adapter for SmolLM2-135M-Instruct (the `embedded-base` model) that makes it call tools in the "
        "InternLM2 protocol (`<|action_start|><|plugin|>{json}<|action_end|>`). `--model embedded` loads the base "
        "model with this adapter merged; `--model embedded-base` leaves it out.",
        "",
        "## How it was made",
        "",
        "```bash",
        loop_command(config),
        "agentkit train ship runs/tooluse --out models/adapters/" + name,
        "```",
        "",
        f"- method: {details.get('method', '?')}, {config.get('epochs')} epoch(s), "
        f"prompt variants {config.get('prompt_variants', 0)}, tool list indent {config.get('tools_indent')}",
        f"- data: {details.get('train tasks')} train tasks × {details.get('samples per task')} sampled runs "
        f"(temperature {details.get('temperature')}), plus reference solutions for the tasks no run solved",
        f"- stage seconds: {details.get('stage seconds')} (one round: {details.get('round seconds')} s)",
        "",
        f"## Held-out results ({after.runs} tasks of the `{config['tasks']}` set, greedy, same run)",
        "",
        "| metric | embedded-base | with this adapter | change |",
        "|---|---:|---:|---:|",
    ]
    for label, b, a in rows:
        lines.append(f"| {label} | {_percent(b)} | {_percent(a)} | {100 * (a - b):+.1f} pts |")
    lines.append(f"| mean steps | {before.mean_steps:.2f} | {after.mean_steps:.2f} | "
                 f"{after.mean_steps - before.mean_steps:+.2f} |")
    lines += ["", "Task success by kind:", "", "| kind | embedded-base | with this adapter |", "|---|---:|---:|"]
    for kind, row in before.by_kind.items():
        lines.append(f"| {kind} | {_percent(row['success'])} | "
                     f"{_percent(after.by_kind.get(kind, {}).get('success', 0.0))} |")
    lines += ["", "## Files", ""]
    lines += [f"- `{file}`: {_size(size)}" for file, size in sorted(files.items())]
    lines += ["", "## Limits", "",
              "- Trained on one small curriculum (calculator arithmetic, unit conversion, table lookups, two-step "
              "lookups, questions needing no tool); kinds at 0% above are not learned.",
              "- A 135M model: it formats calls, it does not reason. Use a larger model for real work.",
              "- License: the base model's (Apache-2.0).", ""]
    return "\n".join(lines)


def ship_adapter(run: str | Path, out: str | Path, *, name: str | None = None, force: bool = False) -> ShippedAdapter:
    """Write the adapter of loop run ``run`` to ``out`` as a shippable directory (see the module docstring).

    Refuses (``ConfigError``) when the adapter did not beat the base model on task success and tool-call
    validity, unless ``force``.
    """
    import torch
    from safetensors.torch import load_file, save_file

    run, out = Path(run), Path(out)
    state, report, adapter = _read_run(run)
    scores = report["scores"]
    before = EvalScores.from_dict(scores["before"])
    after = EvalScores.from_dict(scores[[k for k in scores if k != "before"][-1]])
    if not force and (after.success <= before.success or after.validity <= before.validity):
        raise ConfigError(f"the adapter in {adapter} does not beat the base model (success {_percent(before.success)}"
                          f" -> {_percent(after.success)}, validity {_percent(before.validity)} -> "
                          f"{_percent(after.validity)}): train more, or pass force=True / --force to ship it anyway")
    meta = json.loads((adapter / ADAPTER_META).read_text(encoding="utf-8")) if (adapter / ADAPTER_META).is_file() \
        else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a shipped adapter is read by every user
        peft_config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
        peft_config["base_model_name_or_path"] = state["config"]["model"]  # the spec, not this machine's cache path
        (tmp / "adapter_config.json").write_text(json.dumps(peft_config, indent=2) + "\n", encoding="utf-8")
        weights = load_file(str(adapter / _WEIGHTS))
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, str(tmp / _WEIGHTS))
        if (adapter / ADDED_TOKENS_FILE).is_file():
            shutil.copy2(adapter / ADDED_TOKENS_FILE, tmp / ADDED_TOKENS_FILE)
        shipped_meta = {"kind": meta.get("kind", "lora"), "added_tokens": meta.get("added_tokens", []),
                        "base_model": state["config"]["model"], "weights_dtype": "bfloat16",
                        "loop_config": {k: v for k, v in state["config"].items() if k not in ("out", "progress")},
                        "sft_config": {k: v for k, v in meta.get("config", {}).items()
                                       if k not in ("output_dir", "progress")}}
        (tmp / ADAPTER_META).write_text(json.dumps(shipped_meta, indent=2) + "\n", encoding="utf-8")
        for path in tmp.iterdir():
            path.chmod(0o644)
        files = {p.name: p.stat().st_size for p in tmp.iterdir()}
        card_name = name or out.name
        (tmp / "README.md").write_text(_model_card(card_name, state, report, before, after, files), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ShippedAdapter(out, sum(p.stat().st_size for p in out.iterdir()), before, after)
