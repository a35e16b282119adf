"""Teach the embedded model to call tools from its own trajectories, and measure it on held-out tasks.

One round: evaluate the model on held-out tool-use tasks, sample K runs per train task, keep the runs the
verifiers accept (plus reference solutions for tasks no run solved), fine-tune a LoRA adapter, evaluate again.

    .venv/bin/python examples/train_tool_use.py --out runs/tooluse            # SmolLM2-135M, ~tens of minutes on CPU
    .venv/bin/python examples/train_tool_use.py --out /tmp/smoke --tiny       # a tiny random model, seconds per stage
    .venv/bin/agentkit run "What is 347 times 29?" --agent internlm2 \\
        --model embedded,adapter=runs/tooluse/round1/adapter --tools calculator

Running it again with the same ``--out`` resumes after the last finished stage.
"""

from __future__ import annotations

import argparse
import tempfile

from agentkit.training.loop import LoopConfig, run_loop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run directory (reuse it to resume)")
    parser.add_argument("--samples", type=int, default=2, help="sampled runs per train task")
    parser.add_argument("--per-kind", type=int, default=30, help="generated tasks per kind (5 kinds)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random model: checks the plumbing only")
    args = parser.parse_args(argv)

    model = "embedded"
    small: dict = {}
    if args.tiny:
        from agentkit.training.tiny import save_tiny_model

        model = "hf:" + str(save_tiny_model(tempfile.mkdtemp(prefix="tiny-model-")))
        small = {"train_limit": 5, "eval_limit": 5, "max_new_tokens": 8, "epochs": 1, "lora_r": 4}
    config = LoopConfig(out=args.out, model=model, tasks="tooluse", task_options={"per_kind": args.per_kind},
                        samples=args.samples, rollout_dtype="auto" if args.tiny else "bf16", **small)
    result = run_loop(config)
    before, (name, after) = result.before, result.rounds[-1]
    print(f"task success {100 * before.success:.0f}% -> {100 * after.success:.0f}%, "
          f"tool-call validity {100 * before.validity:.0f}% -> {100 * after.validity:.0f}% ({name})")
    print(f"adapter: {result.adapter}\nreport: {result.report}")


if __name__ == "__main__":
    main()
