"""Decode attention on CPU: transformers' SDPA path vs the engine's ``decode_attention``, same tensors, same run.

One query token per row against a bf16 key/value cache shaped as the embedded model's (9 query heads over 3
key/value heads, head size 64), left-padded rows with SDPA's boolean mask, the cache a view into a buffer with
spare room as ``SlackLayer`` keeps it. The variants, called in turn, medians over ``--repeats`` rounds:

* ``transformers sdpa`` – ``sdpa_attention_forward``: with a mask it repeats every key/value head per query
  head (``repeat_kv``) on CPU before SDPA, the path the model takes without the engine.
* ``fp32 matmuls`` – two fp32 matmuls over the grouped heads (the engine's path until 2026-12-06).
* ``sdpa enable_gqa`` – SDPA's own grouped-query path, reading the grouped cache in place.
* ``sdpa grouped rows`` – one plain SDPA call with each key/value head's query heads as its query rows.
* ``bmm grouped rows`` – the same rows as two bf16 batched matmuls over a dense copy of the cache view
  around an fp32 softmax (transformers' eager numerics).
* ``native`` – the C kernel of ``agentkit.models.native_attention`` (built here on first use; where it cannot
  be, this line is the ``bmm`` kernel again and the header says so).
* ``decode_attention`` – the engine's path: whichever of these ``fastest_decode_kernel`` measured fastest
  here (printed first).

    .venv/bin/python bench/decode_attention.py [--rows 1 8 32] [--positions 64 180 512]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_info, package_versions, table  # noqa: E402

HEADS, KV_HEADS, DIM = 9, 3, 64


def fp32_matmuls(query, key, value, mask):
    batch, heads, _, dim = query.shape
    q = query.reshape(batch, key.shape[1], heads // key.shape[1], dim).float()
    scores = q @ key.float().transpose(-1, -2) * dim ** -0.5
    scores.masked_fill_(~mask, float("-inf"))
    return (scores.softmax(-1) @ value.float()).reshape(batch, 1, heads, dim).to(query.dtype)


def timed(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--positions", type=int, nargs="+", default=[64, 180, 512])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()

    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from agentkit.models.cpu_inference import (
        bmm_grouped_rows,
        decode_attention,
        fastest_decode_kernel,
        native_grouped_rows,
        sdpa_enable_gqa,
        sdpa_grouped_rows,
    )
    from agentkit.models.native_attention import native_available

    print({**machine_info(), **package_versions("torch", "transformers"), "threads": torch.get_num_threads(),
           "native kernel built": native_available(),
           "decode_attention chose": fastest_decode_kernel(HEADS, KV_HEADS, DIM, torch.bfloat16)})
    module = torch.nn.Module().eval()
    module.num_key_value_groups = HEADS // KV_HEADS
    rows_out = []
    with torch.inference_mode():
        for rows in args.rows:
            for positions in args.positions:
                torch.manual_seed(0)
                room = torch.randn(2, rows, KV_HEADS, positions + 32, DIM, dtype=torch.bfloat16)
                key, value = room[0, :, :, :positions], room[1, :, :, :positions]
                query = torch.randn(rows, HEADS, 1, DIM, dtype=torch.bfloat16)
                lengths = torch.randint(positions // 2, positions + 1, (rows,))
                mask = (torch.arange(positions) >= positions - lengths[:, None])[:, None, None, :]
                variants = {
                    "transformers sdpa": lambda: sdpa_attention_forward(module, query, key, value, mask),
                    "fp32 matmuls": lambda: fp32_matmuls(query, key, value, mask),
                    "sdpa enable_gqa": lambda: sdpa_enable_gqa(query, key, value, mask, None).transpose(1, 2),
                    "sdpa grouped rows": lambda: sdpa_grouped_rows(query, key, value, mask, None).transpose(1, 2),
                    "bmm grouped rows": lambda: bmm_grouped_rows(query, key, value, mask, None).transpose(1, 2),
                    "native": lambda: native_grouped_rows(query, key, value, mask, None).transpose(1, 2),
                    "decode_attention": lambda: decode_attention(module, query, key, value, mask),
                }
                want = variants["fp32 matmuls"]().float()
                for name, fn in variants.items():  # same answer first, then the clock
                    got = fn()
                    got = got[0] if isinstance(got, tuple) else got
                    assert (got.float() - want).abs().max() < 0.05, name
                times = {name: [] for name in variants}
                for _ in range(args.repeats):
                    for name, fn in variants.items():
                        fn()
                        times[name].append(timed(fn, args.calls))
                base = statistics.median(times["transformers sdpa"])
                for name in variants:
                    us = statistics.median(times[name])
                    rows_out.append([name, rows, positions, f"{us:.1f}", f"{base / us:.2f}x"])
    print(table(["variant", "rows", "positions", "us per layer", "vs transformers"], rows_out, markdown=True))


if __name__ == "__main__":
    main()
