"""Serving throughput and latency: our continuous-batching server vs transformers, same prompts, same run.

The embedded model (SmolLM2-135M) answers GSM8K questions rendered as chat, ``--max-new-tokens`` each, at
concurrency 1, 8 and 32 (``max(C, 8)`` requests, ``C`` in flight). Each line runs in a fresh process, in a fixed
order, because results here depend on what ran earlier in the same process (FACTS.md):

* ``sequential``   – HF ``generate``, one request at a time, fp32 (the no-batching baseline; run once).
* ``padded batch`` – HF ``generate`` on left-padded batches of ``C`` prompts (the best plain batch).
* ``generate_batch`` – transformers' own continuous batching, tuned as in FACTS.md.
* ``agentkit serve`` – our server over HTTP (streaming SSE, one client per request).
* ``padded batch, contiguous lm_head`` (``--fixed-padded``) – the padded batch inside ``contiguous_lm_head``:
  how much of our lead is transformers' prefill hitting pytorch/pytorch#151934, which the engine avoids.

This machine's speed drifts over minutes (the same line moved by 1.5x within an hour here), so ``--rounds N``
runs every variant N times in rounds against one server process and reports each variant's median round and
the median of the within-round ratios: a ratio then compares runs minutes apart, not a whole benchmark apart.

Batched lines share one dtype (``--batch-dtype``, default: bf16 where it measures faster, else fp32).

Prints output tok/s, req/s, TTFT and TPOT p50/p99 and the ratios at the highest concurrency; then a load run of
``--load`` concurrent requests through the official ``openai`` SDK (which retries a 503 after Retry-After) and
the server's peak resident memory. ``--chart PATH`` writes a PNG.

    .venv/bin/python bench/serving.py [--max-new-tokens 64] [--load 500] [--rounds 1] [--chart docs/img/serving.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, machine_info, package_versions, table  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"
FALLBACK_QUESTIONS = [
    "A baker makes 12 loaves an hour for 7 hours and sells 60. How many loaves are left?",
    "Tom has 3 boxes of 24 pencils and gives away 17. How many pencils does he keep?",
    "A train travels 180 km in 2 hours. How far does it go in 5 hours at the same speed?",
    "Sara reads 25 pages a day. How many days does she need for a 400-page book?",
]


# -- shared ---------------------------------------------------------------------------------------------

def questions(path: Path, n: int) -> list[str]:
    if path.is_file():
        with path.open() as f:
            rows = [json.loads(line)["question"] for _, line in zip(range(n), f)]
    else:
        rows = []
    while len(rows) < n:
        rows.append(FALLBACK_QUESTIONS[len(rows) % len(FALLBACK_QUESTIONS)])
    return rows


#: Per-request max_tokens of the ``--mixed`` workload (cycled): what a chat server sees, unlike one fixed length.
MIXED_LIMITS = (16, 128, 32, 96, 48, 64, 24, 112)


def token_limits(n: int, max_new: int, mixed: bool) -> list[int]:
    return [MIXED_LIMITS[i % len(MIXED_LIMITS)] if mixed else max_new for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(records: list[dict[str, float]], wall: float) -> dict[str, float]:
    tokens = sum(r["tokens"] for r in records)
    ttft = [r["ttft"] for r in records if r.get("ttft") is not None]
    tpot = [r["tpot"] for r in records if r.get("tpot") is not None]
    return {
        "requests": len(records), "tokens": tokens, "wall_s": wall, "tok_s": tokens / wall,
        "req_s": len(records) / wall,
        "ttft_p50": percentile(ttft, 0.5), "ttft_p99": percentile(ttft, 0.99),
        "tpot_p50": percentile(tpot, 0.5), "tpot_p99": percentile(tpot, 0.99),
    }


# -- child processes: one variant each ----------------------------------------------------------------------

def load_model(dtype: str):
    from agentkit.models.embedded import load_embedded

    loaded = load_embedded(dtype=dtype)
    return loaded.model, loaded.tokenizer


def chat_ids(render: Any, encode: Any, question: str) -> list[int]:
    """The token ids our server prefills for ``question`` sent as one user message: the model's own ``render``
    (its protocol, as the server renders chat) and ``encode`` (``HFModel.encode`` / ``Engine.encode``). Every
    line of the table reads these same tokens; HF's chat template would add SmolLM2's 21-token default system
    prompt to the baselines' prompts only."""
    from agentkit.messages import Message

    return encode(render([Message.user(question)]))


class _Clock:
    """A generate() streamer that records when each step's tokens arrive (the first put is the prompt)."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def run_hf(variant: str, prompts: list[list[int]], concurrency: int, limits: list[int], dtype: str) -> dict:
    """A padded row cannot stop at its own limit: the batch runs to its longest limit and a row's useful tokens
    end at its own (counted so, and its last token is timed at that step)."""
    import contextlib

    import torch

    from agentkit.models.hf import contiguous_lm_head

    model, tokenizer = load_model(dtype)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    batch = 1 if variant == "sequential" else concurrency

    def generate(chunk: list[list[int]], max_new: int):
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(chunk):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        clock = _Clock()
        fix = contiguous_lm_head(model) if variant == "padded-fixed" else contextlib.nullcontext()
        with torch.inference_mode(), fix:
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=pad, streamer=clock)
        return out[:, width:], clock.times

    generate(prompts[:batch], 8)  # warm-up
    records = []
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        sent = time.perf_counter()
        new, times = generate(prompts[i:i + batch], max(limits[i:i + batch]))
        for row, limit in zip(new.tolist(), limits[i:i + batch]):
            n = next((k + 1 for k, t in enumerate(row) if t == tokenizer.eos_token_id), len(row))
            n = min(n, limit)
            # a padded row keeps stepping after its EOS: its last token came at step n
            last = times[min(n, len(times) - 1)]
            records.append({"tokens": n, "ttft": times[1] - sent,
                            "tpot": (last - times[1]) / (n - 1) if n > 1 else None})
    return summary(records, time.perf_counter() - start)


def run_generate_batch(prompts: list[list[int]], concurrency: int, limits: list[int], dtype: str) -> dict:
    """One generation config per call: like the padded batch, rows run to the call's longest limit."""
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    model, tokenizer = load_model(dtype)
    config = GenerationConfig(max_new_tokens=max(limits), do_sample=False, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    cb = ContinuousBatchingConfig(num_blocks=64, max_batch_tokens=1024)

    def call(chunk):
        return model.generate_batch(chunk, generation_config=config, continuous_batching_config=cb,
                                    record_timestamps=True, warmup=False)

    call(prompts[:1])  # warm-up (allocates the cache)
    records = []
    start = time.perf_counter()
    for i in range(0, len(prompts), concurrency):
        sent = time.perf_counter()
        outputs = call(prompts[i:i + concurrency])
        for out, limit in zip(sorted(outputs.values(), key=lambda o: int(o.request_id.split("_")[-1])),
                              limits[i:i + concurrency]):
            n = min(len(out.generated_tokens), limit)
            stamps = (out.timestamps or [])[:n]
            records.append({"tokens": n, "ttft": stamps[0] - sent if stamps else None,
                            "tpot": (stamps[-1] - stamps[0]) / (n - 1) if n > 1 and stamps else None})
    return summary(records, time.perf_counter() - start)


def child(args: argparse.Namespace) -> None:
    from agentkit.models.embedded import load_embedded

    loaded = load_embedded()
    prompts = [chat_ids(loaded.render, loaded.encode, q) for q in questions(args.data, args.requests)]
    concurrency = args.concurrency[0]
    limits = token_limits(len(prompts), args.max_new_tokens, args.mixed)
    if args.child in ("sequential", "padded", "padded-fixed"):
        result = run_hf(args.child, prompts, concurrency, limits, args.dtype)
    else:
        result = run_generate_batch(prompts, concurrency, limits, args.dtype)
    print("RESULT " + json.dumps(result))


def run_child(variant: str, concurrency: int, requests: int, args: argparse.Namespace, dtype: str) -> dict:
    command = [sys.executable, __file__, "--child", variant, "--concurrency", str(concurrency),
               "--requests", str(requests), "--max-new-tokens", str(args.max_new_tokens), "--dtype", dtype,
               "--data", str(args.data)] + (["--mixed"] if args.mixed else [])
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{variant} at {concurrency} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


# -- our server --------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``agentkit serve`` in its own process; reads its peak resident memory from /proc."""

    def __init__(self, max_batch_size: int, dtype: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        agentkit = Path(sys.executable).with_name("agentkit")
        self.process = subprocess.Popen(
            [str(agentkit), "serve", "--model", "embedded", "--dtype", dtype, "--port", str(self.port),
             "--max-batch-size", str(max_batch_size)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def __enter__(self) -> Server:
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"agentkit serve exited:\n{self.process.stderr.read()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.3)
        raise SystemExit("agentkit serve did not become healthy within 120 s")

    def __exit__(self, *exc: Any) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def metric(self, name: str) -> dict[str, float]:
        import httpx

        values = {}
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(name):
                key, _, value = line.rpartition(" ")
                values[key] = float(value)
        return values


async def one_streamed(client, url: str, question: str, max_new: int) -> dict:
    body = {"model": "embedded", "messages": [{"role": "user", "content": question}], "max_tokens": max_new,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    first = last = None
    tokens = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
    return {"tokens": tokens, "ttft": first - sent if first else None,
            "tpot": (last - first) / (tokens - 1) if first and tokens > 1 else None}


async def drive(url: str, prompts: list[str], concurrency: int, limits: list[int]) -> dict:
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        await one_streamed(client, url, prompts[0], 4)  # warm-up

        async def limited(question: str, limit: int) -> dict:
            async with gate:
                return await one_streamed(client, url, question, limit)

        start = time.perf_counter()
        records = await asyncio.gather(*(limited(q, n) for q, n in zip(prompts, limits)))
        return summary(list(records), time.perf_counter() - start)


async def load_run(url: str, prompts: list[str], n: int, max_new: int) -> dict:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url + "/v1", api_key="none", max_retries=8, timeout=900)
    failures: list[str] = []

    async def one(i: int) -> int:
        try:
            reply = await client.chat.completions.create(
                model="embedded", messages=[{"role": "user", "content": prompts[i % len(prompts)]}],
                max_tokens=max_new, temperature=0)
            return reply.usage.completion_tokens
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            failures.append(f"{type(exc).__name__}: {exc}")
            return 0

    start = time.perf_counter()
    tokens = await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - start
    await client.close()
    return {"requests": n, "failed": len(failures), "first_failures": failures[:3], "wall_s": wall,
            "tok_s": sum(tokens) / wall}


# -- main ---------------------------------------------------------------------------------------------------

def chart(rows: list[tuple[str, int, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(dict.fromkeys(name for name, _, _ in rows))
    levels = sorted({c for _, c, _ in rows})
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(variants)
    for i, name in enumerate(variants):
        values = [next((r["tok_s"] for n, c, r in rows if n == name and c == level), 0) for level in levels]
        bars = ax.bar([x + i * width for x in range(len(levels))], values, width, label=name)
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([x + width * (len(variants) - 1) / 2 for x in range(len(levels))],
                  [f"concurrency {c}" for c in levels])
    ax.set_ylabel("output tokens / s")
    ax.set_title("SmolLM2-135M on 2 CPU cores: GSM8K chat prompts")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def one_round(server: Server, args: argparse.Namespace, batch_dtype: str, short: str) -> list[tuple[str, int, dict]]:
    """Every variant once, baselines then our server at each concurrency (the sequential line once per round)."""
    rows: list[tuple[str, int, dict]] = []
    sequential = None if args.server_only else run_child("sequential", 1, 8, args, "float32")
    for c in args.concurrency:
        n = max(c, 8)
        if sequential is not None:
            rows.append(("sequential fp32", c, sequential))
            rows.append((f"padded batch {short}", c, run_child("padded", c, n, args, batch_dtype)))
            rows.append((f"generate_batch {short}", c, run_child("generate_batch", c, n, args, batch_dtype)))
            if args.fixed_padded:
                rows.append((f"padded batch {short}, contiguous lm_head", c,
                             run_child("padded-fixed", c, n, args, batch_dtype)))
        prompts = questions(args.data, n)
        limits = token_limits(len(prompts), args.max_new_tokens, args.mixed)
        rows.append((f"agentkit serve {short}", c, asyncio.run(drive(server.url, prompts, c, limits))))
    return rows


def find(rows: list[tuple[str, int, dict]], name: str, concurrency: int) -> dict | None:
    return next((r for n, c, r in rows if n == name and c == concurrency), None)


def median_rows(rounds: list[list[tuple[str, int, dict]]]) -> list[tuple[str, int, dict]]:
    """Per variant and concurrency, the round whose tok/s is the median (the lower middle one for an even count)."""
    out = []
    for name, c, _ in rounds[0]:
        runs = sorted((r for run in rounds if (r := find(run, name, c))), key=lambda r: r["tok_s"])
        out.append((name, c, runs[(len(runs) - 1) // 2]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K jsonl (questions)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--load", type=int, default=500, help="requests in the load run (0 to skip)")
    parser.add_argument("--load-max-new-tokens", type=int, default=16)
    parser.add_argument("--mixed", action="store_true",
                        help=f"per-request max_tokens cycling through {MIXED_LIMITS} instead of --max-new-tokens")
    parser.add_argument("--server-only", action="store_true", help="skip the transformers baselines")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every variant this many times, in rounds; report each variant's median round and "
                             "the median of the within-round ratios (this machine's speed drifts over minutes)")
    parser.add_argument("--chart", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--fixed-padded", action="store_true",
                        help="add the padded batch with a contiguous lm_head input (see the docstring)")
    parser.add_argument("--child", choices=["sequential", "padded", "padded-fixed", "generate_batch"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument("--batch-dtype", default="auto",
                        help="dtype of every batched line (ours included): auto = bf16 where it measures faster, "
                             "else fp32")
    parser.add_argument("--dtype", default="float32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.child:
        child(args)
        return

    from agentkit.models.serving.engine import resolve_dtype

    batch_dtype = str(resolve_dtype(args.batch_dtype)).removeprefix("torch.")
    short = {"bfloat16": "bf16", "float32": "fp32"}.get(batch_dtype, batch_dtype)
    print(json.dumps({**machine_info(), **package_versions("torch", "transformers"), "batch_dtype": batch_dtype,
                      "mixed": args.mixed}))
    top = max(args.concurrency)
    rounds: list[list[tuple[str, int, dict]]] = []
    extra: dict[str, Any] = {}
    with Server(max_batch_size=top, dtype=batch_dtype) as server:
        for index in range(args.rounds):
            rounds.append(one_round(server, args, batch_dtype, short))
            print(f"  round {index + 1} of {args.rounds} done", file=sys.stderr)
        extra["peak_rss_mib_at_top"] = server.peak_rss_mib()
        if args.load:
            extra["load"] = asyncio.run(load_run(server.url, questions(args.data, 64), args.load,
                                                 args.load_max_new_tokens))
            extra["http_requests"] = server.metric("agentkit_http_requests_total")
        extra["peak_rss_mib_after_load"] = server.peak_rss_mib()
    rows = median_rows(rounds)

    headers = ["variant", "conc", "reqs", "tok/s", "req/s", "TTFT p50", "TTFT p99", "TPOT p50 ms", "TPOT p99 ms"]
    lines = [[name, c, r["requests"], fmt(r["tok_s"], 1), fmt(r["req_s"], 2), fmt(r["ttft_p50"]), fmt(r["ttft_p99"]),
              fmt(r["tpot_p50"] * 1000, 1), fmt(r["tpot_p99"] * 1000, 1)]
             for name, c, r in sorted(rows, key=lambda row: (row[1], row[0]))]
    print(table(headers, lines, markdown=True))
    for name in ("sequential fp32", f"padded batch {short}", f"generate_batch {short}",
                 f"padded batch {short}, contiguous lm_head"):
        ratios = [ours["tok_s"] / base["tok_s"] for ours, base in
                  ((find(run, f"agentkit serve {short}", top), find(run, name, top)) for run in rounds) if base]
        if ratios:
            each = ", ".join(f"{r:.2f}" for r in ratios)
            print(f"at concurrency {top}: agentkit serve / {name} = {statistics.median(ratios):.2f}x tok/s"
                  + (f" (rounds: {each})" if len(ratios) > 1 else ""))
    print(json.dumps(extra, indent=1))
    if args.chart:
        chart(rows, args.chart)
        print(f"chart: {args.chart}")
    if args.json:
        args.json.write_text(json.dumps({"rows": [[n, c, r] for n, c, r in rows],
                                         "rounds": [[[n, c, r] for n, c, r in run] for run in rounds], **extra},
                                        indent=1))


if __name__ == "__main__":
    main()
