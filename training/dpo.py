"""Preference tuning with TRL's ``DPOTrainer`` on (successful, failed) runs of the same task.

Pairs compare the *first assistant turn* of a run that succeeded with one that failed on the same
task, both after the same prompt (system, tools, question). That first turn is where a run decides
whether to call a tool and in what format; later turns sit after different tool results, so they do not
share a prompt, and scoring tool results (text the model never writes) would blur the preference.

The policy is a LoRA adapter; the reference is the same model with the adapter switched off, so no
second copy of the model is held in memory. When ``model`` already carries an adapter (after SFT), DPO
continues training that adapter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.messages import Message
from agentkit.protocols.base import Protocol
from agentkit.training.data import preference_pair
from agentkit.training.sft import ADAPTER_META, added_token_ids, cpu_only, save_added_rows
from agentkit.trajectory import TrajectoryRecord

__all__ = ["DPORunConfig", "DPOResult", "preference_pairs", "train_dpo"]


@dataclass
class DPORunConfig:
    """Settings of one DPO run."""

    output_dir: str
    beta: float = 0.1
    learning_rate: float = 5e-5
    epochs: float = 1.0
    batch_size: int = 4
    max_length: int = 768
    lora_r: int = 16
    lora_alpha: int = 32
    bf16: bool | None = None
    seed: int = 0
    progress: bool = True


@dataclass
class DPOResult:
    output_dir: Path
    losses: list[float]
    steps: int
    seconds: float
    pairs: int
    model: Any = None


def _first_turn(record: TrajectoryRecord) -> tuple[list[Message], list[Message]] | None:
    """(prompt messages, [first assistant message]) of a run, or ``None`` if it never replied."""
    for i, message in enumerate(record.messages):
        if message.role == "assistant":
            return list(record.messages[:i]), [message]
    return None


def preference_pairs(records: Sequence[TrajectoryRecord], protocol: Protocol | None = None,
                     max_per_task: int = 2) -> list[dict[str, str]]:
    """DPO examples (``prompt`` / ``chosen`` / ``rejected`` text) from scored records.

    A task contributes pairs only when it has both a successful and a failed run whose first turns differ.
    Records need ``meta["task_id"]`` and ``meta["success"]`` (as the loop writes them).
    """
    by_task: dict[str, tuple[list[TrajectoryRecord], list[TrajectoryRecord]]] = {}
    for record in records:
        if "task_id" not in record.meta or "success" not in record.meta:
            raise ConfigError("trajectory records need meta 'task_id' and 'success' to form preference pairs: "
                              "score them with the loop's collect stage first")
        good, bad = by_task.setdefault(record.meta["task_id"], ([], []))
        (good if record.meta["success"] else bad).append(record)
    pairs: list[dict[str, str]] = []
    for task_id, (good, bad) in sorted(by_task.items()):
        made = 0
        for winner, loser in zip(good, bad):
            won, lost = _first_turn(winner), _first_turn(loser)
            if won is None or lost is None:
                continue
            pair = preference_pair(won[0], won[1], lost[1], winner.tools, protocol)
            if pair["chosen"] == pair["rejected"]:
                continue
            pairs.append({**pair, "task_id": task_id})
            made += 1
            if made >= max_per_task:
                break
    return pairs


def train_dpo(model: Any, tokenizer: Any, pairs: Sequence[dict[str, str]], config: DPORunConfig) -> DPOResult:
    """Train with DPO on ``pairs``; save the adapter and tokenizer in ``config.output_dir``."""
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from trl import DPOConfig, DPOTrainer

    from agentkit.models.hf import bf16_is_fast

    if not pairs:
        raise ConfigError("no preference pairs: DPO needs tasks with both a successful and a failed run "
                          "(collect more samples per task, or with a higher temperature)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bf16 = bf16_is_fast(model.device) if config.bf16 is None else config.bf16
    out = Path(config.output_dir)
    args = DPOConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate, num_train_epochs=config.epochs, beta=config.beta,
        max_length=config.max_length, bf16=bf16, fp16=False, logging_steps=1, save_strategy="no",
        report_to="none", seed=config.seed, disable_tqdm=not config.progress, use_cpu=cpu_only(),
    )
    has_adapter = isinstance(model, PeftModel)
    peft_config = None if has_adapter else LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha,
                                                     target_modules="all-linear", task_type="CAUSAL_LM")
    if has_adapter:
        model.train()
        for name, param in model.named_parameters():
            if "lora_" in name or "trainable_tokens" in name:
                param.requires_grad_(True)
    dataset = Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                         peft_config=peft_config)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    out.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(out), save_embedding_layers=False)
    tokenizer.save_pretrained(str(out))
    new_ids = added_token_ids(tokenizer)
    if new_ids:  # the added tokens' rows (trained by SFT) belong with the adapter
        save_added_rows(trainer.model, new_ids, out)
    meta = {"kind": "lora", "method": "dpo", "config": asdict(config), "losses": losses, "pairs": len(pairs)}
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return DPOResult(out, losses, trainer.state.global_step, seconds, len(pairs), trainer.model.eval())

