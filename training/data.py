"""SFT and preference data from agent trajectories, rendered with the agent's own protocol.

Samples are pre-tokenised (``input_ids`` + ``labels``) so any chat format trains with TRL: the loss
falls only on what the model writes — assistant text, tool actions and the end-of-turn token — and
never on the system prompt, tool schemas, user turns or tool results (``labels == -100`` there).
Each assistant turn is cut exactly where the agent's prompt ends (``<|im_start|>assistant\\n``), so
training sees the same token boundary generation does.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.messages import Message
from agentkit.protocols.base import Protocol
from agentkit.protocols.internlm2 import SPECIAL_TOKENS, InternLM2Protocol, as_tool_specs, one_call_per_turn
from agentkit.toolspec import ToolSpec
from agentkit.trajectory import TrajectoryRecord

__all__ = [
    "IGNORE_INDEX",
    "SFTSample",
    "add_action_tokens",
    "agent_flan_sample",
    "load_samples",
    "preference_pair",
    "save_samples",
    "sft_sample",
    "sft_sample_from_record",
    "to_dataset",
]

#: Label value the loss ignores (PyTorch's cross-entropy default, which TRL and transformers use).
IGNORE_INDEX = -100


@dataclass
class SFTSample:
    """One tokenised training conversation; ``labels[i] == IGNORE_INDEX`` where no loss is taken."""

    input_ids: list[int]
    labels: list[int]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)

    def to_dict(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels, "meta": json.dumps(self.meta)}


# -- tokens -------------------------------------------------------------------------------------------

def add_action_tokens(tokenizer: Any, model: Any = None, tokens: Sequence[str] = SPECIAL_TOKENS) -> list[str]:
    """Add the InternLM2 protocol tokens the tokenizer lacks as special tokens; return those added.

    With ``model``, its embeddings are resized to the new vocabulary and each new row (input and, when
    untied, output) starts at the mean of the existing rows, so the new tokens begin as an "average"
    token instead of random noise that would dominate the logits.
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    if model is not None:
        resize_with_mean(model, len(tokenizer))
    return missing


def resize_with_mean(model: Any, size: int) -> None:
    """Grow ``model``'s vocabulary to ``size`` rows, new rows set to the mean of the old ones."""
    import torch

    old = model.get_input_embeddings().weight.shape[0]
    if size <= old:
        return
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        inputs = model.get_input_embeddings().weight
        inputs[old:] = inputs[:old].mean(dim=0, keepdim=True)
        outputs = model.get_output_embeddings()
        if outputs is not None and outputs.weight.data_ptr() != inputs.data_ptr():
            outputs.weight[old:] = outputs.weight[:old].mean(dim=0, keepdim=True)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _bos(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a prompt (a BOS for Llama-2-style tokenizers, nothing for ChatML)."""
    with_special = list(tokenizer("x", add_special_tokens=True)["input_ids"])
    bare = _encode(tokenizer, "x")
    return with_special[: len(with_special) - len(bare)] if with_special[-len(bare):] == bare else []


def _check_tokens(tokenizer: Any, protocol: Protocol) -> None:
    if isinstance(protocol, InternLM2Protocol):
        vocab = tokenizer.get_vocab()
        missing = [t for t in SPECIAL_TOKENS if t not in vocab]
        if missing:
            raise ConfigError(f"the tokenizer lacks the protocol tokens {', '.join(missing)}: call "
                              "add_action_tokens(tokenizer, model) first so they are single tokens")


# -- samples ------------------------------------------------------------------------------------------

def _render(protocol: Protocol, messages: list[Message], tools: list[ToolSpec], generation: bool) -> str:
    plugins = [t for t in tools if t.kind != "interpreter"]
    interpreters = [t for t in tools if t.kind == "interpreter"]
    interpreter: bool | str = (interpreters[0].description or True) if interpreters else False
    try:
        return protocol.render(messages, plugins or None, interpreter=interpreter, add_generation_prompt=generation)
    except TypeError:
        raise ConfigError(f"protocol {protocol.name!r} cannot render training data: its render() needs an "
                          "add_generation_prompt argument") from None


def segments(messages: Sequence[Message], tools: Sequence[Any] | None = None,
             protocol: Protocol | None = None) -> list[tuple[str, bool]]:
    """The rendered conversation as ``(text, trained)`` pieces that join to the full training text.

    A trained piece is one assistant turn as the model writes it after the generation prompt, up to
    and including its last stop word; everything else (prompts, results, trailing newlines) is context.
    """
    protocol = protocol or InternLM2Protocol()
    specs = as_tool_specs(list(tools or []))
    turns = one_call_per_turn(list(messages))
    if not any(m.role == "assistant" for m in turns):
        raise ConfigError("the conversation has no assistant turn: there is nothing to train on")
    out: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(turns):
        if message.role != "assistant":
            continue
        prompt = _render(protocol, turns[:i], specs, True)
        full = _render(protocol, turns[: i + 1], specs, False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            raise ConfigError(f"protocol {protocol.name!r} does not render turns as a growing prefix; "
                              "it cannot be used for masked SFT")
        reply = full[len(prompt):]
        ends = [reply.rfind(s) + len(s) for s in protocol.stop_words if s and s in reply]
        cut = max(ends) if ends else len(reply.rstrip())
        out += [(prompt[len(done):], False), (reply[:cut], True)]
        done = prompt + reply[:cut]
    whole = _render(protocol, turns, specs, False)
    if len(whole) > len(done):
        out.append((whole[len(done):], False))
    return [(text, trained) for text, trained in out if text]


def sft_sample(messages: Sequence[Message], tools: Sequence[Any] | None, tokenizer: Any,
               protocol: Protocol | None = None, max_length: int | None = None,
               meta: dict[str, Any] | None = None) -> SFTSample:
    """Tokenise a conversation with loss only on the assistant's turns (see :func:`segments`)."""
    protocol = protocol or InternLM2Protocol()
    _check_tokens(tokenizer, protocol)
    ids: list[int] = _bos(tokenizer)
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    for text, trained in segments(messages, tools, protocol):
        piece = _encode(tokenizer, text)
        ids += piece
        labels += piece if trained else [IGNORE_INDEX] * len(piece)
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return SFTSample(ids, labels, dict(meta or {}))


def sft_sample_from_record(record: TrajectoryRecord, tokenizer: Any, protocol: Protocol | None = None,
                           max_length: int | None = None) -> SFTSample:
    """A trajectory record (as agents write them) as an SFT sample; its own tool list is shown to the model."""
    tools = [ToolSpec.model_validate(t) for t in record.tools]
    return sft_sample(record.messages, tools, tokenizer, protocol, max_length,
                      meta={"trajectory": record.id, **{k: v for k, v in record.meta.items() if k != "messages"}})


def agent_flan_sample(record: dict[str, Any], tokenizer: Any, max_length: int | None = None) -> SFTSample:
    """An Agent-FLAN record (``conversation``: turns with ``role``, ``content``, ``loss``) in InternLM2 ChatML.

    Loss is taken on a turn's content and its ``<|im_end|>`` when the turn's ``loss`` flag is true.
    """
    turns = record.get("conversation")
    if not isinstance(turns, list) or not turns:
        raise ConfigError("an Agent-FLAN record needs a non-empty 'conversation' list of "
                          "{'role', 'content', 'loss'} turns")
    ids: list[int] = _bos(tokenizer)
    labels: list[int] = [IGNORE_INDEX] * len(ids)
    for number, turn in enumerate(turns):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise ConfigError(f"turn {number} of Agent-FLAN record {record.get('id', '?')!r} "
                              "needs 'role' and 'content'")
        header = _encode(tokenizer, f"<|im_start|>{turn['role']}\n")
        body = _encode(tokenizer, f"{turn['content']}<|im_end|>")
        newline = _encode(tokenizer, "\n")
        ids += header + body + newline
        trained = bool(turn.get("loss", turn["role"] == "assistant"))
        labels += [IGNORE_INDEX] * len(header) + (body if trained else [IGNORE_INDEX] * len(body))
        labels += [IGNORE_INDEX] * len(newline)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return SFTSample(ids, labels, {"source": "agent-flan", "id": record.get("id")})


def preference_pair(prompt: Sequence[Message], chosen: Sequence[Message], rejected: Sequence[Message],
                    tools: Sequence[Any] | None = None, protocol: Protocol | None = None) -> dict[str, str]:
    """A DPO example as text: the shared prompt, then each continuation as the model writes it.

    ``chosen`` / ``rejected`` are the messages after ``prompt`` (assistant turns and tool results);
    environment turns inside a continuation are part of its text, as the model saw them.
    """
    protocol = protocol or InternLM2Protocol()
    specs = as_tool_specs(list(tools or []))
    base = _render(protocol, list(prompt), specs, True)

    def continuation(messages: Sequence[Message]) -> str:
        full = _render(protocol, [*prompt, *messages], specs, False)
        if not full.startswith(base):
            raise ConfigError(f"protocol {protocol.name!r} does not render turns as a growing prefix")
        text = full[len(base):]
        return text[: len(text.rstrip())]

    return {"prompt": base, "chosen": continuation(chosen), "rejected": continuation(rejected)}


# -- datasets -----------------------------------------------------------------------------------------

def to_dataset(samples: Iterable[SFTSample]) -> Any:
    """A Hugging Face ``datasets.Dataset`` with ``input_ids``, ``labels`` and ``meta`` (JSON) columns."""
    from datasets import Dataset

    rows = [s.to_dict() for s in samples]
    if not rows:
        raise ConfigError("no SFT samples to train on: collect some successful trajectories first")
    return Dataset.from_list(rows)


def save_samples(samples: Iterable[SFTSample], path: str | Path) -> Path:
    """Save as a ``datasets`` directory (``save_to_disk``), readable by :func:`load_samples`."""
    path = Path(path)
    to_dataset(samples).save_to_disk(str(path))
    return path


def load_samples(path: str | Path) -> list[SFTSample]:
    """Samples from a ``save_to_disk`` directory or any dataset with ``input_ids`` and ``labels`` columns."""
    from datasets import load_from_disk

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{str(path)!r} is not a saved dataset directory: write one with save_samples()")
    dataset = load_from_disk(str(path))
    missing = {"input_ids", "labels"} - set(dataset.column_names)
    if missing:
        raise ConfigError(f"the dataset at {str(path)!r} lacks column(s) {', '.join(sorted(missing))}")
    return [SFTSample(list(r["input_ids"]), list(r["labels"]), json.loads(r.get("meta") or "{}"))
            for r in dataset]
