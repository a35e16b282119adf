"""The training loop: collect → verify → build data → train → evaluate, resumable stage by stage.

``run_loop(LoopConfig(...))`` writes everything under ``out``::

    state.json                 finished stages and the config they ran with (written atomically)
    eval_before.jsonl          held-out runs of the starting model (greedy)
    round1/trajectories.jsonl  K sampled runs per train task, each scored by the task's verifier
    round1/sft_data/           the SFT samples (HF datasets directory), round1/dpo_pairs.jsonl
    round1/adapter/            the LoRA adapter (load it with ``embedded-base,adapter=.../round1/adapter``)
    round1/adapter_grpo/       with ``grpo_steps``: a second LoRA trained by GRPO on top of the first
    round1/eval.jsonl          held-out runs of the trained model
    report.md, report.png      before / after table and chart

A crash resumes from the last finished stage; within collection and evaluation, runs already in the
JSONL file are not repeated. Each round trains a fresh adapter on the base model with the data of all
rounds so far, so rounds never stack adapters (within a round, a GRPO adapter stacks on that round's SFT one).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.messages import Message
from agentkit.protocols.internlm2 import InternLM2Protocol
from agentkit.training.report import EvalScores, score_records, write_report
from agentkit.training.rollout import CollectOptions, collect
from agentkit.training.tasks import Task, TaskSet, load_task_set
from agentkit.trajectory import TrajectoryRecord, append_trajectory, atomic_write_text, read_trajectories

__all__ = ["LoopConfig", "LoopResult", "run_loop", "vary_prompt"]


@dataclass
class LoopConfig:
    """Everything one loop run depends on; stored in ``state.json`` so a resume uses the same settings."""

    out: str
    model: str = "embedded"
    tasks: str = "tooluse"
    task_options: dict[str, Any] = field(default_factory=dict)
    rounds: int = 1
    samples: int = 4
    held_out: float = 0.25
    split_seed: int = 0
    train_limit: int | None = None
    eval_limit: int | None = None
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 96
    max_steps: int = 4
    max_batch: int = 32
    rollout_dtype: str = "auto"
    #: the tool list's JSON indent in prompts: 4 is what the InternLM2 agent renders at run time, so a trained
    #: adapter sees the same prompt in ``create_agent("internlm2", ...)`` as in training (None is ~25% shorter)
    tools_indent: int | None = 4
    #: share of SFT samples rendered under a varied prompt (see ``vary_prompt``), so the model calls tools
    #: outside the curriculum's exact prompt too (another tool list, no system prompt)
    prompt_variants: float = 0.5
    use_references: bool = True
    max_per_task: int = 2
    epochs: float = 1.0
    learning_rate: float | None = None
    lora_r: int = 8
    batch_size: int = 8
    full: bool = False
    dpo: bool = False
    #: GRPO steps after SFT each round (0: none): the verifier is the reward, the agent's tools the environment
    grpo_steps: int = 0
    grpo_generations: int = 4
    seed: int = 0
    progress: bool = True

    def protocol(self) -> InternLM2Protocol:
        return InternLM2Protocol(tools_indent=self.tools_indent)


@dataclass
class LoopResult:
    before: EvalScores
    rounds: list[tuple[str, EvalScores]]
    report: Path
    chart: Path | None
    seconds: dict[str, float]
    adapter: Path | None


class _State:
    """``state.json``: the config and the stages finished, rewritten atomically after every stage."""

    def __init__(self, out: Path, config: LoopConfig):
        self.path = out / "state.json"
        wanted = _comparable(config)
        if self.path.is_file():
            data = json.loads(self.path.read_text(encoding="utf-8"))
            stored = {**asdict(LoopConfig(out=str(out))), **data["config"]}  # settings added since take defaults
            if _comparable_dict(stored) != wanted:
                changed = sorted(k for k in wanted if stored.get(k) != wanted[k])
                raise ConfigError(f"{out} holds a loop run with other settings ({', '.join(changed)} differ): "
                                  "resume with the same options, or pass a new --out directory")
            self.done: dict[str, float] = data.get("done", {})
        else:
            self.done = {}
        self.config = asdict(config)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps({"config": self.config, "done": self.done}, indent=2) + "\n")

    def run(self, stage: str, fn: Callable[[], Any], log: Callable[[str], None]) -> None:
        if stage in self.done:
            log(f"[{stage}] already done, skipped")
            return
        started = time.perf_counter()
        fn()
        self.done[stage] = round(time.perf_counter() - started, 2)
        self.save()
        log(f"[{stage}] done in {self.done[stage]:.1f}s")


_VOLATILE = ("out", "rounds", "progress")


def _comparable(config: LoopConfig) -> dict[str, Any]:
    return _comparable_dict(asdict(config))


def _comparable_dict(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in _VOLATILE}


def _balanced(tasks: list[Task], limit: int | None) -> list[Task]:
    """At most ``limit`` tasks, taken round-robin over kinds so every kind stays represented."""
    if not limit or limit >= len(tasks):
        return tasks
    kinds: dict[str, list[Task]] = {}
    for task in tasks:
        kinds.setdefault(task.kind, []).append(task)
    out: list[Task] = []
    for i in range(max(len(group) for group in kinds.values())):
        out += [group[i] for group in kinds.values() if i < len(group)]
    return out[:limit]


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="run", dynamic_ncols=True)


def _load_rollout_model(spec: str, dtype: str, adapters: Sequence[Path] = ()):
    """``spec`` with ``adapters`` merged in order (SFT, then GRPO); a full fine-tune is loaded as a checkpoint."""
    from agentkit.models import load_model

    if not adapters:
        return load_model(spec, dtype=dtype)
    first, rest = adapters[0], [str(a) for a in adapters[1:]]
    if (first / "config.json").is_file() and not (first / "adapter_config.json").is_file():
        return load_model(f"hf:{first}", dtype=dtype, **({"adapter": rest} if rest else {}))
    return load_model(spec, dtype=dtype, adapter=[str(first), *rest])


def _run_tasks(config: LoopConfig, task_set: TaskSet, tasks: list[Task], path: Path, adapters: Sequence[Path],
               samples: int, temperature: float, desc: str) -> list[TrajectoryRecord]:
    """Runs of ``tasks`` appended to ``path`` as they finish; runs already in the file are kept, not redone."""
    done = list(read_trajectories(path)) if path.is_file() else []
    have = {(r.meta["task_id"], r.meta["sample"]) for r in done}
    todo = [t for t in tasks if any((t.id, k) not in have for k in range(samples))]
    if not todo:
        return done
    model = _load_rollout_model(config.model, config.rollout_dtype, adapters)
    options = CollectOptions(samples=samples, temperature=temperature, top_p=config.top_p if temperature else 1.0,
                             max_new_tokens=config.max_new_tokens, max_steps=config.max_steps,
                             max_batch=config.max_batch, seed=config.seed, protocol=config.protocol())
    bar = _progress(len(todo) * samples, desc, config.progress)

    def keep(record: TrajectoryRecord) -> None:
        if (record.meta["task_id"], record.meta["sample"]) not in have:
            append_trajectory(path, record)
        bar.update(1)

    try:
        collect(model, task_set, todo, options, on_done=keep)
    finally:
        bar.close()
    return list(read_trajectories(path))


def _reference_record(task: Task, task_set: TaskSet, protocol_name: str) -> TrajectoryRecord:
    messages = [Message.user(task.question), *(task.reference or [])]
    if task_set.system_prompt:
        messages.insert(0, Message.system(task_set.system_prompt))
    tools = task_set.make_tools()
    try:
        specs = [t.spec.model_dump() for t in tools]
    finally:
        for tool in tools:
            if callable(getattr(tool, "close", None)):
                tool.close()
    return TrajectoryRecord(agent="internlm2", model="reference", protocol=protocol_name, tools=specs,
                            messages=messages, answer=messages[-1].text, outcome="answer",
                            steps=sum(1 for m in messages if m.role == "assistant"),
                            meta={"task_id": task.id, "kind": task.kind, "source": "reference", "success": True})


def select_sft_records(records: list[TrajectoryRecord], tasks: list[Task], task_set: TaskSet, config: LoopConfig
                       ) -> list[TrajectoryRecord]:
    """Successful runs (distinct answers, at most ``max_per_task`` per task), plus the reference solution of
    every train task no run solved when ``use_references`` is on."""
    def replies(record: TrajectoryRecord) -> list[tuple[str, list[Any]]]:
        return [(m.text, [(c.name, c.arguments) for c in m.tool_calls]) for m in record.messages
                if m.role == "assistant"]

    chosen: dict[str, list[TrajectoryRecord]] = {}
    for record in records:
        if not record.meta.get("success"):
            continue
        picked = chosen.setdefault(record.meta["task_id"], [])
        if len(picked) < config.max_per_task and all(replies(record) != replies(p) for p in picked):
            picked.append(record)
    out = [r for group in chosen.values() for r in group]
    if config.use_references:
        out += [_reference_record(t, task_set, config.protocol().name) for t in tasks
                if t.id not in chosen and t.reference]
    return out


def vary_prompt(record: TrajectoryRecord, rng: random.Random,
                spec_variants: dict[str, list[Any]] | None = None) -> TrajectoryRecord:
    """The same conversation under another prompt: the tools in another order (half the time only those it
    calls, or one it does not need), sometimes another wording of a tool's spec, and half the time without
    the system prompt. What the assistant says is unchanged, so the label stays right."""
    tools = list(record.tools)
    if tools and rng.random() < 0.5:
        used = {call.name for call in record.tool_calls}
        tools = [t for t in tools if t.get("name") in used] or [rng.choice(tools)]
    rng.shuffle(tools)
    variants = spec_variants or {}
    tools = [rng.choice(variants[t["name"]]).model_dump() if variants.get(t.get("name")) and rng.random() < 0.5
             else t for t in tools]
    messages = list(record.messages)
    if messages and messages[0].role == "system" and rng.random() < 0.5:
        messages = messages[1:]
    return record.model_copy(update={"tools": tools, "messages": messages})


def run_loop(config: LoopConfig, log: Callable[[str], None] = print) -> LoopResult:
    """Run (or resume) the loop described by ``config``; see the module docstring for what it writes."""
    if config.rounds < 1 or config.samples < 1:
        raise ConfigError("rounds and samples must be at least 1")
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out, config)
    task_set = load_task_set(config.tasks, **config.task_options)
    train, held_out = task_set.split(config.held_out, config.split_seed)
    train = _balanced(train, config.train_limit)
    held_out = _balanced(held_out, config.eval_limit)
    if not train or not held_out:
        raise ConfigError(f"the {config.tasks!r} set split into {len(train)} train and {len(held_out)} held-out tasks: "
                          "both need some; generate more tasks (--per-kind) or change the held-out share")
    log(f"{config.tasks}: {len(train)} train tasks, {len(held_out)} held-out tasks; model {config.model}")
    seconds: dict[str, float] = {}

    def evaluate(path: Path, adapters: Sequence[Path], desc: str) -> EvalScores:
        return score_records(_run_tasks(config, task_set, held_out, path, adapters, 1, 0.0, desc))

    state.run("eval_before", lambda: evaluate(out / "eval_before.jsonl", (), "eval before"), log)
    before = score_records(list(read_trajectories(out / "eval_before.jsonl")))
    rounds: list[tuple[str, EvalScores]] = []
    adapters: list[Path] = []
    all_records: list[TrajectoryRecord] = []
    try:
        for number in range(1, config.rounds + 1):
            folder = out / f"round{number}"
            folder.mkdir(exist_ok=True)
            stage = f"round{number}"
            previous = list(adapters)

            def collect_stage() -> None:
                _run_tasks(config, task_set, train, folder / "trajectories.jsonl", previous, config.samples,
                           config.temperature, f"round {number}: collect")

            state.run(f"{stage}.collect", collect_stage, log)
            records = list(read_trajectories(folder / "trajectories.jsonl"))
            all_records += records
            state.run(f"{stage}.build", lambda: _build(config, all_records, train, task_set, folder, log), log)
            state.run(f"{stage}.train", lambda: _train(config, folder, log), log)
            adapters = [folder / ("adapter_dpo" if (folder / "adapter_dpo").is_dir() else "adapter")]
            if config.grpo_steps:
                state.run(f"{stage}.grpo", lambda: _grpo(config, folder, adapters[0], task_set, train, log), log)
                adapters.append(folder / "adapter_grpo")
            scores_path = folder / "eval.jsonl"
            state.run(f"{stage}.eval", lambda: evaluate(scores_path, adapters, f"round {number}: eval"), log)
            rounds.append((f"round {number}", score_records(list(read_trajectories(scores_path)))))
    finally:
        task_close = task_set.close
        if task_close is not None:
            task_close()
    seconds = dict(state.done)
    details = {
        "model": config.model, "task set": config.tasks, "train tasks": len(train), "held-out tasks": len(held_out),
        "samples per task": config.samples, "temperature": config.temperature, "rounds": config.rounds,
        "method": ("full fine-tuning" if config.full else f"LoRA r={config.lora_r}") + (" + DPO" if config.dpo else "")
                  + (f" + GRPO {config.grpo_steps} steps" if config.grpo_steps else ""),
        "stage seconds": ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()),
        "round seconds": f"{sum(v for k, v in seconds.items() if k.startswith('round1.')):.0f}",
    }
    md, png = write_report(out, f"{config.model} on {config.tasks}: before vs after training", before, rounds, details)
    log(f"report: {md}" + (f" and {png}" if png else ""))
    return LoopResult(before, rounds, md, png, seconds, adapters[-1] if adapters else None)


def _build(config: LoopConfig, records: list[TrajectoryRecord], train: list[Task], task_set: TaskSet,
           folder: Path, log: Callable[[str], None]) -> None:
    from agentkit.models import load_model
    from agentkit.training.data import add_action_tokens, save_samples, sft_sample_from_record
    from agentkit.training.dpo import preference_pairs

    train_ids = {t.id for t in train}
    records = [r for r in records if r.meta.get("task_id") in train_ids]
    chosen = select_sft_records(records, train, task_set, config)
    tokenizer = load_model(config.model).tokenizer
    add_action_tokens(tokenizer)
    protocol = config.protocol()

    def prompt_of(record: TrajectoryRecord) -> TrajectoryRecord:
        rng = random.Random(f"{config.seed}-{record.meta.get('task_id')}-{record.meta.get('sample', 'reference')}")
        if rng.random() < config.prompt_variants:
            return vary_prompt(record, rng, task_set.spec_variants)
        return record

    samples = [sft_sample_from_record(prompt_of(r), tokenizer, protocol, max_length=1024) for r in chosen]
    target = folder / "sft_data"
    if target.exists():
        shutil.rmtree(target)
    save_samples(samples, target)
    pairs = preference_pairs(records, protocol) if config.dpo else []
    atomic_write_text(folder / "dpo_pairs.jsonl", "".join(json.dumps(p) + "\n" for p in pairs))
    own = sum(1 for r in chosen if r.meta.get("source") != "reference")
    log(f"built {len(samples)} SFT samples ({own} from the model's own successful runs, {len(samples) - own} "
        f"reference solutions), {sum(s.trained_tokens for s in samples)} trained tokens; {len(pairs)} DPO pairs")


def _train(config: LoopConfig, folder: Path, log: Callable[[str], None]) -> None:
    from agentkit.models import load_model
    from agentkit.training.data import load_samples
    from agentkit.training.dpo import DPORunConfig, train_dpo
    from agentkit.training.sft import SFTRunConfig, train_sft

    base = load_model(config.model, dtype="float32")
    samples = load_samples(folder / "sft_data")
    sft = SFTRunConfig(output_dir=str(folder / "adapter"), full=config.full, epochs=config.epochs,
                       learning_rate=config.learning_rate, lora_r=config.lora_r, lora_alpha=2 * config.lora_r,
                       batch_size=config.batch_size, seed=config.seed, progress=config.progress)
    result = train_sft(base.model.train(), base.tokenizer, samples, sft)
    log(f"SFT: {result.steps} steps, loss {result.first_loss:.3f} -> {result.last_loss:.3f} in {result.seconds:.0f}s")
    pairs = [json.loads(line) for line in (folder / "dpo_pairs.jsonl").read_text().splitlines() if line.strip()]
    if config.dpo and pairs and not config.full:
        dpo_config = DPORunConfig(output_dir=str(folder / "adapter_dpo"), seed=config.seed, progress=config.progress)
        dpo = train_dpo(result.model, base.tokenizer, pairs, dpo_config)
        log(f"DPO: {dpo.steps} steps on {dpo.pairs} pairs, loss {dpo.losses[0]:.3f} -> {dpo.losses[-1]:.3f}")


def _grpo(config: LoopConfig, folder: Path, sft: Path, task_set: TaskSet, train: list[Task],
          log: Callable[[str], None]) -> None:
    from agentkit.training.grpo import GRPORunConfig, train_grpo

    base = _load_rollout_model(config.model, "float32", [sft])
    grpo = GRPORunConfig(output_dir=str(folder / "adapter_grpo"), num_generations=config.grpo_generations,
                         max_steps=config.grpo_steps, lora_r=config.lora_r, temperature=config.temperature,
                         top_p=config.top_p, max_new_tokens=config.max_new_tokens, max_agent_steps=config.max_steps,
                         seed=config.seed, progress=config.progress)
    result = train_grpo(base.model.train(), base.tokenizer, task_set, train, grpo, config.protocol())
    log(f"GRPO: {result.steps} steps, mean reward per step {', '.join(f'{r:.2f}' for r in result.rewards)} "
        f"in {result.seconds:.0f}s")
