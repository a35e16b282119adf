"""How far the engine's decode step is from the memory-read floor of this CPU, same process, same run.

A decode step reads every weight once (the embedded model in bf16: ~270 MB) and every row's cached keys and
values once per layer; at ``--rows`` rows that is memory-bound on a 2-core CPU, not compute-bound. This script
fills an :class:`Engine` with ``--rows`` GSM8K chat prompts, times up to ``--steps`` decode steps (until the
first row finishes: every timed step is a full batch), and prints the best next to the floor: (weight bytes +
the cache bytes that step read) / the read bandwidth measured here by summing a 512 MiB bf16 tensor.
``--profile`` first splits ten steps of a separate fill by torch.profiler (linears, attention, the rest).

It answers the planning question the serving targets raise: how much a faster kernel can still give before
only fewer bytes (quantized weights or cache) can.

    .venv/bin/python bench/decode_floor.py [--rows 32] [--steps 30] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, package_versions, table  # noqa: E402
from serving import DEFAULT_DATA, chat_ids, questions  # noqa: E402


def read_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Bytes per second that summing a tensor far larger than the caches reads, best of ``repeats``."""
    import torch

    big = torch.ones(mib * 2**20 // 2, dtype=torch.bfloat16)
    big.sum()
    best = min(_seconds(big.sum) for _ in range(repeats))
    return big.numel() * big.element_size() / best


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fill(engine, prompts: list[list[int]], steps: int) -> list:
    """Every prompt running in ``engine`` after one prefill and a few warm-up decode steps: their handles."""
    from agentkit.models.serving import SamplingParams

    handles = [engine.submit(ids, SamplingParams(max_tokens=steps + 20)) for ids in prompts]
    for _ in range(4):
        engine.step()
    return handles


def drain(engine, handles: list) -> None:
    """Cancel ``handles`` and let the engine drop them."""
    for handle in handles:
        handle.cancel()
    engine.step()


def weight_bytes(model) -> int:
    """Bytes of weight one decode step reads: every linear (packed or not) and norm; of an embedding table
    only the rows looked up, so none (an output layer tied to it is a linear and counted)."""
    import torch

    from agentkit.models.cpu_inference import PackedLinear

    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        tensors = [*module.parameters(recurse=False), *([module.packed] if isinstance(module, PackedLinear) else [])]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total


def profile_split(engine, steps: int) -> dict[str, float]:
    """Milliseconds per step in linears, attention and everything else (torch.profiler self CPU time).

    Decode attention is whatever runs inside the chosen ``DECODE_KERNELS`` entry (SDPA, or batched matmuls
    and a softmax), so each entry is wrapped in a labelled range for the profiled steps only."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from agentkit.models import cpu_inference

    def labelled(kernel):
        def run(*args):
            with torch.profiler.record_function("decode_attention"):
                return kernel(*args)
        return run

    kernels = dict(cpu_inference.DECODE_KERNELS)
    cpu_inference.DECODE_KERNELS.update({name: labelled(kernel) for name, kernel in kernels.items()})
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                engine.step()
    finally:
        cpu_inference.DECODE_KERNELS.update(kernels)
    split = {"linears": 0.0, "attention": 0.0, "rest": 0.0}
    for event in prof.events():
        names, parent = [event.name], event.cpu_parent
        while parent is not None:
            names.append(parent.name)
            parent = parent.cpu_parent
        kind = ("attention" if any("attention" in name for name in names) else
                "linears" if "linear" in event.name or event.name in ("aten::addmm", "aten::mm") else "rest")
        split[kind] += event.self_cpu_time_total / 1e3 / steps
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.rows < 1 or args.steps < 1:
        parser.error("--rows and --steps must be at least 1")

    import torch

    from agentkit.models.serving import Engine, EngineConfig, EngineModel

    engine = Engine.from_spec("embedded", EngineConfig(max_batch_size=args.rows))
    print({**machine_info(), **package_versions("torch", "transformers"), "threads": torch.get_num_threads(),
           "dtype": str(engine.model.dtype)})
    render = EngineModel(engine).render
    prompts = [chat_ids(render, engine.encode, q) for q in questions(DEFAULT_DATA, args.rows)]
    split = None
    if args.profile:
        handles = fill(engine, prompts, args.steps)
        split = profile_split(engine, 10)
        drain(engine, handles)
    handles = fill(engine, prompts, args.steps)
    steps: list[float] = []
    read: list[tuple[int, float]] = []  # (cache bytes, share of left padding) of the batch each timed step read
    for _ in range(args.steps):
        mask = engine._mask  # [rows, positions]: 0 where a row is left-padded to the batch's width
        cache = sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in engine._cache.layers)
        took = _seconds(engine.step)
        if engine.num_running < args.rows:  # a row finished: that step also copied the cache; stop here
            break
        steps.append(took)
        read.append((cache, 1 - mask.float().mean().item()))
    drain(engine, handles)
    if not steps:
        sys.exit("a row finished at the first timed step (its answer ended): try fewer --rows")
    weights = weight_bytes(engine.model)
    cache, padding = read[steps.index(min(steps))]
    bandwidth = read_bandwidth()
    floor = (weights + cache) / bandwidth
    best, median = min(steps), statistics.median(steps)
    lines = [
        ["weights read per step", f"{weights / 1e6:.0f} MB"],
        ["keys + values read (best step)", f"{cache / 1e6:.0f} MB ({padding:.0%} of positions left padding)"],
        ["read bandwidth (sum of 512 MiB)", f"{bandwidth / 1e9:.1f} GB/s"],
        ["memory-read floor (best step)", f"{floor * 1e3:.1f} ms"],
        ["decode step, best / median", f"{best * 1e3:.1f} / {median * 1e3:.1f} ms ({len(steps)} full steps)"],
        ["best step / floor", f"{best / floor:.2f}x"],
        ["tok/s at best step / at floor", f"{args.rows / best:.0f} / {args.rows / floor:.0f}"],
    ]
    for kind, ms in (split or {}).items():
        lines.append([f"profiled: {kind}", f"{ms:.1f} ms per step"])
    print(table([f"decode at {args.rows} rows", "value"], lines, markdown=True))


if __name__ == "__main__":
    main()
