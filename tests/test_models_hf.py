"""HFModel on a tiny random-init Llama with the real SmolLM2 tokenizer (taken from the embedded GGUF)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.llm import Completion, GenerationConfig  # noqa: E402
from agentkit.messages import Message  # noqa: E402
from agentkit.models import load_model  # noqa: E402
from agentkit.models.hf import HFModel, _resolve_source  # noqa: E402
from agentkit.protocols.base import Protocol  # noqa: E402

PROMPTS = [
    "<|im_start|>user\nHello there, how are you today?<|im_end|>\n<|im_start|>assistant\n",
    "a",
    "The quick brown fox jumps over the lazy dog, then keeps running towards the river bank.",
]


class ChatML(Protocol):
    """Plain ChatML, no tools: enough to drive a completion model through generate()."""

    name = "chatml"
    stop_words = ["<|im_end|>"]

    def render(self, messages, tools=None, interpreter=False):
        turns = "".join(f"<|im_start|>{m.role}\n{m.text}<|im_end|>\n" for m in messages)
        return turns + "<|im_start|>assistant\n"

    def parse(self, text):
        return Message.assistant(text)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A 2-layer, hidden-32 Llama (random weights, seeded) saved with the SmolLM2 tokenizer."""
    from agentkit.models.embedded import embedded_gguf_path

    try:
        gguf = embedded_gguf_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        initializer_range=0.5,  # peaked logits: varied text, and greedy choices far from ties
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_dir) -> HFModel:
    return HFModel.from_pretrained(tiny_dir, dtype="float32", protocol=ChatML(), threads=2)


def greedy(n: int = 24, **kw) -> GenerationConfig:
    return GenerationConfig(max_new_tokens=n, **kw)


def _stream(model: HFModel, prompt: str, config: GenerationConfig) -> tuple[list[str], Completion]:
    *pieces, final = list(model.stream_complete(prompt, config))
    assert isinstance(final, Completion) and all(isinstance(p, str) and p for p in pieces)
    return pieces, final


def test_complete_returns_text_and_token_counts(tiny):
    [out] = tiny.complete([PROMPTS[0]], greedy(12))
    assert isinstance(out.text, str) and out.text
    assert out.prompt_tokens == len(tiny.tokenizer(PROMPTS[0])["input_ids"]) == 17
    assert out.completion_tokens == 12 and out.meta["finish_reason"] == "length"
    assert out.latency_s > 0
    assert tiny.complete([], greedy()) == []


def test_batch_equals_each_prompt_alone(tiny):
    batch = tiny.complete(PROMPTS, greedy())
    alone = [tiny.complete([p], greedy())[0] for p in PROMPTS]
    assert [c.text for c in batch] == [c.text for c in alone]
    assert [c.completion_tokens for c in batch] == [c.completion_tokens for c in alone]
    assert [c.prompt_tokens for c in batch] == [c.prompt_tokens for c in alone]
    assert len({c.prompt_tokens for c in batch}) == 3  # really different lengths, so padding was exercised
    assert len({c.text for c in batch}) == 3


def _stop_word_from(text: str) -> str:
    """A 3-character piece from the middle of real output (no replacement characters)."""
    for start in range(len(text) // 3, len(text) - 3):
        piece = text[start:start + 3]
        if "\ufffd" not in piece and piece.strip():
            return piece
    raise AssertionError(f"no usable stop word in {text!r}")


def test_stop_words_cut_text_per_row(tiny):
    full = tiny.complete(PROMPTS, greedy(32))
    stop = _stop_word_from(full[0].text)
    expected = full[0].text[: full[0].text.find(stop)]
    cut = tiny.complete(PROMPTS, greedy(32, stop=[stop]))
    assert cut[0].text == expected and stop not in cut[0].text
    assert cut[0].completion_tokens < full[0].completion_tokens
    assert cut[0].meta["finish_reason"] == "stop"
    for row in (1, 2):  # the other rows stop on their own (or not at all)
        own = full[row].text.find(stop)
        assert cut[row].text == (full[row].text if own < 0 else full[row].text[:own])
    [alone] = tiny.complete([PROMPTS[0]], greedy(32, stop=[stop]))
    assert alone.text == expected and alone.completion_tokens == cut[0].completion_tokens
    pieces, final = _stream(tiny, PROMPTS[0], greedy(32, stop=[stop]))
    assert "".join(pieces) == final.text == expected
    assert final.completion_tokens == cut[0].completion_tokens


def test_stream_pieces_join_to_the_same_text(tiny):
    for prompt in PROMPTS:
        [whole] = tiny.complete([prompt], greedy(40))
        pieces, final = _stream(tiny, prompt, greedy(40))
        assert "".join(pieces) == final.text == whole.text
        assert len(pieces) > 5
        assert all(not p.endswith("\ufffd") for p in pieces[:-1])  # no broken UTF-8 mid-stream
        assert (final.prompt_tokens, final.completion_tokens) == (whole.prompt_tokens, whole.completion_tokens)


def test_stream_holds_back_a_partial_stop_word(tiny):
    [whole] = tiny.complete([PROMPTS[2]], greedy(24))
    stop = _stop_word_from(whole.text) + "~never~"  # starts like the output, never completes
    pieces, final = _stream(tiny, PROMPTS[2], greedy(24, stop=[stop]))
    assert "".join(pieces) == final.text == whole.text
    assert final.meta["finish_reason"] == "length"


def test_max_new_tokens_is_respected(tiny):
    for n in (1, 5):
        [out] = tiny.complete([PROMPTS[1]], greedy(n))
        assert out.completion_tokens == n
        _, final = _stream(tiny, PROMPTS[1], greedy(n))
        assert final.completion_tokens == n and final.text == out.text


def test_eos_is_dropped_and_protocol_tokens_are_kept(tiny):
    ids = tiny.tokenizer("thought<|im_start|>plugin", add_special_tokens=False)["input_ids"]
    assert tiny._final_text([*ids, tiny.tokenizer.eos_token_id], []) == "thought<|im_start|>plugin"
    assert tiny._final_text(ids, ["<|im_start|>"]) == "thought"


def test_sampling_is_reproducible_with_a_seed_and_leaves_global_rng_alone(tiny):
    config = GenerationConfig(max_new_tokens=16, temperature=0.9, top_p=0.9, seed=11)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = tiny.complete(PROMPTS, config)
    second = tiny.complete(PROMPTS, config)
    assert torch.equal(torch.rand(3), expected_next)
    assert [c.text for c in first] == [c.text for c in second]
    other = tiny.complete(PROMPTS, config.model_copy(update={"seed": 12}))
    assert [c.text for c in other] != [c.text for c in first]
    assert [c.text for c in first] != [c.text for c in tiny.complete(PROMPTS, greedy(16))]
    _, s1 = _stream(tiny, PROMPTS[0], config)
    _, s2 = _stream(tiny, PROMPTS[0], config)
    assert s1.text == s2.text


def test_generate_through_the_protocol(tiny):
    conversation = [Message.system("Be brief."), Message.user("Hi!")]
    reply = tiny.generate(conversation, config=greedy(10))
    assert reply.role == "assistant" and reply.text
    assert reply.usage.prompt_tokens == len(tiny.tokenizer(tiny.render(conversation))["input_ids"])
    assert 1 <= reply.usage.completion_tokens <= 10 and reply.usage.latency_s > 0
    assert reply.meta["raw"] == reply.text
    chunks = list(tiny.stream(conversation, config=greedy(10)))
    assert chunks[-1].message.text == reply.text == "".join(c.delta for c in chunks[:-1])
    replies = tiny.batch([conversation, [Message.user("Something longer to pad against")]], config=greedy(10))
    assert replies[0].text == reply.text and all(r.usage.completion_tokens for r in replies)


def test_async_twins_run_and_match(tiny):
    conversation = [Message.user("Hi!")]
    reply = tiny.generate(conversation, config=greedy(8))

    async def run():
        async_reply = await tiny.agenerate(conversation, config=greedy(8))
        chunks = [c async for c in tiny.astream(conversation, config=greedy(8))]
        return async_reply, chunks

    async_reply, chunks = asyncio.run(run())
    assert async_reply.text == reply.text == chunks[-1].message.text


def test_default_protocol_is_internlm2(tiny_dir):
    pytest.importorskip("agentkit.protocols.internlm2")
    model = HFModel.from_pretrained(tiny_dir, dtype="float32")
    assert model.protocol.name == "internlm2"
    assert "<|im_end|>" in model._config(None).stop
    reply = model.generate([Message.user("hi")], config=greedy(6))
    assert reply.role == "assistant" and reply.usage.completion_tokens >= 1


def test_protocol_by_name_and_bf16(tiny_dir):
    pytest.importorskip("agentkit.protocols.react")
    model = HFModel.from_pretrained(tiny_dir, dtype="bfloat16", protocol="react")
    assert model.protocol.name == "react" and model.dtype == torch.bfloat16
    [out] = model.complete([PROMPTS[0]], greedy(4))
    assert out.completion_tokens == 4


def test_load_model_hf_spec(tiny_dir):
    model = load_model(f"hf:{tiny_dir}", dtype="float32", protocol=ChatML())
    assert isinstance(model, HFModel) and model.model_name == f"hf:{tiny_dir}"
    assert model.generate([Message.user("hi")], config=greedy(3)).usage.completion_tokens == 3


def test_bad_paths_and_options_are_config_errors(tmp_path, tiny_dir):
    with pytest.raises(ConfigError, match="model directory '.*nope' does not exist"):
        HFModel.from_pretrained(tmp_path / "nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(f"hf:{tmp_path / 'nope'}")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a .gguf"):
        HFModel.from_pretrained(tmp_path / "weights.bin")
    with pytest.raises(ConfigError, match="no config.json"):
        HFModel.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="unknown dtype 'float8'"):
        HFModel.from_pretrained(tiny_dir, dtype="float8")
    with pytest.raises(ConfigError, match="gguf file 'missing.gguf' is not in"):
        HFModel.from_pretrained(tiny_dir, gguf_file="missing.gguf")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="could not load a causal LM"):
        HFModel.from_pretrained(broken)


def test_gguf_paths_resolve(tmp_path):
    (tmp_path / "m.Q4.gguf").write_bytes(b"GGUF")
    assert _resolve_source(tmp_path / "m.Q4.gguf", None) == (tmp_path, "m.Q4.gguf")
    assert _resolve_source(tmp_path, None) == (tmp_path, "m.Q4.gguf")  # the only .gguf in a directory
    (tmp_path / "other.gguf").write_bytes(b"GGUF")
    with pytest.raises(ConfigError, match="several .gguf files"):
        _resolve_source(tmp_path, None)


def test_empty_prompt_is_refused(tiny):
    with pytest.raises(ConfigError, match="prompt is empty"):
        tiny.complete(["a", ""], greedy(2))


def test_prompt_longer_than_the_context_is_refused(tiny):
    long_prompt = "word " * 600
    with pytest.raises(ConfigError, match="reads at most 512"):
        tiny.complete([long_prompt], greedy(2))


def test_missing_transformers_says_what_to_install():
    code = (
        "import sys; sys.modules['transformers'] = None\n"
        "from agentkit.models import load_model\n"
        "try:\n    load_model('hf:/tmp')\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False).stdout
    assert out.startswith("ConfigError") and "pip install 'agentkit[models]'" in out
