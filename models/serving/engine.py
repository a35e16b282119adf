"""A continuous-batching engine on one transformers model, driven by the thread that calls it.

Requests are submitted from any thread (``submit`` → :class:`RequestHandle`) into a bounded queue.
The model loop (:meth:`Engine.step`, or :meth:`Engine.run_forever` around it) runs on the thread that
calls it, normally the main thread: on the CPUs we serve from, matmuls run 1.5-2.4x slower in a
background thread, so the HTTP server does its I/O in a thread and leaves this loop on the main one.

Each step: requests waiting in the queue join (their prompts are prefilled together as one
left-padded batch), every running request decodes one token (one forward pass over the whole batch
with its ``DynamicCache``), then the joiners' cache rows are appended to the running batch and
finished requests' rows are dropped. The batch stays left-padded: a 2-D attention mask hides the
padding and each row carries its own position ids (its count of real tokens), so every request sees
exactly the attention it would see alone. In fp32 the greedy output equals one-at-a-time
``generate``; in bf16 the last bits depend on the batch shape, as with any batched bf16 kernel.

Text is detokenized incrementally (a window from the last stable offset, so a multi-byte character
split across tokens is never emitted half-made), stop strings are matched on the decoded text with
special tokens kept (``<|im_end|>``, ``<|action_end|>``), and a streamed delta never ends inside what
could still become a stop string.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from agentkit.errors import AgentkitError, ConfigError
from agentkit.llm import Completion, CompletionModel, GenerationConfig, MessageChunk
from agentkit.messages import Message
from agentkit.models import is_local_spec
from agentkit.models.cpu_inference import pack_linears, use_decode_attention
from agentkit.models.fused_decode import FusedDecoder
from agentkit.models.hf import (DTYPES, _find_stop, _held_back, bf16_is_fast, cache_argument, last_position,
                                prompt_ids)
from agentkit.models.serving.metrics import EngineMetrics
from agentkit.models.serving.prefix_cache import CachedPrefix, PrefixCache
from agentkit.protocols.base import Protocol
from agentkit.toolspec import ToolSpec

__all__ = [
    "Engine",
    "EngineClosed",
    "EngineConfig",
    "EngineModel",
    "QueueFull",
    "RequestHandle",
    "SamplingParams",
    "SlackLayer",
    "greedy_tokens",
    "new_cache",
    "resolve_dtype",
]


_log = logging.getLogger(__name__)


class QueueFull(AgentkitError):
    """The waiting queue holds ``max_queue`` requests: retry later (the server answers 503)."""


class EngineClosed(AgentkitError):
    """The engine was shut down; it takes no new requests and pending ones end with this error."""


class SlackLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are views into buffers with room at the end.

    ``DynamicLayer.update`` concatenates, copying the whole cache at every decode step: that was 24% of a
    32-row step of the embedded model here. This layer writes the new position in place and reallocates
    (with ``slack`` spare positions) only when the room runs out or something else has replaced ``keys`` /
    ``values``. A join (:meth:`merged`) builds the new buffers directly, with room, so the batch's cache is
    copied once per join instead of two or three times (pad, concatenate, then reserve room at the next step).
    A leave (:meth:`keep_rows`) moves the last rows into the holes in place: one row's copy per row that left,
    where gathering the rows that stay into a new room cost 6-7 ms a leave at 32 rows here."""

    def __init__(self, slack: int = 32):
        super().__init__()
        self.slack = slack
        self._key_room: torch.Tensor | None = None
        self._value_room: torch.Tensor | None = None
        self._start = 0  # keys == room[:, :, start:start + length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:  # a prefill: keep what was computed, room comes with the first decode
            self.device, self.is_initialized = key_states.device, True
            self.keys, self.values = key_states, value_states
            return self.keys, self.values
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if not self._has_room(length + new):
            self._reserve(length, self._capacity(length + new))
        assert self._key_room is not None and self._value_room is not None
        begin, end = self._start + length, self._start + length + new
        self._key_room[:, :, begin:end] = key_states
        self._value_room[:, :, begin:end] = value_states
        self.keys = self._key_room[:, :, self._start:end]
        self.values = self._value_room[:, :, self._start:end]
        return self.keys, self.values

    def _capacity(self, needed: int) -> int:
        return needed + max(self.slack, needed // 8)

    def _has_room(self, needed: int) -> bool:
        room = self._key_room
        return (room is not None and room.shape[0] == self.keys.shape[0] and room.shape[-2] - self._start >= needed
                and room[:, :, self._start:].data_ptr() == self.keys.data_ptr()
                and self.keys.stride() == room.stride())

    def _reserve(self, length: int, capacity: int) -> None:
        batch, heads, _, dim = self.keys.shape
        self._key_room = self.keys.new_empty((batch, heads, capacity, dim))
        self._value_room = self.values.new_empty((batch, heads, capacity, self.values.shape[-1]))
        self._key_room[:, :, :length] = self.keys
        self._value_room[:, :, :length] = self.values
        self._start = 0

    def keep_rows(self, index: torch.Tensor, first: int = 0) -> None:
        """Keep the batch rows in ``index`` and drop the first ``first`` positions (padding in every kept row).

        An ``index`` from :func:`fill_holes_order` (rows that stay put, then rows moved down into the holes
        left below) is applied in place: only the moved rows are copied and the room keeps its storage.
        Any other order is gathered into a new room, in one copy that keeps the spare room."""
        length = self.keys.shape[-2]
        if self._has_room(length):
            assert self._key_room is not None and self._value_room is not None
            moved = _moved_rows(index)
            if moved is not None:
                kept = len(index)
                for room in (self._key_room, self._value_room):
                    if moved[0].numel():
                        room.index_copy_(0, moved[0], room.index_select(0, moved[1]))
                self._key_room, self._value_room = self._key_room[:kept], self._value_room[:kept]
            else:
                self._key_room = self._key_room.index_select(0, index)
                self._value_room = self._value_room.index_select(0, index)
            self._start += first
            self.keys = self._key_room[:, :, self._start:self._start + length - first]
            self.values = self._value_room[:, :, self._start:self._start + length - first]
        else:
            self.keys = self.keys.index_select(0, index)[:, :, first:]
            self.values = self.values.index_select(0, index)[:, :, first:]

    @classmethod
    def merged(cls, layers: Sequence[SlackLayer], width: int) -> SlackLayer:
        """One layer holding every layer's rows in order, each left-padded with zeros to ``width`` positions
        (zeros, not garbage: masked-out positions still meet the values in attention), with spare room."""
        first = layers[0]
        merged = cls(first.slack)
        merged.device, merged.is_initialized = first.keys.device, True
        rows = sum(layer.keys.shape[0] for layer in layers)
        _, heads, _, dim = first.keys.shape
        capacity = merged._capacity(width + 1)
        merged._key_room = first.keys.new_empty((rows, heads, capacity, dim))
        merged._value_room = first.values.new_empty((rows, heads, capacity, first.values.shape[-1]))
        row = 0
        for layer in layers:
            count, length = layer.keys.shape[0], layer.keys.shape[-2]
            for room, part in ((merged._key_room, layer.keys), (merged._value_room, layer.values)):
                room[row:row + count, :, :width - length].zero_()
                room[row:row + count, :, width - length:width] = part
            row += count
        merged.keys, merged.values = merged._key_room[:, :, :width], merged._value_room[:, :, :width]
        return merged


def fill_holes_order(keep: Sequence[int]) -> list[int]:
    """The order to keep rows ``keep`` (ascending) in with the fewest moves: a row already among the first
    ``len(keep)`` stays where it is, and the rows beyond move down into the holes, last first.

    Retiring one row of 32 then copies one row's cache per layer instead of the 31 that stay."""
    kept = len(keep)
    staying = {i for i in keep if i < kept}
    movers = [i for i in keep if i >= kept]
    return [i if i in staying else movers.pop() for i in range(kept)]


def _moved_rows(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(destinations, sources)`` when ``index`` only moves rows from beyond ``len(index)`` into lower slots
    (safe to apply in place); None for any other order."""
    kept = len(index)
    slots = torch.arange(kept, device=index.device)
    moved = index != slots
    sources = index[moved]
    if bool((sources < kept).any()):
        return None
    return slots[moved], sources


def new_cache(config: Any) -> DynamicCache:
    """A ``DynamicCache`` for ``config`` whose full-attention layers are :class:`SlackLayer`."""
    cache = DynamicCache(config=config)
    cache.layers = [SlackLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def resolve_dtype(dtype: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``auto`` is bf16 where it is faster (:func:`~agentkit.models.hf.bf16_is_fast`), else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    name = dtype.lower()
    if name != "auto":
        try:
            return DTYPES[name]
        except KeyError:
            names = ", ".join(k for k in DTYPES if k != "auto")
            raise ConfigError(f"unknown dtype {dtype!r}: use auto, {names}") from None
    return torch.bfloat16 if bf16_is_fast(device) else torch.float32


@dataclass
class EngineConfig:
    """How the engine batches. ``max_prefill_tokens`` bounds one step's prefill (prompt tokens) so a burst
    of long prompts cannot stall the running requests for long; at least one request joins per step.
    Joiners are prefilled in groups of similar length (at most ``prefill_group_rows`` prompts, the longest at
    most ``prefill_group_spread`` times the shortest), so little compute goes to padding: 32 GSM8K prompts
    prefilled 1.6x faster in length-sorted groups of 8 than as one left-padded batch.
    ``threads`` (torch's, process-wide) applies when :meth:`Engine.from_spec` loads the model.
    ``cpu_fast_paths`` packs the model's linear layers for oneDNN and routes decode attention to the
    kernel measured fastest here (:mod:`agentkit.models.cpu_inference`) when it runs on CPU, and runs the
    decode steps and prefills of Llama-family models through :class:`~agentkit.models.fused_decode.FusedDecoder`: the
    engine then owns the model, which can no longer be trained or saved.
    ``prefix_cache_tokens`` bounds the prefix cache (:mod:`~agentkit.models.serving.prefix_cache`; 0 turns it
    off): prompt beginnings shared in whole blocks of ``prefix_block`` tokens are prefilled once and reused.
    ``join_window_s``: when a request wakes an idle :meth:`Engine.run_forever`, it waits while more keep
    arriving (each within this of the last, at most eight windows in all) so a burst is prefilled together,
    not its first request alone and the rest a step later (a dynamic batcher's queue delay; 0 turns it off)."""

    max_batch_size: int = 32
    max_queue: int = 1024  # a waiting request holds only its prompt ids: size it for the expected concurrency
    dtype: str = "auto"
    max_new_tokens: int = 512
    max_prefill_tokens: int = 4096
    prefill_group_rows: int = 8
    prefill_group_spread: float = 1.25
    device: str = "cpu"
    threads: int | None = None
    cpu_fast_paths: bool = True
    prefix_cache_tokens: int = 4096
    prefix_block: int = 8
    join_window_s: float = 0.01

    def __post_init__(self) -> None:
        if self.prefill_group_spread < 1:
            raise ConfigError(f"prefill_group_spread must be at least 1, got {self.prefill_group_spread}")
        for name in ("max_batch_size", "max_new_tokens", "max_prefill_tokens", "prefill_group_rows", "prefix_block"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.join_window_s < 0:
            raise ConfigError(f"join_window_s must be 0 or more, got {self.join_window_s}")
        for name in ("max_queue", "prefix_cache_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}")


@dataclass
class SamplingParams:
    """Per-request settings. ``temperature == 0`` is greedy; ``max_tokens=None`` takes the engine's default."""

    max_tokens: int | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be 0 or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        self.stop = [s for s in self.stop if s]

    @classmethod
    def from_config(cls, config: GenerationConfig) -> SamplingParams:
        return cls(max_tokens=config.max_new_tokens, temperature=config.temperature, top_p=config.top_p,
                   stop=list(config.stop), seed=config.seed)


class RequestHandle:
    """One submitted request, shared by the engine thread (which writes) and any readers.

    Iterate it (``for delta in handle`` or ``async for``) for text deltas as they are decoded;
    ``result()`` / ``await aresult()`` give the final :class:`~agentkit.llm.Completion`, whose
    ``meta`` holds ``finish_reason`` (``stop``, ``length`` or ``cancelled``), ``ttft_s`` and ``request_id``.
    """

    def __init__(self, request_id: str, prompt_tokens: int):
        self.id = request_id
        self.prompt_tokens = prompt_tokens
        self._cond = threading.Condition()
        self._deltas: list[str] = []
        self._completion: Completion | None = None
        self._error: BaseException | None = None
        self._closed = False
        self._cancelled = False
        self._wakers: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    # -- engine side --------------------------------------------------------------------------------
    def _push(self, delta: str | None = None, *, completion: Completion | None = None,
              error: BaseException | None = None) -> None:
        with self._cond:
            if self._closed:
                return
            if delta:
                self._deltas.append(delta)
            if completion is not None or error is not None:
                self._completion, self._error, self._closed = completion, error, True
            self._cond.notify_all()
            wakers = list(self._wakers)
        for loop, event in wakers:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that event loop has closed: nobody is waiting there
                pass

    # -- reader side --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._closed

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Ask the engine to drop this request at its next step (a client went away); no-op once done."""
        if not self._closed:
            self._cancelled = True

    def _read(self, start: int) -> tuple[list[str], bool]:
        with self._cond:
            return self._deltas[start:], self._closed

    def poll(self, start: int = 0) -> list[str]:
        """The deltas from index ``start`` on, without waiting."""
        return self._read(start)[0]

    def __iter__(self) -> Iterator[str]:
        seen = 0
        while True:
            with self._cond:
                while seen >= len(self._deltas) and not self._closed:
                    self._cond.wait()
                new, closed = self._deltas[seen:], self._closed
            seen += len(new)
            yield from new
            if closed:
                break
        if self._error is not None:
            raise self._error

    def __aiter__(self) -> AsyncIterator[str]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[str]:
        event = asyncio.Event()
        waker = (asyncio.get_running_loop(), event)
        with self._cond:
            self._wakers.append(waker)
        try:
            seen = 0
            while True:
                new, closed = self._read(seen)
                seen += len(new)
                for delta in new:
                    yield delta
                if closed:
                    break
                await event.wait()
                event.clear()
        finally:
            with self._cond:
                self._wakers.remove(waker)
        if self._error is not None:
            raise self._error

    def result(self, timeout: float | None = None) -> Completion:
        """Block until the request finishes; raises its error, or ``TimeoutError``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed, timeout):
                raise TimeoutError(f"request {self.id} did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        assert self._completion is not None
        return self._completion

    async def aresult(self) -> Completion:
        async for _ in self:
            pass
        return self.result()


class _Request:
    """Engine-side state of one request (touched only by the thread running the loop)."""

    def __init__(self, handle: RequestHandle, prompt_ids: list[int], params: SamplingParams, max_tokens: int):
        self.handle = handle
        self.prompt_ids = prompt_ids
        self.params = params
        self.max_tokens = max_tokens
        self.generator: torch.Generator | None = None
        if params.temperature > 0:
            self.generator = torch.Generator()
            if params.seed is not None:
                self.generator.manual_seed(params.seed)
            else:
                self.generator.seed()
        self.out_ids: list[int] = []  # decoded tokens (an end-of-sequence token is counted, not kept)
        self.generated = 0
        self.text = ""
        self.window_start = 0  # incremental detokenization: the window decoded each step starts here
        self.stable_end = 0  # ... and its text up to here was already added to ``text``
        self.emitted = 0
        self.finish: str | None = None
        self.submitted = time.perf_counter()
        self.first_token_at: float | None = None
        self.cached_tokens = 0  # prompt tokens whose keys and values came from the prefix cache
        self.max_stop = max((len(s) for s in params.stop), default=0)


class Engine:
    """Continuous batching over ``model`` (a transformers causal LM with full attention).

    The engine owns ``model``: it is cast to ``config.dtype`` (``auto``: see :func:`resolve_dtype`), put on
    ``config.device`` and, on CPU, packed for inference (``config.cpu_fast_paths``), all in place. Call
    :meth:`run_forever` on the thread that should own the model (the main thread, for speed), or :meth:`step`
    from your own loop; :meth:`submit` is safe from any thread.
    """

    def __init__(self, model: Any, tokenizer: Any, config: EngineConfig | None = None, *,
                 protocol: Protocol | None = None, model_name: str = "engine"):
        self.config = config or EngineConfig()
        dtype = resolve_dtype(self.config.dtype, self.config.device)
        self.model = model.eval()
        if model.dtype != dtype or model.device != torch.device(self.config.device):
            self.model.to(device=self.config.device, dtype=dtype)
        #: Runs decode steps and prefills where it can (built before packing: it fuses the q/k/v weights).
        self.decoder: FusedDecoder | None = None
        if self.config.cpu_fast_paths and self.model.device.type == "cpu":
            self.decoder = FusedDecoder.build(self.model, rows_hint=self.config.max_batch_size)
            pack_linears(self.model, rows_hint=self.config.max_batch_size)
            use_decode_attention(self.model)
        self.tokenizer = tokenizer
        #: The protocol the checkpoint was loaded with (``from_spec``); :class:`EngineModel` uses it by default.
        self.protocol = protocol
        self.model_name = model_name
        self.device = self.model.device
        self._check_cache_layers()
        self._cache_kw = cache_argument(self.model)
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids: frozenset[int] = frozenset(eos_ids)
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else min(eos_ids) if eos_ids else 0
        self.max_context: int | None = getattr(model.config, "max_position_embeddings", None)
        self.prefix_cache: PrefixCache | None = (
            PrefixCache(self.config.prefix_cache_tokens, self.config.prefix_block)
            if self.config.prefix_cache_tokens else None)

        self._lock = threading.Lock()  # guards the waiting queue and the closed flag
        self._waiting: deque[_Request] = deque()
        self._wakeup = threading.Event()
        self._closed = False
        self._step_lock = threading.Lock()  # one thread steps at a time
        self._driver: int | None = None  # the thread in run_forever
        self._ids = itertools.count(1)

        # the running batch: row i of every tensor and of the cache belongs to self._rows[i]
        self._rows: list[_Request] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None  # [rows, cached + 1] 1 for real tokens, 0 for left padding
        self._positions: torch.Tensor | None = None  # [rows] position id of the next token fed
        self._last: torch.Tensor | None = None  # [rows] the token fed at the next step

        self.metrics = EngineMetrics(running=lambda: len(self._rows), queued=lambda: len(self._waiting))

    @classmethod
    def from_spec(cls, spec: str, config: EngineConfig | None = None, *,
                  protocol: Protocol | str | None = None) -> Engine:
        """``embedded`` or ``hf:PATH`` (a checkpoint directory or a ``.gguf`` file), with ``,adapter=DIR`` if
        trained, loaded in ``config.dtype``."""
        config = config or EngineConfig()
        dtype = resolve_dtype(config.dtype, config.device)
        if not is_local_spec(spec):
            raise ConfigError(f"the engine serves 'embedded', 'embedded-base' or 'hf:PATH' models, not {spec!r}")
        from agentkit.models import load_model

        loaded = load_model(spec, dtype=dtype, protocol=protocol, device=config.device, threads=config.threads)
        return cls(loaded.model, loaded.tokenizer, config, protocol=loaded.protocol, model_name=loaded.model_name)

    def _check_cache_layers(self) -> None:
        layers = DynamicCache(config=self.model.config).layers
        if any(type(layer) is not DynamicLayer for layer in layers):
            kinds = sorted({type(layer).__name__ for layer in layers})
            raise ConfigError(f"the engine batches full-attention models only; this one has cache layers {kinds}")

    # -- submitting (any thread) -----------------------------------------------------------------------
    def encode(self, prompt: str) -> list[int]:
        """Token ids of a prompt, by the same rule as :meth:`HFModel.encode <agentkit.models.hf.HFModel.encode>`
        (:func:`~agentkit.models.hf.prompt_ids`)."""
        return prompt_ids(self.tokenizer, prompt)

    def submit(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> RequestHandle:
        """Queue a request. Raises :class:`QueueFull`, :class:`EngineClosed`, or ``ValueError`` for a bad prompt."""
        params = params or SamplingParams()
        ids = self.encode(prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        if not ids:
            raise ValueError("the prompt is empty: it must have at least one token")
        max_tokens = params.max_tokens or self.config.max_new_tokens
        if self.max_context:
            room = self.max_context - len(ids)
            if room < 1:
                raise ValueError(f"the prompt has {len(ids)} tokens but the model reads at most "
                                 f"{self.max_context}: shorten it")
            max_tokens = min(max_tokens, room)
        with self._lock:
            if self._closed:
                raise EngineClosed("the engine is shut down")
            if len(self._waiting) >= self.config.max_queue:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting (max_queue="
                                f"{self.config.max_queue}): retry shortly")
            handle = RequestHandle(f"req-{next(self._ids)}", len(ids))
            self._waiting.append(_Request(handle, ids, params, max_tokens))
        self._wakeup.set()
        return handle

    @property
    def num_running(self) -> int:
        return len(self._rows)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def has_work(self) -> bool:
        return bool(self._rows or self._waiting)

    @property
    def driven_elsewhere(self) -> bool:
        """Whether another thread is in :meth:`run_forever` (then callers wait instead of stepping)."""
        return self._driver is not None and self._driver != threading.get_ident()

    # -- the loop (the owning thread) ------------------------------------------------------------------
    def run_forever(self, idle_wait_s: float = 0.5) -> None:
        """Step until :meth:`shutdown`; sleep while there is nothing to do (``submit`` wakes it)."""
        if self._driver is not None:
            raise RuntimeError("the engine is already running in another thread")
        self._driver = threading.get_ident()
        try:
            while not self._closed:
                try:
                    busy = self.step()
                except Exception:  # noqa: BLE001 - the step's requests got the error; the others are served on
                    _log.exception("engine step failed")
                    continue
                if not busy:
                    if self._wakeup.wait(idle_wait_s):
                        self._wakeup.clear()
                        self._gather_arrivals()
        finally:
            self._driver = None
            self._fail_all(EngineClosed("the engine stopped"))

    def _gather_arrivals(self) -> None:
        """Wait while requests keep arriving at an idle engine (see ``EngineConfig.join_window_s``)."""
        window = self.config.join_window_s
        deadline = time.monotonic() + 8 * window  # 32 requests parsed by the HTTP thread took 40-60 ms here
        while window and not self._closed and self.num_waiting < self.config.max_batch_size:
            left = deadline - time.monotonic()
            if left <= 0 or not self._wakeup.wait(min(window, left)):
                return
            self._wakeup.clear()

    def shutdown(self) -> None:
        """Stop :meth:`run_forever` (from any thread); requests still pending end with :class:`EngineClosed`."""
        with self._lock:
            self._closed = True
        self._wakeup.set()
        if self._driver is None:
            self._fail_all(EngineClosed("the engine is shut down"))

    def _fail_all(self, error: BaseException) -> None:
        with self._step_lock:
            with self._lock:
                pending = list(self._waiting) + self._rows
                self._waiting.clear()
            self._reset_batch()
        for req in pending:
            req.handle._push(error=error)

    def step(self) -> bool:
        """One step: admit joiners, decode one token for every running request, retire finished ones.

        Returns whether there was anything to do. If the model raises, the requests of this step
        fail with that error, the batch is cleared, and the error propagates."""
        with self._step_lock, torch.inference_mode():
            self._drop_cancelled()
            joiners = self._admit()
            if not self._rows and not joiners:
                return False
            try:
                if self._rows:
                    tokens = self._sample(self._rows, self._decode())
                    self._last = torch.tensor(tokens, device=self.device)
                    self._accept_all(self._rows, tokens)
                if joiners:
                    parts = []
                    for group in self._prefill_groups(joiners):
                        cache, mask, positions, logits = self._prefill(group)
                        tokens = self._sample(group, logits)
                        self._accept_all(group, tokens)
                        last = torch.tensor(tokens, device=self.device)
                        parts.append(_Prefilled(group, cache, mask, positions, last))
                    self._merge(parts)
                self._retire()
            except Exception as exc:
                failed = [r for r in dict.fromkeys([*self._rows, *joiners]) if r.finish is None]
                self._reset_batch()
                for req in failed:
                    req.finish = "error"
                    self.metrics.requests.inc(finish_reason="error")
                    req.handle._push(error=exc)
                raise
            self.metrics.steps.inc()
            return True

    def generate(self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None, *,
                 wait_when_full: bool = True) -> list[Completion]:
        """Submit every prompt and return their completions in order.

        Steps the engine on this thread unless another thread runs :meth:`run_forever`, in which case
        it waits. A full queue is waited out (``wait_when_full``) or raised as :class:`QueueFull`."""
        handles: list[RequestHandle] = []
        try:
            for prompt in prompts:
                handles.append(self.submit_patiently(prompt, params, wait_when_full=wait_when_full))
        except BaseException:
            for handle in handles:  # nobody will read them
                handle.cancel()
            raise
        return [self.wait(h) for h in handles]

    def submit_patiently(self, prompt: str | Sequence[int], params: SamplingParams | None = None, *,
                         wait_when_full: bool = True) -> RequestHandle:
        """:meth:`submit`, stepping (or, when driven elsewhere, sleeping) while the queue is full."""
        while True:
            try:
                return self.submit(prompt, params)
            except QueueFull:
                if not wait_when_full:
                    raise
                if self.driven_elsewhere or not self.step():
                    time.sleep(0.01)

    def wait(self, handle: RequestHandle) -> Completion:
        """Drive (or wait for) the engine until ``handle`` is done."""
        while not handle.done:
            if self.driven_elsewhere:
                return handle.result()
            self.step()
        return handle.result()

    def stream(self, handle: RequestHandle) -> Iterator[str]:
        """``handle``'s deltas, stepping the engine on this thread when nobody else drives it."""
        seen = 0
        while not handle.done and not self.driven_elsewhere:
            self.step()
            new = handle.poll(seen)
            seen += len(new)
            yield from new
        for i, delta in enumerate(handle):
            if i >= seen:
                yield delta

    async def astream(self, handle: RequestHandle) -> AsyncIterator[str]:
        """Async :meth:`stream`: awaits the driving thread, or steps here yielding to the loop between steps."""
        seen = 0
        while not handle.done and not self.driven_elsewhere:
            self.step()
            new = handle.poll(seen)
            seen += len(new)
            for delta in new:
                yield delta
            await asyncio.sleep(0)
        i = 0
        async for delta in handle:
            if i >= seen:
                yield delta
            i += 1

    # -- step internals ----------------------------------------------------------------------------------
    def _drop_cancelled(self) -> None:
        with self._lock:
            gone = [r for r in self._waiting if r.handle.cancelled]
            for req in gone:
                self._waiting.remove(req)
        for req in gone:
            self._finish(req, "cancelled")
        for req in self._rows:
            if req.handle.cancelled and req.finish is None:
                self._finish(req, "cancelled")
        self._retire()

    def _admit(self) -> list[_Request]:
        joiners: list[_Request] = []
        tokens = 0
        with self._lock:
            while self._waiting and len(self._rows) + len(joiners) < self.config.max_batch_size:
                candidate = self._waiting[0]
                if joiners and tokens + len(candidate.prompt_ids) > self.config.max_prefill_tokens:
                    break
                joiners.append(self._waiting.popleft())
                tokens += len(candidate.prompt_ids)
        return joiners

    def _prefill_groups(self, joiners: list[_Request]) -> list[list[_Request]]:
        """The joiners sorted by prompt length and cut into groups of similar length (see :class:`EngineConfig`)."""
        groups: list[list[_Request]] = []
        for req in sorted(joiners, key=lambda r: len(r.prompt_ids)):
            group = groups[-1] if groups else None
            if (group is None or len(group) >= self.config.prefill_group_rows
                    or len(req.prompt_ids) > self.config.prefill_group_spread * len(group[0].prompt_ids)):
                groups.append([req])
            else:
                group.append(req)
        return groups

    def _decode(self) -> torch.Tensor:
        """One token for every running request: logits ``[rows, vocab]``."""
        assert self._mask is not None and self._positions is not None and self._last is not None
        rows = len(self._rows)
        self._mask = torch.cat([self._mask, self._mask.new_ones((rows, 1))], dim=1)
        if self.decoder is not None:
            logits = self.decoder(self._last, self._positions, self._mask, self._cache)
        else:
            logits = self.model(input_ids=self._last[:, None], attention_mask=self._mask,
                                position_ids=self._positions[:, None], use_cache=True,
                                **{self._cache_kw: self._cache}).logits[:, -1]
        self._positions = self._positions + 1
        return logits

    def _prefill(self, joiners: list[_Request]) -> tuple[DynamicCache, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prefill the joiners' prompts as one batch: their cache, mask, positions and last logits.

        A prefix they share from the prefix cache comes first in every row, then each prompt's remainder,
        left-padded: ``[prefix | padding | rest]``, with the padding masked out."""
        prefix = self._shared_prefix(joiners)
        start = prefix.tokens if prefix is not None else 0
        rests = [req.prompt_ids[start:] for req in joiners]
        width = max(len(rest) for rest in rests)
        ids = torch.full((len(joiners), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(joiners), start + width), dtype=torch.long)
        mask[:, :start] = 1
        for row, (req, rest) in enumerate(zip(joiners, rests)):
            ids[row, width - len(rest):] = torch.tensor(rest, dtype=torch.long)
            mask[row, start + width - len(rest):] = 1
            req.cached_tokens = start
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, start:]
        ids, mask, positions = ids.to(self.device), mask.to(self.device), positions.to(self.device)
        cache = new_cache(self.model.config)
        if prefix is not None:  # a fresh SlackLayer keeps what it is given: the rows share the prefix's storage
            for layer, (keys, values) in zip(cache.layers, prefix.layers):
                layer.update(keys.expand(len(joiners), -1, -1, -1), values.expand(len(joiners), -1, -1, -1))
        if self.decoder is not None:
            logits = self.decoder.prefill(ids, mask, positions, cache)
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                logits_to_keep=last_position(width, self.device),
                                **{self._cache_kw: cache}).logits[:, -1]
        lengths = [len(req.prompt_ids) for req in joiners]
        self.metrics.prompt_tokens.inc(sum(lengths))
        self.metrics.cached_prompt_tokens.inc(start * len(joiners))
        return cache, mask, torch.tensor(lengths, device=self.device), logits

    def _shared_prefix(self, group: list[_Request]) -> CachedPrefix | None:
        """The longest whole-block prefix every prompt of ``group`` shares, from the prefix cache (computed and
        stored first when the cache holds only a shorter one). Every prompt keeps at least one token to prefill."""
        if self.prefix_cache is None:
            return None
        first = group[0].prompt_ids
        shared = min(len(req.prompt_ids) for req in group) - 1
        for req in group[1:]:
            shared = next((i for i, (a, b) in enumerate(zip(first[:shared], req.prompt_ids)) if a != b), shared)
        keys = self.prefix_cache.block_keys(first, shared)
        if not keys:
            return None
        hit = self.prefix_cache.longest(first, keys)
        target = len(keys) * self.prefix_cache.block
        if hit is not None and hit.tokens == target:
            return hit
        entry = self._compute_prefix(first[:target], hit)
        self.prefix_cache.put(keys[-1], entry)
        return entry

    def _compute_prefix(self, ids: list[int], base: CachedPrefix | None) -> CachedPrefix:
        """Keys and values of ``ids`` (one row), continuing from ``base``, a shorter cached prefix of them."""
        cache = DynamicCache(config=self.model.config)
        start = 0
        if base is not None:
            start = base.tokens
            for layer, (keys, values) in zip(cache.layers, base.layers):
                layer.update(keys, values)
        self.model(input_ids=torch.tensor([ids[start:]], dtype=torch.long, device=self.device),
                   position_ids=torch.arange(start, len(ids), device=self.device)[None], use_cache=True,
                   logits_to_keep=last_position(len(ids) - start, self.device), **{self._cache_kw: cache})
        return CachedPrefix(tuple(ids), [(layer.keys, layer.values) for layer in cache.layers])

    def _merge(self, parts: list[_Prefilled]) -> None:
        """Append the prefilled requests still running to the batch: every part's cache, and the batch's own,
        left-padded to one width and concatenated once per layer."""
        kept: list[_Prefilled] = []
        for part in parts:
            keep = [i for i, r in enumerate(part.requests) if r.finish is None]
            if len(keep) < len(part.requests) and keep:
                index = torch.tensor(keep, device=self.device)
                part.cache.batch_select_indices(index)
                part.mask, part.positions = part.mask.index_select(0, index), part.positions.index_select(0, index)
                part.last, part.requests = part.last.index_select(0, index), [part.requests[i] for i in keep]
            if keep:
                kept.append(part)
        if not kept:
            return
        if self._rows:
            assert self._cache is not None and self._mask is not None and self._positions is not None
            assert self._last is not None
            kept.insert(0, _Prefilled(self._rows, self._cache, self._mask, self._positions, self._last))
        self._rows = [req for part in kept for req in part.requests]
        if len(kept) == 1:
            self._cache, self._mask, self._positions, self._last = (kept[0].cache, kept[0].mask, kept[0].positions,
                                                                    kept[0].last)
            return
        width = max(part.mask.shape[1] for part in kept)
        cache = kept[0].cache
        cache.layers = [SlackLayer.merged([part.cache.layers[index] for part in kept], width)
                        for index in range(len(cache.layers))]
        self._cache = cache
        self._mask = torch.cat([_left_pad(part.mask, width) for part in kept])
        self._positions = torch.cat([part.positions for part in kept])
        self._last = torch.cat([part.last for part in kept])

    def _retire(self) -> None:
        """Drop finished rows from the batch, and padding columns no remaining row needs."""
        keep = [i for i, r in enumerate(self._rows) if r.finish is None]
        if len(keep) == len(self._rows):
            return
        if not keep:
            self._reset_batch()
            return
        assert self._cache is not None and self._mask is not None
        index = torch.tensor(fill_holes_order(keep), device=self.device)
        mask = self._mask.index_select(0, index)
        used = mask.any(dim=0)
        first = int(used.int().argmax())  # leading columns that are padding in every remaining row
        mask = mask[:, first:]
        for layer in self._cache.layers:  # SlackLayers: every batch cache comes from new_cache or merged
            layer.keep_rows(index, first)
        self._mask = mask
        self._positions = self._positions.index_select(0, index)
        self._last = self._last.index_select(0, index)
        self._rows = [self._rows[i] for i in index.tolist()]

    def _reset_batch(self) -> None:
        self._rows, self._cache, self._mask, self._positions, self._last = [], None, None, None, None

    # -- tokens → text ------------------------------------------------------------------------------------
    def _accept_all(self, reqs: list[_Request], tokens: list[int]) -> None:
        now = time.perf_counter()
        for req, token in zip(reqs, tokens):
            self._accept(req, token, now)

    def _sample(self, reqs: list[_Request], logits: torch.Tensor) -> list[int]:
        """Greedy rows take the argmax; sampling rows draw with temperature and top-p, each from its own generator.

        One uniform number per sampling row is drawn from the request's generator and mapped through
        the row's cumulative distribution, so a seeded request samples the same tokens whatever else
        is in the batch."""
        tokens = greedy_tokens(logits)
        rows = [i for i, r in enumerate(reqs) if r.params.temperature > 0]
        if not rows:
            return tokens
        index = torch.tensor(rows, device=logits.device)
        temps = torch.tensor([reqs[i].params.temperature for i in rows], device=logits.device)[:, None]
        probs = (logits.index_select(0, index).float() / temps).softmax(dim=-1)
        top_p = torch.tensor([reqs[i].params.top_p for i in rows], device=logits.device)[:, None]
        if bool((top_p < 1).any()):
            probs, order = probs.sort(dim=-1, descending=True)
            before = probs.cumsum(dim=-1) - probs  # mass of the more likely tokens
            probs = probs.masked_fill(before >= top_p, 0.0)
        else:
            order = None
        cumulative = probs.cumsum(dim=-1)
        draws = torch.stack([torch.rand((), generator=reqs[i].generator) for i in rows]).to(logits.device)
        targets = (draws * cumulative[:, -1])[:, None]
        picks = torch.searchsorted(cumulative, targets, right=True).clamp(max=probs.shape[-1] - 1)
        if order is not None:
            picks = order.gather(1, picks)
        for i, token in zip(rows, picks[:, 0].tolist()):
            tokens[i] = token
        return tokens

    def _decode_text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _accept(self, req: _Request, token: int, now: float) -> None:
        """Add one generated token: extend the text, check stops and limits, stream what is safe."""
        req.generated += 1
        self.metrics.generated_tokens.inc()
        if req.first_token_at is None:
            req.first_token_at = now
            self.metrics.ttft.observe(now - req.submitted)
        if token in self.eos_ids:
            self._flush_text(req)
            self._finish(req, "stop")
            return
        req.out_ids.append(token)
        before = len(req.text)
        self._extend_text(req)
        stops = req.params.stop
        if stops and len(req.text) > before:
            start = max(0, before - req.max_stop + 1)
            cut = _find_stop(req.text[start:], stops)
            if cut is not None:
                req.text = req.text[:start + cut]
                self._finish(req, "stop")
                return
        if req.generated >= req.max_tokens:
            self._flush_text(req)
            self._finish(req, "length")
            return
        safe = len(req.text) - _held_back(req.text, stops)
        if safe > req.emitted:
            req.handle._push(req.text[req.emitted:safe])
            req.emitted = safe

    def _extend_text(self, req: _Request) -> None:
        """Incremental detokenization: decode a short window and add only what is new and complete."""
        settled = self._decode_text(req.out_ids[req.window_start:req.stable_end])
        current = self._decode_text(req.out_ids[req.window_start:])
        if len(current) > len(settled) and not current.endswith("\ufffd"):
            req.text += current[len(settled):]
            req.window_start, req.stable_end = req.stable_end, len(req.out_ids)

    def _flush_text(self, req: _Request) -> None:
        """At the end, take whatever the window still holds (an incomplete character decodes as U+FFFD)."""
        if req.stable_end < len(req.out_ids):
            settled = self._decode_text(req.out_ids[req.window_start:req.stable_end])
            current = self._decode_text(req.out_ids[req.window_start:])
            req.text += current[len(settled):]
            req.stable_end = len(req.out_ids)
            cut = _find_stop(req.text, req.params.stop)
            if cut is not None:
                req.text = req.text[:cut]

    def _finish(self, req: _Request, reason: str) -> None:
        req.finish = reason
        now = time.perf_counter()
        if len(req.text) > req.emitted:
            req.handle._push(req.text[req.emitted:])
            req.emitted = len(req.text)
        ttft = (req.first_token_at - req.submitted) if req.first_token_at is not None else None
        if req.first_token_at is not None and req.generated > 1:
            self.metrics.tpot.observe((now - req.first_token_at) / (req.generated - 1))
        self.metrics.latency.observe(now - req.submitted)
        self.metrics.requests.inc(finish_reason=reason)
        req.handle._push(completion=Completion(
            text=req.text,
            prompt_tokens=len(req.prompt_ids),
            completion_tokens=req.generated,
            latency_s=now - req.submitted,
            meta={"finish_reason": reason, "ttft_s": ttft, "request_id": req.handle.id,
                  "cached_prompt_tokens": req.cached_tokens},
        ))


@dataclass
class _Prefilled:
    """Requests prefilled together (or the running batch): their cache, mask, positions, and the token each
    feeds next."""

    requests: list[_Request]
    cache: DynamicCache
    mask: torch.Tensor
    positions: torch.Tensor
    last: torch.Tensor


def greedy_tokens(logits: torch.Tensor) -> list[int]:
    """The argmax of each row of ``logits`` ``[rows, vocab]``, compared in fp32 as ``generate`` does.

    On CPU numpy's argmax is used: torch's scans a 49k-token row with a scalar loop (1.9 ms against 0.26 ms
    for 32 rows of the embedded model's vocabulary here). Ties go to the first index in both."""
    scores = logits.float()
    if scores.device.type == "cpu":
        return np.argmax(scores.numpy(), axis=-1).tolist()
    return scores.argmax(dim=-1).tolist()


def _left_pad(mask: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-pad a ``[rows, columns]`` mask on the left up to ``width`` columns."""
    missing = width - mask.shape[-1]
    return F.pad(mask, (missing, 0)) if missing else mask


class EngineModel(CompletionModel):
    """A :class:`~agentkit.llm.CompletionModel` on an :class:`Engine`, for in-process use.

    Calls from several threads share the engine's batches. When no thread runs
    :meth:`Engine.run_forever`, the calling thread steps the engine itself (``agenerate`` /
    ``astream`` step on the event-loop thread, yielding to the loop between steps). A full queue is
    waited out unless ``wait_when_full=False`` (the server's choice: it answers 503 instead); then
    ``astream`` and ``astream_complete`` submit when called, so :class:`QueueFull` is raised by the
    call itself, before anything is streamed.
    """

    def __init__(self, engine: Engine, protocol: Protocol | None = None, *, model_name: str | None = None,
                 wait_when_full: bool = True):
        super().__init__(protocol or engine.protocol)
        self.engine = engine
        self.model_name = model_name or engine.model_name
        self.wait_when_full = wait_when_full

    def complete(self, prompts: list[str], config: GenerationConfig) -> list[Completion]:
        return self.engine.generate(prompts, SamplingParams.from_config(config), wait_when_full=self.wait_when_full)

    def stream_complete(self, prompt: str, config: GenerationConfig) -> Iterator[str | Completion]:
        handle = self.engine.submit_patiently(prompt, SamplingParams.from_config(config),
                                              wait_when_full=self.wait_when_full)
        try:
            yield from self.engine.stream(handle)
        finally:
            handle.cancel()  # a no-op once done; frees the row when the caller stopped early
        yield handle.result()

    def astream_complete(self, prompt: str, config: GenerationConfig) -> AsyncIterator[str | Completion]:
        """Text deltas, then the :class:`~agentkit.llm.Completion`."""
        params = SamplingParams.from_config(config)
        handle = None if self.wait_when_full else self.engine.submit(prompt, params)
        return self._follow(prompt, params, handle)

    async def _follow(self, prompt: str, params: SamplingParams,
                      handle: RequestHandle | None) -> AsyncIterator[str | Completion]:
        while handle is None:
            try:
                handle = self.engine.submit(prompt, params)
            except QueueFull:
                if self.engine.driven_elsewhere or not self.engine.step():
                    await asyncio.sleep(0.01)
                else:
                    await asyncio.sleep(0)
        try:
            async with contextlib.aclosing(self.engine.astream(handle)) as deltas:  # type: ignore[type-var]
                async for delta in deltas:
                    yield delta
        finally:
            handle.cancel()
        yield handle.result()

    async def acomplete(self, prompt: str, config: GenerationConfig) -> Completion:
        final: Completion | None = None
        async for piece in self.astream_complete(prompt, config):
            if isinstance(piece, Completion):
                final = piece
        assert final is not None  # the stream always ends with the completion
        return final

    def _to_message(self, completion: Completion) -> Message:
        message = super()._to_message(completion)
        message.meta["finish_reason"] = completion.meta.get("finish_reason", "stop")
        message.meta["cached_prompt_tokens"] = completion.meta.get("cached_prompt_tokens", 0)
        return message

    def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]:
        return self._chunks(self.astream_complete(self.render(messages, tools), self._config(config)))

    async def _chunks(self, pieces: AsyncIterator[str | Completion]) -> AsyncIterator[MessageChunk]:
        async with contextlib.aclosing(pieces):  # type: ignore[type-var]
            async for piece in pieces:
                if isinstance(piece, Completion):
                    yield MessageChunk(message=self._to_message(piece))
                elif piece:
                    yield MessageChunk(delta=piece)

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        completion = await self.acomplete(self.render(messages, tools), self._config(config))
        return self._to_message(completion)

    def __repr__(self) -> str:
        return f"EngineModel({self.model_name!r})"
