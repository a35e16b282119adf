"""GRPO with TRL: the task verifier is the reward, the agent's own tools are the environment.

Each GRPO prompt is a train task. TRL's ``GRPOTrainer`` hands the tasks of a step to :func:`agent_rollouts`
(its ``rollout_func``), which runs the real InternLM2 agent on them with the policy being trained, batched as
the loop's collection is. A run's conversation after the prompt is the completion: the model's turns count in
the loss, the tool results between them are masked out (``env_mask``). The reward is 1 when the verifier
accepts the run and 0 otherwise; GRPO compares the runs of one task with each other, so a task every run
solves (or none does) teaches nothing and only mixed groups move the policy.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.models.lora import ADAPTER_META
from agentkit.protocols.internlm2 import InternLM2Protocol
from agentkit.training.data import IGNORE_INDEX, sft_sample_from_record
from agentkit.training.rollout import CollectOptions, collect
from agentkit.training.sft import cpu_only
from agentkit.training.tasks.base import Task, TaskSet
from agentkit.trajectory import TrajectoryRecord

__all__ = ["GRPORunConfig", "GRPOResult", "agent_rollouts", "train_grpo"]


@dataclass
class GRPORunConfig:
    """Settings of one GRPO run. ``num_generations`` runs per task form a group; a step takes
    ``tasks_per_step`` tasks."""

    output_dir: str
    num_generations: int = 4
    tasks_per_step: int = 4
    max_steps: int = 10
    learning_rate: float = 5e-4
    lora_r: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 64
    max_agent_steps: int = 3
    max_length: int = 1024
    beta: float = 0.0  # no KL term: no reference model to hold or run
    bf16: bool | None = None  # None: where bf16 is faster (agentkit.models.hf.bf16_is_fast)
    seed: int = 0
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class GRPOResult:
    output_dir: Path
    steps: int
    seconds: float
    rewards: list[float]  # mean reward of each step's runs
    model: Any = None


def _split(record: TrajectoryRecord, tokenizer: Any, protocol: InternLM2Protocol, max_length: int
           ) -> tuple[list[int], list[int], list[int]]:
    """A run as (prompt ids, completion ids, env mask): the completion runs from the model's first token to its
    last (its closing ``<|im_end|>``, the EOS of SmolLM2's tokenizer, so TRL counts the run as finished)."""
    sample = sft_sample_from_record(record, tokenizer, protocol, max_length=max_length)
    trained = [i for i, label in enumerate(sample.labels) if label != IGNORE_INDEX]
    if not trained:
        return sample.input_ids, [tokenizer.eos_token_id], [0]
    start, end = trained[0], trained[-1] + 1
    mask = [int(label != IGNORE_INDEX) for label in sample.labels[start:end]]
    return sample.input_ids[:start], sample.input_ids[start:end], mask


def agent_rollouts(task_set: TaskSet, config: GRPORunConfig, tokenizer: Any,
                   protocol: InternLM2Protocol | None = None) -> Callable[[list[str], Any], dict[str, Any]]:
    """The ``rollout_func`` for ``GRPOTrainer``: one agent run per prompt entry (a task id; TRL repeats each
    task ``num_generations`` times), with the trainer's current policy, prompted with ``protocol`` (the one
    SFT rendered its samples with)."""
    from agentkit.models.hf import HFModel

    by_id = task_set.by_id()
    protocol = protocol or InternLM2Protocol()

    def rollout(prompts: list[str], trainer: Any) -> dict[str, Any]:
        unknown = sorted({p for p in prompts if p not in by_id})
        if unknown:
            raise ConfigError(f"GRPO prompts must be task ids of the {task_set.name!r} set; unknown: {unknown[:3]}")
        model = trainer.model
        was_training = model.training
        policy = HFModel(model, tokenizer, protocol=protocol, model_name="policy")
        counts = Counter(prompts)
        tasks = [by_id[task_id] for task_id in counts]
        options = CollectOptions(samples=max(counts.values()), temperature=config.temperature, top_p=config.top_p,
                                 max_new_tokens=config.max_new_tokens, max_steps=config.max_agent_steps,
                                 seed=config.seed + int(trainer.state.global_step), protocol=protocol)
        try:
            records = collect(policy, task_set, tasks, options)
        finally:
            model.train(was_training)
        runs: dict[str, list[TrajectoryRecord]] = {}
        for record in sorted(records, key=lambda r: r.meta["sample"]):
            runs.setdefault(record.meta["task_id"], []).append(record)
        out: dict[str, list[Any]] = {"prompt_ids": [], "completion_ids": [], "env_mask": [], "success": []}
        taken = Counter()
        for task_id in prompts:  # one completion per entry, in TRL's order
            record = runs[task_id][taken[task_id]]
            taken[task_id] += 1
            prompt_ids, completion_ids, mask = _split(record, tokenizer, protocol, config.max_length)
            out["prompt_ids"].append(prompt_ids)
            out["completion_ids"].append(completion_ids)
            out["env_mask"].append(mask)
            out["success"].append(1.0 if record.meta.get("success") else 0.0)
        return {**out, "logprobs": None}

    return rollout


def verifier_reward(completions: Sequence[Any], success: Sequence[float], **kwargs: Any) -> list[float]:
    """The task verifier's verdict on each run (computed during the rollout)."""
    return [float(s) for s in success]


def train_grpo(model: Any, tokenizer: Any, task_set: TaskSet, tasks: Sequence[Task], config: GRPORunConfig,
               protocol: InternLM2Protocol | None = None) -> GRPOResult:
    """Train a fresh LoRA on ``model`` with GRPO over ``tasks``; save it to ``config.output_dir``.

    ``tokenizer`` must already have the InternLM2 action tokens (a model loaded as ``embedded`` or with a
    trained adapter has them)."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from agentkit.models.hf import bf16_is_fast

    if not tasks:
        raise ConfigError("GRPO needs at least one train task")
    if "<|action_start|>" not in tokenizer.get_vocab():
        raise ConfigError("the tokenizer lacks the InternLM2 action tokens: start GRPO from a model that has them "
                          "(embedded, or MODEL,adapter=DIR after SFT)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out = Path(config.output_dir)
    batch = config.tasks_per_step * config.num_generations
    args = GRPOConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=batch, gradient_accumulation_steps=1,
        num_generations=config.num_generations, max_steps=config.max_steps, learning_rate=config.learning_rate,
        beta=config.beta, bf16=bf16_is_fast(model.device) if config.bf16 is None else config.bf16,
        logging_steps=1, save_strategy="no", report_to="none", seed=config.seed,
        disable_tqdm=not config.progress, use_cpu=cpu_only(), dataloader_num_workers=0, **config.extra)
    dataset = Dataset.from_dict({"prompt": [task.id for task in tasks]})
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, target_modules="all-linear",
                             task_type="CAUSAL_LM")
    with warnings.catch_warnings():  # rollout_func is marked experimental in TRL 1.16; we pin and test it
        warnings.filterwarnings("ignore", message="You are using 'rollout_func'")
        trainer = GRPOTrainer(model=model, reward_funcs=[verifier_reward], args=args, train_dataset=dataset,
                              processing_class=tokenizer, peft_config=peft_config,
                              rollout_func=agent_rollouts(task_set, config, tokenizer, protocol))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    out.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    meta = {"kind": "lora", "method": "grpo", "added_tokens": [], "rewards": rewards,
            "config": {k: v for k, v in config.__dict__.items() if k not in ("output_dir", "progress")}}
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return GRPOResult(out, trainer.state.global_step, seconds, rewards, trainer.model.eval())

