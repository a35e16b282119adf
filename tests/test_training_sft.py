"""SFT on a tiny random-init Llama with the real SmolLM2 tokenizer: tokens added, masking exact, loss falls."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from agentkit.messages import Message, ToolCall  # noqa: E402
from agentkit.protocols.internlm2 import SPECIAL_TOKENS  # noqa: E402
from agentkit.training.data import add_action_tokens, sft_sample  # noqa: E402
from agentkit.training.sft import ADAPTER_META, SFTRunConfig, train_sft  # noqa: E402
from agentkit.training.tiny import tiny_model  # noqa: E402


def test_special_tokens_are_added_once_with_mean_embeddings(tmp_path):
    import torch

    model, tokenizer = tiny_model()
    before = model.get_input_embeddings().weight.detach().clone()
    added = add_action_tokens(tokenizer, model)
    assert added == ["<|action_start|>", "<|action_end|>", "<|plugin|>", "<|interpreter|>"]
    assert add_action_tokens(tokenizer, model) == []  # idempotent
    for token in SPECIAL_TOKENS:  # each protocol token is one id, and decodes back to itself
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.decode(ids) == token
    weight = model.get_input_embeddings().weight
    assert weight.shape[0] == len(tokenizer) == before.shape[0] + 4
    assert torch.allclose(weight[-1], before.mean(dim=0), atol=1e-6)
    assert torch.equal(weight[: before.shape[0]], before)


def _conversation():
    call = ToolCall(name="calculator", arguments={"expression": "6 * 7"})
    return [Message.system("Be brief."), Message.user("6 times 7?"), Message.assistant("", [call]),
            Message.tool_result(call, "42"), Message.assistant("42.")]


def test_full_fine_tuning_loss_falls(tmp_path):
    model, tokenizer = tiny_model()
    add_action_tokens(tokenizer, model)
    samples = [sft_sample(_conversation(), None, tokenizer)] * 4
    config = SFTRunConfig(output_dir=str(tmp_path / "full"), full=True, epochs=8, batch_size=4,
                          learning_rate=2e-2, warmup_ratio=0.0, progress=False, bf16=False)
    result = train_sft(model, tokenizer, samples, config)
    assert result.steps == 8
    assert result.last_loss < result.first_loss - 1.5  # memorising one conversation: a clear fall from ln(vocab)
    assert (result.output_dir / "model.safetensors").is_file()


def test_lora_adapter_saves_small_and_loads_back_through_a_model_spec(tmp_path):
    import torch

    from agentkit.models import load_model

    base_dir = tmp_path / "base"
    model, tokenizer = tiny_model()
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    add_action_tokens(tokenizer, model)
    start = model.get_input_embeddings().weight[:-4].mean(dim=0).detach().clone()  # the new rows' mean init
    samples = [sft_sample(_conversation(), None, tokenizer)] * 4
    config = SFTRunConfig(output_dir=str(tmp_path / "adapter"), epochs=2, batch_size=4, learning_rate=5e-2,
                          lora_r=4, progress=False, bf16=False)
    result = train_sft(model, tokenizer, samples, config)
    saved = {p.name for p in result.output_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", ADAPTER_META, "tokenizer.json"} <= saved
    assert "model.safetensors" not in saved
    meta = json.loads((result.output_dir / ADAPTER_META).read_text())
    assert meta["kind"] == "lora" and meta["added_tokens"] == []  # added before training, not by it
    assert "added_tokens.safetensors" in saved  # the new protocol tokens learned their own rows
    from safetensors.torch import load_file

    rows = load_file(str(result.output_dir / "added_tokens.safetensors"))
    moved = (rows["input_rows"] - start).norm(dim=1)
    # at the LoRA rate two Adam steps move a 32-wide row by at most 2 * 0.05 * sqrt(32) ~ 0.57; the rows get 20x
    assert moved.min() > 1.0

    loaded = load_model(f"hf:{base_dir},adapter={result.output_dir}")
    assert len(loaded.tokenizer) == len(tokenizer)
    ids = torch.tensor([samples[0].input_ids])
    with torch.no_grad():
        expected = result.model(input_ids=ids).logits
        got = loaded.model(input_ids=ids).logits
        plain = load_model(f"hf:{base_dir}").model
    assert torch.allclose(got, expected, atol=1e-4)
    # the adapter changed the model: the new protocol tokens have trained rows and LoRA moved the logits
    with torch.no_grad():
        base_ids = torch.tensor([[i for i in samples[0].input_ids if i < plain.config.vocab_size]])
        assert not torch.allclose(loaded.model(input_ids=base_ids).logits[..., : plain.config.vocab_size],
                                  plain(input_ids=base_ids).logits, atol=1e-4)
