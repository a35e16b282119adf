"""Run the agent on many tasks at once so the model sees them as one batch.

Every run is a real agent (``create_agent("internlm2", ...)`` with its own tools), driven with
``arun`` on one event loop. The model they share is a :class:`BatchingModel`: each run's request
waits until every other live run has also asked (or the rest are busy in tools), and then all
pending prompts go through one ``CompletionModel.complete`` call — a single left-padded
``generate`` for HF models. The batch runs on the event-loop thread, which here is the main
thread (matmuls are much slower in worker threads on these CPUs).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from agentkit.budgets import Budget
from agentkit.errors import ConfigError
from agentkit.llm import BaseChatModel, CompletionModel, GenerationConfig
from agentkit.messages import Message
from agentkit.protocols.base import Protocol
from agentkit.protocols.internlm2 import InternLM2Protocol
from agentkit.toolspec import ToolSpec
from agentkit.training.tasks.base import Task, TaskSet
from agentkit.trajectory import TrajectoryRecord

__all__ = ["BatchingModel", "RunScore", "collect", "score_run"]


@dataclass
class _Request:
    model: CompletionModel
    prompt: str
    config: GenerationConfig
    future: asyncio.Future


class _Batcher:
    """Pending requests of all runs, flushed as one batch when no more can arrive soon."""

    def __init__(self, max_batch: int, settle_s: float):
        self.max_batch = max_batch
        self.settle_s = settle_s
        self.pending: list[_Request] = []
        self.active = 0
        self.flushing: asyncio.Task | None = None
        self.batches: list[int] = []

    def submit(self, request: _Request) -> None:
        self.pending.append(request)
        if self.flushing is None or self.flushing.done():
            self.flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self.pending:
            # let the other runs reach the model: all live runs are waiting, or none arrived for settle_s
            seen, quiet_since = -1, time.monotonic()
            while len(self.pending) < min(self.active, self.max_batch):
                await asyncio.sleep(0.002)
                if len(self.pending) != seen:
                    seen, quiet_since = len(self.pending), time.monotonic()
                elif time.monotonic() - quiet_since > self.settle_s:
                    break
            taken, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch:]
            self._run(taken)
            await asyncio.sleep(0)

    def _run(self, requests: list[_Request]) -> None:
        groups: dict[str, list[_Request]] = {}
        for request in requests:
            groups.setdefault(request.config.model_dump_json(), []).append(request)
        for group in groups.values():
            self.batches.append(len(group))
            try:
                completions = group[0].model.complete([r.prompt for r in group], group[0].config)
            except Exception as exc:  # every waiting run sees the backend's error
                for request in group:
                    if not request.future.done():
                        request.future.set_exception(exc)
                continue
            for request, completion in zip(group, completions):
                if not request.future.done():
                    request.future.set_result(request.model._to_message(completion))


class BatchingModel(BaseChatModel):
    """A :class:`CompletionModel` shared by concurrent async runs, which it serves in batches.

    Only the async path batches (``agenerate``); ``generate`` is a plain single call.
    """

    def __init__(self, inner: CompletionModel, *, max_batch: int = 32, settle_s: float = 0.05,
                 batcher: _Batcher | None = None):
        if not isinstance(inner, CompletionModel):
            raise ConfigError(f"batched collection needs a completion model (hf:, embedded), not {inner!r}")
        self.inner = inner
        self.model_name = inner.model_name
        self.batcher = batcher or _Batcher(max_batch, settle_s)

    def with_protocol(self, protocol: Protocol) -> BatchingModel:
        return BatchingModel(self.inner.with_protocol(protocol), batcher=self.batcher)

    def generate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                 config: GenerationConfig | None = None) -> Message:
        return self.inner.generate(messages, tools=tools, config=config)

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        future = asyncio.get_running_loop().create_future()
        self.batcher.submit(_Request(self.inner, self.inner.render(messages, tools), self.inner._config(config),
                                     future))
        return await future

    async def astream(self, messages, *, tools=None, config=None):  # token streaming is not batched
        from agentkit.llm import MessageChunk

        message = await self.agenerate(messages, tools=tools, config=config)
        yield MessageChunk(delta=message.text, message=message)


@dataclass
class RunScore:
    """What one finished run shows about tool use."""

    success: bool
    reason: str
    calls: int  # tool-call attempts, parse failures included
    invalid_calls: int  # attempts that did not parse, named no tool, or failed in the tool
    steps: int

    @property
    def valid_tool_use(self) -> bool:
        """At least one call, and every attempt parsed and ran."""
        return self.calls > 0 and self.invalid_calls == 0


def score_run(task: Task, answer: str, outcome: str, messages: Sequence[Message], steps: int) -> RunScore:
    attempts = [m for m in messages if m.role == "assistant" and (m.tool_calls or m.parse_error)]
    failed_results = [m for m in messages if m.role == "environment" and m.meta.get("error")]
    invalid = sum(1 for m in attempts if m.parse_error) + len(failed_results)
    if outcome != "answer":
        verdict_ok, reason = False, f"run ended with {outcome}"
    else:
        verdict = task.check(answer, messages)
        verdict_ok, reason = verdict.success, verdict.reason
    return RunScore(verdict_ok, reason, len(attempts), min(invalid, len(attempts)), steps)


@dataclass
class CollectOptions:
    """How runs are made: sampling, budgets and batch size."""

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    max_steps: int = 4
    max_batch: int = 32
    seed: int = 0
    protocol: Protocol = field(default_factory=InternLM2Protocol)


async def _collect(model: CompletionModel, task_set: TaskSet, tasks: Sequence[Task], options: CollectOptions,
                   on_done: Callable[[TrajectoryRecord], None]) -> list[TrajectoryRecord]:
    from agentkit.agents import create_agent

    batching = BatchingModel(model, max_batch=options.max_batch)
    generation = GenerationConfig(max_new_tokens=options.max_new_tokens, temperature=options.temperature,
                                  top_p=options.top_p)
    budget = Budget(max_steps=options.max_steps, max_tokens=options.max_steps * options.max_new_tokens,
                    max_parse_retries=1, max_seconds=3600)
    slots = asyncio.Semaphore(options.max_batch)
    records: list[TrajectoryRecord] = []

    async def one(task: Task, sample: int) -> None:
        async with slots:
            tools = task_set.make_tools()
            agent = create_agent("internlm2", batching, tools, protocol=options.protocol,
                                 system_prompt=task_set.system_prompt, budget=budget, generation=generation,
                                 checkpointer=None)
            batching.batcher.active += 1
            try:
                result = await agent.arun(task.question)
            finally:
                batching.batcher.active -= 1
                for tool in tools:
                    close = getattr(tool, "close", None)
                    if callable(close):
                        close()
            score = score_run(task, result.answer, result.outcome, result.messages, result.steps)
            messages = result.messages
            if task_set.system_prompt:
                messages = [Message.system(task_set.system_prompt), *messages]
            record = TrajectoryRecord(
                agent="internlm2", model=model.model_name, protocol=options.protocol.name,
                tools=[t.spec.model_dump() for t in tools], messages=messages, answer=result.answer,
                outcome=result.outcome, steps=result.steps, usage=result.usage,
                parse_errors=sum(1 for m in messages if m.role == "assistant" and m.parse_error),
                duration_s=result.duration_s,
                meta={"task_id": task.id, "kind": task.kind, "sample": sample, "success": score.success,
                      "reason": score.reason, "calls": score.calls, "invalid_calls": score.invalid_calls,
                      "needs_tool": task.needs_tool, "valid_tool_use": score.valid_tool_use},
            )
            records.append(record)
            on_done(record)

    await asyncio.gather(*(one(task, k) for task in tasks for k in range(options.samples)))
    return records


def collect(model: CompletionModel, task_set: TaskSet, tasks: Sequence[Task], options: CollectOptions | None = None,
            on_done: Callable[[TrajectoryRecord], None] = lambda record: None) -> list[TrajectoryRecord]:
    """Run ``options.samples`` agent runs per task, batched, and return one scored record per run.

    ``on_done`` is called as each run finishes (to append it to a file, advance a progress bar).
    """
    options = options or CollectOptions()
    if options.temperature > 0:
        import torch

        torch.manual_seed(options.seed)
    return asyncio.run(_collect(model, task_set, tasks, options, on_done))
