"""Completion backend on transformers: a local checkpoint directory or a ``.gguf`` file run in-process.

``complete`` runs one left-padded ``generate`` call per batch (batching is where CPU throughput comes
from: SmolLM2-135M fp32 does ~23 tok/s for one stream and ~100 tok/s for 8 rows here). ``stream_complete``
runs its own decode loop over ``model(...)`` with a ``DynamicCache`` on the caller's thread instead of
the usual ``generate`` in a background thread plus ``TextIteratorStreamer``: on the CPUs we run on,
matmuls run slower in a background thread once the main thread has used torch (bf16 decode
of SmolLM2-135M: 29 tok/s in a worker thread against 46 tok/s on the main thread). For the same reason
:meth:`HFModel.astream` and :meth:`HFModel.agenerate` run the loop on the event-loop thread, giving
control back to the loop after every piece of text.

Decoded text keeps special tokens the protocol needs (``<|action_start|>``, ``<|plugin|>`` ...) and
drops only the end-of-sequence token; stop strings and everything after them are cut off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.llm import Completion, CompletionModel, GenerationConfig, MessageChunk
from agentkit.messages import Message
from agentkit.protocols.base import Protocol
from agentkit.toolspec import ToolSpec

try:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DynamicCache,
        StoppingCriteria,
        StoppingCriteriaList,
    )
    from transformers import GenerationConfig as HFGenerationConfig
    from transformers.utils import logging as hf_logging
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigError(
        f"the hf backend needs torch and transformers ({exc.name or exc} is missing): "
        "run pip install 'agentkit[models]'"
    ) from exc

import agentkit.models.internlm2.modeling  # noqa: F401  InternLM2 checkpoints load with no remote code
from agentkit.models.lora import apply_adapter

__all__ = ["DTYPES", "HFModel", "bf16_is_fast", "cache_argument", "contiguous_lm_head", "last_position", "prompt_ids",
           "set_threads"]

#: Accepted ``dtype`` names. ``auto`` keeps the checkpoint's own dtype (fp32 for the embedded model).
DTYPES: dict[str, Any] = {
    "auto": "auto",
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@contextlib.contextmanager
def _quiet_progress() -> Iterator[None]:
    """Hide transformers' per-tensor "Loading weights" bar: a sub-second load should not paint the terminal."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def set_threads(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (process-wide); ``None`` means one per available core."""
    if threads is None:
        try:
            threads = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            threads = os.cpu_count() or 1
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def bf16_is_fast(device: str | Any = "cpu") -> bool:
    """Whether bf16 beats fp32 on ``device``: GPUs with bf16; on CPUs, AMX tiles or a measured matmul.

    CPU features alone do not tell: on an Intel Xeon with AVX512-BF16 but no AMX, bf16 matmuls of the embedded
    model were slower than fp32 (110 against 88 ms per 32-row step), while an AMD EPYC with the same flag ran
    them 3.4x faster. Without AMX, one decode-sized matmul is timed in both dtypes (~40 ms, once per process).
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if kind == "cpu":
        amx = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
        return bool(amx is not None and amx()) or _cpu_bf16_measured_faster()
    return False


@functools.cache
def _cpu_bf16_measured_faster(margin: float = 1.25) -> bool:
    """A [32, 576] x [576, 1536] matmul (one MLP projection of a 32-row decode step) in fp32 and in bf16:
    bf16 counts as faster when it wins by ``margin``, so timing noise does not flip the choice."""
    def best_of(dtype: Any) -> float:
        x, w = torch.ones(32, 576, dtype=dtype), torch.ones(1536, 576, dtype=dtype)
        times = []
        for _ in range(3):
            torch.nn.functional.linear(x, w)  # warm-up (oneDNN primitive creation)
            started = time.perf_counter()
            for _ in range(20):
                torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - started)
        return min(times)

    with torch.inference_mode():
        return best_of(torch.bfloat16) * margin < best_of(torch.float32)


def cache_argument(model: Any) -> str:
    """The forward keyword for a KV cache: transformers 5.x renamed ``past_key_values`` to ``cache``
    (the old name is removed in 5.40)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def last_position(width: int, device: Any = "cpu") -> torch.Tensor:
    """``logits_to_keep`` for a batch's last position: an index tensor, not ``1``.

    With ``1``, transformers slices ``hidden[:, -1:]``, a strided 3-D view. ``F.linear`` on it falls to ``bmm``
    with the output weight broadcast and copied once per row (pytorch/pytorch#151934): 350 ms against 3 ms for
    8 rows of the embedded model in bf16 here. Indexing with a tensor gathers a contiguous input instead."""
    return torch.tensor([width - 1], device=device)


@contextlib.contextmanager
def contiguous_lm_head(model: Any) -> Iterator[None]:
    """While inside, the output layer gets a contiguous input: ``generate`` passes ``logits_to_keep=1`` at
    prefill (see :func:`last_position`) and cannot be handed an index tensor."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        yield
        return
    handle = head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]))
    try:
        yield
    finally:
        handle.remove()


def _torch_dtype(dtype: str | Any) -> Any:
    if not isinstance(dtype, str):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise ConfigError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}") from None


def _resolve_source(path: str | os.PathLike[str], gguf_file: str | None) -> tuple[Path, str | None]:
    """The directory transformers loads from and the gguf file name inside it, if any."""
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise ConfigError(f"model path {str(p)!r} is a file but not a .gguf: "
                              "pass a checkpoint directory or a .gguf file")
        return p.parent, p.name
    if not p.exists():
        raise ConfigError(
            f"model directory {str(p)!r} does not exist: pass a transformers checkpoint directory "
            "(with config.json) or a .gguf file, e.g. hf:./my-model"
        )
    if gguf_file is not None:
        if not (p / gguf_file).is_file():
            raise ConfigError(f"gguf file {gguf_file!r} is not in {str(p)!r}: "
                              "pass the name of a .gguf file in that directory")
        return p, gguf_file
    if not (p / "config.json").is_file():
        ggufs = sorted(f.name for f in p.glob("*.gguf"))
        if len(ggufs) == 1:
            return p, ggufs[0]
        hint = (f"it holds several .gguf files ({', '.join(ggufs)}): pass gguf_file=" if ggufs
                else "it has no config.json")
        raise ConfigError(f"{str(p)!r} is not a transformers checkpoint: {hint}")
    return p, None


class _StopTracker(StoppingCriteria):
    """Per-row stopping for batched ``generate``: records when each row hits EOS or a stop string.

    Only a short tail of each row is decoded per step (enough tokens to hold the longest stop
    string), so the check stays cheap for long generations.
    """

    def __init__(self, decode, stops: Sequence[str], eos_ids: set[int], prompt_len: int, rows: int):
        self.decode = decode
        self.stops = [s for s in stops if s]
        self.eos_ids = eos_ids
        self.prompt_len = prompt_len
        self.window = max((len(s.encode("utf-8")) for s in self.stops), default=0) + 2
        #: number of generated tokens when each row ended (``None`` while it runs)
        self.ended_at: list[int | None] = [None] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_len
        last = input_ids[:, -1].tolist()
        for row, token in enumerate(last):
            if self.ended_at[row] is not None:
                continue
            if token in self.eos_ids:
                self.ended_at[row] = generated
            elif self.stops:
                start = input_ids.shape[1] - min(self.window, generated)
                tail = self.decode(input_ids[row, start:].tolist())
                if any(s in tail for s in self.stops):
                    self.ended_at[row] = generated
        return torch.tensor([e is not None for e in self.ended_at], dtype=torch.bool, device=input_ids.device)


def _find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest stop string in ``text``."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters must wait: a possible start of a stop string, or a broken UTF-8 tail."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    tail = len(text) - len(text.rstrip("\ufffd"))
    return max(hold, tail)


def prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a rendered prompt: a BOS is added only if the tokenizer adds one and the text lacks it
    (a chat template may already have written it). The engine and :class:`HFModel` encode with this one rule."""
    bos = tokenizer.bos_token
    return list(tokenizer(text, add_special_tokens=not (bos and text.startswith(bos)))["input_ids"])


class HFModel(CompletionModel):
    """A causal LM from transformers, driven as a completion model through the bound protocol."""

    def __init__(self, model: Any, tokenizer: Any, *, protocol: Protocol | str | None = None,
                 model_name: str = "hf"):
        if isinstance(protocol, str):
            from agentkit.protocols import get_protocol

            protocol = get_protocol(protocol)
        super().__init__(protocol)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.model_name = model_name
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids: set[int] = eos_ids
        pad = tokenizer.pad_token_id
        self.pad_id: int = pad if pad is not None else min(eos_ids) if eos_ids else 0
        self.max_context: int | None = getattr(model.config, "max_position_embeddings", None)
        # The checkpoint's sampling defaults (top_k, repetition_penalty ...) would silently change
        # results: agentkit's GenerationConfig is the only source of sampling settings.
        self.checkpoint_generation_config = model.generation_config
        model.generation_config = HFGenerationConfig(
            bos_token_id=model.generation_config.bos_token_id,
            eos_token_id=sorted(eos_ids) or None,
            pad_token_id=self.pad_id,
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], *, dtype: str | Any = "auto", device: str = "cpu",
                        gguf_file: str | None = None, protocol: Protocol | str | None = None,
                        threads: int | None = None, model_name: str | None = None,
                        adapter: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None
                        ) -> HFModel:
        """Load a checkpoint directory or a ``.gguf`` file (dequantized to ``dtype`` on load).

        ``adapter`` is a LoRA directory saved by ``agentkit.training`` (or any peft adapter), or several
        applied in order: each is merged into the weights and brings the protocol tokens it added.

        ``threads`` sets torch's thread count for the whole process (default: one per core).
        ``protocol`` is a :class:`Protocol` or a name from ``agentkit.protocols.PROTOCOLS``.
        """
        directory, gguf = _resolve_source(path, gguf_file)
        torch_dtype = _torch_dtype(dtype)
        set_threads(threads)
        try:
            with _quiet_progress():
                tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
                model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf, dtype=torch_dtype)
        except (OSError, ValueError, KeyError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"could not load a causal LM from {str(path)!r}: {detail}") from exc
        adapters = [] if adapter is None else [adapter] if isinstance(adapter, (str, os.PathLike)) else adapter
        for one in adapters:
            model, tokenizer = apply_adapter(model, tokenizer, one)
        if adapters and torch_dtype != "auto":
            model = model.to(torch_dtype)
        try:
            model.to(device)
        except (RuntimeError, AssertionError) as exc:
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot put the model on device {device!r}: {detail}; use device='cpu'") from exc
        return cls(model, tokenizer, protocol=protocol, model_name=model_name or f"hf:{path}")

    # -- helpers ---------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def encode(self, text: str) -> list[int]:
        """Token ids of a prompt (:func:`prompt_ids`); an empty prompt is an error."""
        ids = prompt_ids(self.tokenizer, text)
        if not ids:
            raise ConfigError("the prompt is empty: give the model at least one message with text")
        return ids

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: Sequence[int]) -> str:
        # special tokens stay (protocol markers); cleanup off so decoding is prefix-stable for streaming
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _final_text(self, ids: Sequence[int], stops: Sequence[str]) -> str:
        if ids and ids[-1] in self.eos_ids:
            ids = ids[:-1]
        text = self._decode(ids)
        cut = _find_stop(text, stops)
        return text if cut is None else text[:cut]

    def _check_length(self, n_prompt: int) -> None:
        if self.max_context and n_prompt >= self.max_context:
            raise ConfigError(
                f"the prompt has {n_prompt} tokens but {self.model_name} reads at most {self.max_context}: "
                "shorten the conversation or the tool descriptions"
            )

    @contextlib.contextmanager
    def _seeded(self, config: GenerationConfig) -> Iterator[None]:
        """Seeded sampling that leaves the caller's global RNG state as it was."""
        if config.temperature == 0 or config.seed is None:
            yield
            return
        on_cpu = self.device.type == "cpu"
        with torch.random.fork_rng(devices=[] if on_cpu else [self.device.index or 0],
                                   device_type=None if on_cpu else self.device.type):
            torch.manual_seed(config.seed)
            yield

    # -- CompletionModel ---------------------------------------------------------------------------
    def complete(self, prompts: list[str], config: GenerationConfig) -> list[Completion]:
        """Continue every prompt in one left-padded ``generate`` call; each row stops on its own.

        Every completion reports the whole batch's wall time as ``latency_s``.
        """
        if not prompts:
            return []
        start = time.perf_counter()
        encoded = [self.encode(p) for p in prompts]
        width = max(len(ids) for ids in encoded)
        self._check_length(width)
        input_ids = torch.full((len(encoded), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
        tracker = _StopTracker(self._decode, config.stop, self.eos_ids, width, len(encoded))
        sampling = config.temperature > 0
        gen_config = HFGenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=sampling,
            temperature=config.temperature if sampling else 1.0,
            top_p=config.top_p if sampling else 1.0,
            top_k=0 if sampling else None,
            eos_token_id=sorted(self.eos_ids) or None,
            pad_token_id=self.pad_id,
        )
        with torch.inference_mode(), self._seeded(config), contiguous_lm_head(self.model):
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=gen_config,
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        latency = time.perf_counter() - start
        generated = out[:, width:].tolist()
        completions = []
        for row, ids in enumerate(encoded):
            end = tracker.ended_at[row]
            row_ids = generated[row][: end if end is not None else len(generated[row])]
            completions.append(Completion(
                text=self._final_text(row_ids, config.stop),
                prompt_tokens=len(ids),
                completion_tokens=len(row_ids),
                latency_s=latency,
                meta={"finish_reason": "stop" if end is not None else "length", "batch_size": len(prompts)},
            ))
        return completions

    def stream_complete(self, prompt: str, config: GenerationConfig) -> Iterator[str | Completion]:
        """Yield text as it is decoded, then the :class:`Completion`.

        The decode loop runs on the calling thread on purpose (a worker thread decodes up to 1.6x
        slower here, see the module docstring). Pieces never end in a broken UTF-8 character or in
        what could be the start of a stop string; joined, they equal the completion's text.
        """
        start = time.perf_counter()
        ids = self.encode(prompt)
        self._check_length(len(ids))
        stops = [s for s in config.stop if s]
        sampling = config.temperature > 0
        generator = None
        if sampling:
            generator = torch.Generator(device=self.device)
            if config.seed is not None:
                generator.manual_seed(config.seed)
            else:
                generator.seed()
        generated: list[int] = []
        emitted = 0
        finish = "length"
        with torch.inference_mode():
            cache = DynamicCache(config=self.model.config)
            cache_kw = cache_argument(self.model)
            logits = self.model(
                input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
                use_cache=True, logits_to_keep=last_position(len(ids), self.device), **{cache_kw: cache},
            ).logits[:, -1]
            for step in range(config.max_new_tokens):
                token = self._pick(logits, config, generator)
                generated.append(token)
                if token in self.eos_ids:
                    finish = "stop"
                    break
                text = self._decode(generated)
                if stops and _find_stop(text, stops) is not None:
                    finish = "stop"
                    break
                safe = len(text) - _held_back(text, stops)
                if safe > emitted:
                    yield text[emitted:safe]
                    emitted = safe
                if step + 1 < config.max_new_tokens:
                    logits = self.model(
                        input_ids=torch.tensor([[token]], dtype=torch.long, device=self.device),
                        use_cache=True, **{cache_kw: cache},
                    ).logits[:, -1]
        text = self._final_text(generated, stops)
        if len(text) > emitted:
            yield text[emitted:]
        yield Completion(
            text=text,
            prompt_tokens=len(ids),
            completion_tokens=len(generated),
            latency_s=time.perf_counter() - start,
            meta={"finish_reason": finish, "batch_size": 1},
        )

    @staticmethod
    def _pick(logits: torch.Tensor, config: GenerationConfig, generator: torch.Generator | None) -> int:
        """Greedy, or temperature + nucleus sampling as transformers' warpers do it."""
        logits = logits[0].float()
        if config.temperature == 0:
            return int(torch.argmax(logits))
        logits = logits / config.temperature
        if config.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=False)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cumulative <= (1 - config.top_p)
            remove[-1] = False
            logits = logits.masked_fill(remove.scatter(0, order, remove), float("-inf"))
        probs = logits.softmax(dim=-1)
        return int(torch.multinomial(probs, num_samples=1, generator=generator))

    # -- async: same loop, on the event-loop thread ---------------------------------------------
    async def astream(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                      config: GenerationConfig | None = None) -> AsyncIterator[MessageChunk]:
        """Stream on the event-loop thread (not a worker thread, which is much slower here), yielding to
        the loop after every token so other tasks keep running between tokens."""
        for chunk in self.stream(messages, tools=tools, config=config):
            yield chunk
            await asyncio.sleep(0)

    async def agenerate(self, messages: list[Message], *, tools: list[ToolSpec] | None = None,
                        config: GenerationConfig | None = None) -> Message:
        final: Message | None = None
        async for chunk in self.astream(messages, tools=tools, config=config):
            if chunk.message is not None:
                final = chunk.message
        assert final is not None  # stream always ends with the full message
        return final

    def __repr__(self) -> str:
        return f"HFModel({self.model_name!r}, dtype={str(self.dtype).removeprefix('torch.')}, device={self.device})"

