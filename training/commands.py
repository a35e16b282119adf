"""``agentkit train ...``: the training loop and its stages from the command line (typer only at import)."""

from __future__ import annotations

from typing import Optional

import typer

train_app = typer.Typer(help="Train a model to use tools from its own agent trajectories (SFT / DPO with TRL).",
                        no_args_is_help=True)


@train_app.command("loop")
def loop(
    model: str = typer.Option("embedded", "--model", "-m", help="model spec: embedded, embedded-base or hf:PATH"),
    tasks: str = typer.Option("tooluse", "--tasks", help="task set: tooluse or gsm8k"),
    rounds: int = typer.Option(1, "--rounds", min=1, help="collect → train → eval rounds"),
    samples: int = typer.Option(4, "--samples", "-k", min=1, help="sampled runs per train task"),
    out: str = typer.Option(..., "--out", "-o", help="run directory (rerun with the same --out to resume)"),
    per_kind: Optional[int] = typer.Option(None, "--per-kind", help="tooluse: tasks generated per kind"),
    gsm8k_path: Optional[str] = typer.Option(None, "--gsm8k-path", help="gsm8k: path of train.jsonl"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="use at most this many train tasks"),
    eval_limit: Optional[int] = typer.Option(None, "--eval-limit", help="evaluate on at most this many held-out tasks"),
    temperature: float = typer.Option(0.8, "--temperature", min=0.0, help="sampling temperature for collection"),
    epochs: float = typer.Option(1.0, "--epochs", help="SFT epochs"),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (default 2e-3 LoRA, 2e-5 full)"),
    lora_r: int = typer.Option(8, "--lora-r", help="LoRA rank"),
    full: bool = typer.Option(False, "--full", help="full fine-tuning instead of LoRA"),
    dpo: bool = typer.Option(False, "--dpo", help="also run DPO on (successful, failed) pairs after SFT"),
    grpo_steps: int = typer.Option(0, "--grpo-steps", min=0,
                                   help="GRPO steps after SFT (verifier reward, the agent's tools as environment)"),
    no_references: bool = typer.Option(False, "--no-references",
                                       help="train only on the model's own successful runs"),
    max_new_tokens: int = typer.Option(96, "--max-new-tokens", help="tokens per model call"),
    dtype: str = typer.Option("auto", "--dtype", help="dtype for collection and evaluation (auto, bf16, fp32)"),
) -> None:
    """Collect K runs per task, verify, build SFT (and DPO) data, train, and report before vs after."""
    from agentkit.training.loop import LoopConfig, run_loop

    options: dict = {}
    if per_kind is not None:
        options["per_kind"] = per_kind
    if gsm8k_path is not None:
        options["path"] = gsm8k_path
    config = LoopConfig(out=out, model=model, tasks=tasks, task_options=options, rounds=rounds, samples=samples,
                        train_limit=train_limit, eval_limit=eval_limit, temperature=temperature, epochs=epochs,
                        learning_rate=lr, lora_r=lora_r, full=full, dpo=dpo, grpo_steps=grpo_steps,
                        use_references=not no_references,
                        max_new_tokens=max_new_tokens, rollout_dtype=dtype)
    result = run_loop(config, log=lambda line: typer.echo(line, err=True))
    typer.echo(result.report.read_text(encoding="utf-8"))


@train_app.command("tasks")
def tasks_command(
    name: str = typer.Argument("tooluse", help="task set: tooluse or gsm8k"),
    show: int = typer.Option(5, "--show", help="print this many tasks"),
) -> None:
    """List the task sets, or show a few tasks of one with their answers."""
    from agentkit.training.tasks import TASK_SETS, load_task_set

    if name not in TASK_SETS:
        for key, text in TASK_SETS.items():
            typer.echo(f"{key:10} {text}")
        raise typer.Exit(1)
    task_set = load_task_set(name)
    train, held = task_set.split()
    typer.echo(f"{name}: {len(task_set.tasks)} tasks ({len(train)} train, {len(held)} held out)")
    for task in task_set.tasks[:show]:
        typer.echo(f"  [{task.kind}] {task.question}  ->  {task.answer}")


@train_app.command("sft")
def sft_command(
    data: str = typer.Argument(..., help="a saved SFT dataset directory (round*/sft_data)"),
    out: str = typer.Option(..., "--out", "-o", help="where to save the adapter"),
    model: str = typer.Option("embedded", "--model", "-m", help="model spec: embedded or hf:PATH"),
    epochs: float = typer.Option(1.0, "--epochs"),
    lr: Optional[float] = typer.Option(None, "--lr"),
    full: bool = typer.Option(False, "--full", help="full fine-tuning instead of LoRA"),
) -> None:
    """Fine-tune on a saved dataset of pre-tokenised samples."""
    from agentkit.models import load_model
    from agentkit.training.data import load_samples
    from agentkit.training.sft import SFTRunConfig, train_sft

    base = load_model(model, dtype="float32")
    result = train_sft(base.model.train(), base.tokenizer, load_samples(data),
                       SFTRunConfig(output_dir=out, epochs=epochs, learning_rate=lr, full=full))
    typer.echo(f"saved {result.output_dir} ({result.steps} steps, "
               f"loss {result.first_loss:.3f} -> {result.last_loss:.3f})")


@train_app.command("ship")
def ship_command(
    run: str = typer.Argument(..., help="a finished loop run directory (the --out of agentkit train loop)"),
    out: str = typer.Option(..., "--out", "-o", help="where to write the shippable adapter directory"),
    force: bool = typer.Option(False, "--force", help="ship even if the adapter did not beat the base model"),
) -> None:
    """Package a loop run's adapter (bf16 weights, added token rows, model card) to load as MODEL,adapter=DIR."""
    from agentkit.training.ship import ship_adapter

    shipped = ship_adapter(run, out, force=force)
    typer.echo(f"wrote {shipped.path} ({shipped.bytes / 1e6:.1f} MB): success {100 * shipped.before.success:.1f}% -> "
               f"{100 * shipped.after.success:.1f}%, tool-call validity {100 * shipped.before.validity:.1f}% -> "
               f"{100 * shipped.after.validity:.1f}%")


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
