"""Shipping a loop run's adapter: bf16 weights, no tokenizer copy, a model card, refusal when it did not help."""

from __future__ import annotations

import json
import shlex

import pytest

pytest.importorskip("trl")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.models.lora import ADAPTER_META  # noqa: E402
from agentkit.training.loop import LoopConfig, run_loop  # noqa: E402
from agentkit.training.ship import loop_command, ship_adapter  # noqa: E402
from agentkit.training.tiny import save_tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tiny = "hf:" + str(save_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))
    out = tmp_path_factory.mktemp("run")
    run_loop(LoopConfig(out=str(out), model=tiny, task_options={"per_kind": 3}, samples=1, train_limit=4,
                        eval_limit=3, max_new_tokens=6, max_steps=2, epochs=3, batch_size=2, lora_r=4,
                        progress=False), log=lambda line: None)
    return tiny, out


def test_an_adapter_that_did_not_help_is_refused(finished_run, tmp_path):
    _, run = finished_run  # a random model learns nothing in one tiny round
    with pytest.raises(ConfigError, match="does not beat the base model"):
        ship_adapter(run, tmp_path / "shipped")
    assert not (tmp_path / "shipped").exists()


def test_shipped_adapter_is_small_and_loads_like_the_trained_one(finished_run, tmp_path):
    import torch
    from safetensors.torch import load_file

    from agentkit.models import load_model

    tiny, run = finished_run
    trained = run / "round1" / "adapter"
    shipped = ship_adapter(run, tmp_path / "shipped", force=True)
    files = {p.name for p in shipped.path.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "added_tokens.safetensors", ADAPTER_META,
                     "README.md"}  # no tokenizer files: loading rebuilds them from the meta's token list
    weights = load_file(str(shipped.path / "adapter_model.safetensors"))
    assert weights and all(w.dtype == torch.bfloat16 for w in weights.values())
    assert (shipped.path / "adapter_model.safetensors").stat().st_size < \
        0.6 * (trained / "adapter_model.safetensors").stat().st_size
    meta = json.loads((shipped.path / ADAPTER_META).read_text())
    assert meta["added_tokens"] == ["<|action_start|>", "<|action_end|>", "<|plugin|>", "<|interpreter|>"]
    card = (shipped.path / "README.md").read_text()
    assert "agentkit train loop --model hf:" in card and "| task success |" in card

    base = load_model(tiny)
    from_run = load_model(f"{tiny},adapter={trained}")
    from_ship = load_model(f"{tiny},adapter={shipped.path}")
    assert from_ship.tokenizer.convert_tokens_to_ids("<|plugin|>") == from_run.tokenizer.convert_tokens_to_ids(
        "<|plugin|>") == 49154
    text = "<|im_start|>user\nWhat is 3 * 4?<|im_end|>\n<|im_start|>assistant\n<|action_start|><|plugin|>\n"
    ids = torch.tensor([from_run.encode(text)])
    assert from_ship.encode(text) == ids[0].tolist()
    with torch.inference_mode():
        run_logits = from_run.model(ids).logits
        ship_logits = from_ship.model(ids).logits
        base_ids = torch.tensor([base.encode("<|im_start|>user\nWhat is 3 * 4?<|im_end|>\n")])
        base_logits = base.model(base_ids).logits
        same_prefix = from_ship.model(base_ids).logits
    rounding = (run_logits - ship_logits).abs().max().item()
    learned = (same_prefix[..., : base_logits.shape[-1]] - base_logits).abs().max().item()
    assert rounding < 1e-2 and learned > 10 * rounding  # bf16 rounding is far below what training changed


def test_loop_command_reproduces_the_run_settings():
    config = {**LoopConfig(out="x", model="embedded-base", task_options={"per_kind": 30}, samples=2, train_limit=60,
                           eval_limit=40, max_new_tokens=64, learning_rate=2e-3, lora_r=16).__dict__}
    command = loop_command(config)
    parts = shlex.split(command)
    assert parts[:7] == ["agentkit", "train", "loop", "--model", "embedded-base", "--tasks", "tooluse"]
    pairs = dict(zip(parts[7::2], parts[8::2]))
    assert pairs["--per-kind"] == "30" and pairs["--samples"] == "2" and pairs["--lora-r"] == "16"
    assert pairs["--train-limit"] == "60" and pairs["--eval-limit"] == "40" and pairs["--lr"] == "0.002"
    assert "--temperature" not in pairs  # defaults are left out
