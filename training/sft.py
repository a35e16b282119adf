"""Supervised fine-tuning on pre-tokenised agent samples with TRL's ``SFTTrainer``.

LoRA (peft) on every linear layer by default. The protocol tokens the tokenizer had to gain are trained
as individual embedding rows: the embedding matrix gets a gradient mask that keeps every other row
fixed, and only the new rows are saved (``added_tokens.safetensors``), so the adapter stays a few MB.
(peft's ``trainable_token_indices`` would do the same, but TRL 1.16 computes the loss from
``lm_head.weight`` directly, which a peft wrapper on a tied head does not have.)
``full=True`` fine-tunes every weight instead.
bf16 is used where it is faster (``agentkit.models.hf.bf16_is_fast``: GPUs, AMX, or a measured matmul), fp32 elsewhere.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.models.lora import ADAPTER_META, ADDED_TOKENS_FILE
from agentkit.training.data import SFTSample, add_action_tokens, to_dataset

__all__ = ["ADAPTER_META", "ADDED_TOKENS_FILE", "SFTRunConfig", "SFTResult", "added_token_ids",
           "save_added_rows", "train_sft"]



@dataclass
class SFTRunConfig:
    """Settings of one SFT run. Defaults suit LoRA on a ~100M model with a few hundred samples."""

    output_dir: str
    full: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"
    learning_rate: float | None = None  # None: 2e-3 for LoRA (the measured round), 2e-5 for full fine-tuning
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 768
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    bf16: bool | None = None  # None: where bf16 is faster (agentkit.models.hf.bf16_is_fast)
    #: learning-rate multiplier for the added tokens' embedding rows (LoRA only). At the LoRA rate a mean-initialised
    #: row moves ~0.15 in norm in one epoch (rows have norm ~3 in SmolLM2): the model learned the JSON of a call
    #: but never wrote <|action_start|>. The rows need a much larger rate than the low-rank matrices.
    new_token_lr_scale: float = 20.0
    seed: int = 0
    logging_steps: int = 1
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-5 if self.full else 2e-3


@dataclass
class SFTResult:
    """What training left behind: where the adapter (or model) is, and the loss curve."""

    output_dir: Path
    losses: list[float]
    steps: int
    seconds: float
    samples: int
    trained_tokens: int
    model: Any = None  # the trained model (a peft model for LoRA), still in memory

    @property
    def first_loss(self) -> float:
        return self.losses[0] if self.losses else math.nan

    @property
    def last_loss(self) -> float:
        return self.losses[-1] if self.losses else math.nan


def _peft_config(config: SFTRunConfig) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM")


def added_token_ids(tokenizer: Any) -> list[int]:
    """Ids of tokens added on top of the base vocabulary (the protocol tokens ``add_action_tokens`` adds)."""
    return sorted(i for i in tokenizer.get_added_vocab().values() if i >= tokenizer.vocab_size)


class _RowTrainer:
    """Lets only ``ids`` rows of the embedding (and an untied output head) learn, and saves those rows."""

    def __init__(self, model: Any, ids: list[int]):
        import torch

        self.weights = [model.get_input_embeddings().weight]
        head = model.get_output_embeddings()
        if head is not None and head.weight is not self.weights[0]:
            self.weights.append(head.weight)
        keep = torch.zeros(self.weights[0].shape[0], 1, dtype=self.weights[0].dtype,
                           device=self.weights[0].device)
        keep[ids] = 1
        for weight in self.weights:
            weight.requires_grad_(True)
            weight.register_hook(lambda grad, keep=keep: grad * keep.to(grad.dtype))



def save_added_rows(model: Any, ids: list[int], directory: Path) -> None:
    """Save the embedding rows of ``ids`` (and of an untied output head) as :data:`ADDED_TOKENS_FILE`."""
    import torch
    from safetensors.torch import save_file

    inputs = model.get_input_embeddings().weight
    tensors = {"ids": torch.tensor(ids, dtype=torch.long),
               "input_rows": inputs.detach()[ids].float().contiguous().cpu()}
    head = model.get_output_embeddings()
    if head is not None and head.weight is not inputs:
        tensors["output_rows"] = head.weight.detach()[ids].float().contiguous().cpu()
    save_file(tensors, str(directory / ADDED_TOKENS_FILE))


def train_sft(model: Any, tokenizer: Any, samples: Sequence[SFTSample], config: SFTRunConfig,
              callbacks: Sequence[Any] = ()) -> SFTResult:
    """Train ``model`` (a transformers causal LM) on ``samples``; save the adapter (or model) and tokenizer.

    The protocol tokens are added to ``tokenizer`` / ``model`` first if missing (mean-initialised).
    ``samples`` must have been tokenised with this tokenizer after the tokens were added.
    """
    import time

    from trl import SFTConfig, SFTTrainer

    from agentkit.models.hf import bf16_is_fast

    if not samples:
        raise ConfigError("no SFT samples: the loop found no successful or reference trajectories to learn from")
    added = add_action_tokens(tokenizer, model)
    new_ids = added_token_ids(tokenizer)
    vocab_limit = model.get_input_embeddings().weight.shape[0]
    if max(max(s.input_ids) for s in samples) >= vocab_limit:
        raise ConfigError("a sample has token ids beyond the model's vocabulary: tokenise with the same tokenizer "
                          "after add_action_tokens()")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    bf16 = bf16_is_fast(model.device) if config.bf16 is None else config.bf16
    out = Path(config.output_dir)
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        max_length=config.max_length,
        bf16=bf16,
        fp16=False,
        logging_steps=config.logging_steps,
        save_strategy="no",
        report_to="none",
        seed=config.seed,
        disable_tqdm=not config.progress,
        dataloader_num_workers=0,
        use_cpu=cpu_only(),
        **config.extra,
    )
    dataset = to_dataset(samples).remove_columns(["meta"])
    trainer = _row_rate_trainer(SFTTrainer, 1.0 if config.full else config.new_token_lr_scale)(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
        peft_config=None if config.full else _peft_config(config), callbacks=list(callbacks),
    )
    if new_ids and not config.full:
        _RowTrainer(trainer.model, new_ids)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    out.mkdir(parents=True, exist_ok=True)
    if config.full:
        trainer.model.save_pretrained(str(out))
    else:  # the added rows are saved on their own below, not as a 100 MB copy of the embedding matrix
        trainer.model.save_pretrained(str(out), save_embedding_layers=False)
    tokenizer.save_pretrained(str(out))
    if new_ids and not config.full:
        save_added_rows(trainer.model, new_ids, out)
    meta = {"kind": "full" if config.full else "lora", "added_tokens": added, "config": asdict(config),
            "losses": losses, "bf16": bf16}
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return SFTResult(out, losses, trainer.state.global_step, seconds, len(samples),
                     sum(s.trained_tokens for s in samples), trainer.model.eval())


def _row_rate_trainer(base: type, scale: float) -> type:
    """``base`` with the input-embedding matrix (when it trains) in its own optimizer group at ``scale`` x lr."""

    class RowRateTrainer(base):  # type: ignore[misc, valid-type]
        def create_optimizer(self, *args, **kwargs):
            optimizer = super().create_optimizer(*args, **kwargs)
            embedding = self.model.get_input_embeddings().weight
            if scale == 1.0 or not embedding.requires_grad or getattr(self, "_rows_grouped", False):
                return optimizer
            for group in optimizer.param_groups:
                group["params"] = [p for p in group["params"] if p is not embedding]
            optimizer.add_param_group({"params": [embedding], "lr": self.args.learning_rate * scale,
                                       "weight_decay": 0.0})
            self._rows_grouped = True
            return optimizer

    return RowRateTrainer


def cpu_only() -> bool:
    """Whether the TRL trainers run on the CPU (no CUDA device here)."""
    import torch

    return not torch.cuda.is_available()
