"""Run a model over T-Eval files and score its replies.

Completion models (the embedded model, ``hf:``, scripted) get prompts in batches through ``model.batch``: one
padded ``generate`` per chunk, with prompts of similar length chunked together to waste less padding. Chat
models (``openai:``) get concurrent ``generate`` calls from a thread pool. A chunk that raises leaves its
replies empty (scored as unparsed) and is counted in the report, so one bad request does not lose a long run;
user errors (``ConfigError``: a wrong spec, a script too short) stop the run instead.
Replies and per-sample scores go to ``<out>/predictions/<kind>.jsonl``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from agentkit.errors import AgentkitError, ConfigError
from agentkit.evals.teval.data import DIMENSIONS, KINDS, TEvalSample, find_files, load_samples, to_messages
from agentkit.evals.teval.embedder import Embedder, load_embedder
from agentkit.evals.teval.scoring import file_metrics, score_samples
from agentkit.llm import ChatModel, CompletionModel, GenerationConfig
from agentkit.messages import Message
from agentkit.trajectory import atomic_write_text

__all__ = ["KindResult", "TEvalConfig", "generate_replies", "reply_text", "run_teval"]

Progress = Callable[[str, int, int], None]


class TEvalConfig(BaseModel):
    data: str
    model: str = "embedded"
    dims: list[str] = Field(default_factory=lambda: list(DIMENSIONS))
    limit: int | None = Field(None, ge=1)
    out: str = "runs/teval"
    batch_size: int = Field(8, ge=1)
    concurrency: int = Field(4, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    embedder: str = "auto"
    dtype: str | None = None  # for local models (embedded, hf:): float32, bfloat16, ...

    @field_validator("dims")
    @classmethod
    def _known(cls, dims: list[str]) -> list[str]:
        unknown = [d for d in dims if d not in DIMENSIONS]
        if unknown or not dims:
            raise ValueError(f"unknown dimension(s) {unknown}: use a comma-separated subset of {', '.join(DIMENSIONS)}")
        return dims


@dataclass
class KindResult:
    kind: str
    samples: list[TEvalSample]
    replies: list[str]
    per_sample: list[dict[str, Any]]
    metrics: dict[str, float]
    errors: list[str] = field(default_factory=list)


def reply_text(message: Message) -> str:
    """What the model wrote: raw completion text when the backend kept it, else the content (and calls)."""
    raw = message.meta.get("raw")
    if isinstance(raw, str):
        return raw
    text = message.text
    if message.tool_calls and not text.strip():
        text = json.dumps([{"name": c.name, "args": c.arguments} for c in message.tool_calls], ensure_ascii=False)
    return text


def generate_replies(model: ChatModel, samples: Sequence[TEvalSample], *, batch_size: int = 8,
                     concurrency: int = 4, max_new_tokens: int = 512,
                     on_progress: Callable[[int], None] | None = None) -> tuple[list[str], list[str]]:
    """Replies in sample order and the errors of chunks that raised (their replies are empty)."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, temperature=0.0)
    conversations = [to_messages(s.prompt) for s in samples]
    replies = [""] * len(samples)
    errors: list[str] = []
    if isinstance(model, CompletionModel):
        order = sorted(range(len(samples)), key=lambda i: sum(len(m.text) for m in conversations[i]))
        chunks = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

        def run_chunk(chunk: list[int]) -> list[Message]:
            return model.batch([conversations[i] for i in chunk], config=config)

        workers = 1  # one padded batch at a time: the model already uses every core
    else:
        chunks = [[i] for i in range(len(samples))]

        def run_chunk(chunk: list[int]) -> list[Message]:
            return [model.generate(conversations[chunk[0]], config=config)]

        workers = concurrency
    done = 0

    def record(chunk: list[int], outcome: list[Message] | BaseException) -> None:
        nonlocal done
        if isinstance(outcome, BaseException):
            errors.append(f"{', '.join(samples[i].id for i in chunk)}: {type(outcome).__name__}: {outcome}")
        else:
            for i, message in zip(chunk, outcome):
                replies[i] = reply_text(message)
        done += len(chunk)
        if on_progress:
            on_progress(done)

    def guarded(chunk: list[int]) -> list[Message] | BaseException:
        try:
            return run_chunk(chunk)
        except AgentkitError:  # a wrong spec, script or option: every chunk would fail the same way
            raise
        except Exception as exc:  # noqa: BLE001 - recorded per chunk, the run goes on
            return exc

    if workers == 1:
        for chunk in chunks:  # on the calling thread: torch is slower in worker threads here
            record(chunk, guarded(chunk))
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for chunk, outcome in zip(chunks, pool.map(guarded, chunks)):
                record(chunk, outcome)
    return replies, errors


def _write_predictions(path: Path, result: KindResult) -> None:
    lines = [json.dumps({"id": s.id, "prediction": r, "scores": m, "ground_truth": s.ground_truth},
                        ensure_ascii=False, default=str)
             for s, r, m in zip(result.samples, result.replies, result.per_sample)]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def run_kinds(config: TEvalConfig, model: ChatModel | None = None, embedder: Embedder | None = None,
              on_progress: Progress | None = None) -> tuple[list[KindResult], Embedder, str]:
    """Generate and score every file kind that feeds ``config.dims``; returns results, embedder, model name."""
    files = find_files(config.data, tuple(config.dims))
    loaded = {kind: load_samples(path, kind, config.limit) for kind, path in files.items()}
    embedder = embedder or load_embedder(config.embedder)
    if model is None:
        from agentkit.models import is_local_spec, load_model

        local = is_local_spec(config.model)
        if config.dtype and not local:
            raise ConfigError(f"--dtype applies to local models (embedded, hf:PATH), not {config.model!r}")
        model = load_model(config.model, **({"dtype": config.dtype} if config.dtype else {}))
    model_name = getattr(model, "model_name", config.model)
    results = []
    for kind in KINDS:  # a fixed order, so runs compare
        if kind not in loaded:
            continue
        samples = loaded[kind]
        replies, errors = generate_replies(
            model, samples, batch_size=config.batch_size, concurrency=config.concurrency,
            max_new_tokens=config.max_new_tokens,
            on_progress=(lambda n, k=kind, total=len(samples): on_progress(k, n, total)) if on_progress else None)
        per_sample = score_samples(kind, samples, replies, embedder)
        result = KindResult(kind, samples, replies, per_sample, file_metrics(kind, per_sample), errors)
        _write_predictions(Path(config.out) / "predictions" / f"{kind}.jsonl", result)
        results.append(result)
    return results, embedder, model_name


def run_teval(config: TEvalConfig, model: ChatModel | None = None, embedder: Embedder | None = None,
              on_progress: Progress | None = None):
    """Run, score and write ``report.md``, ``report.json`` and ``report.png`` in ``config.out``."""
    from agentkit.evals.teval.report import build_report, write_report

    started = time.perf_counter()
    try:
        Path(config.out).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output directory {config.out}: {exc}") from exc
    results, embedder, model_name = run_kinds(config, model, embedder, on_progress)
    report = build_report(results, model=model_name, embedder=embedder.name, config=config,
                          elapsed_s=time.perf_counter() - started)
    write_report(report, config.out)
    return report
