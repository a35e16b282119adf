"""One small round of the loop on the real embedded model (SmolLM2-135M): every stage on real weights."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("trl")

pytestmark = pytest.mark.slow


def test_a_small_round_on_the_embedded_model(tmp_path):
    from agentkit.models import load_model
    from agentkit.training.loop import LoopConfig, run_loop
    from agentkit.models.lora import ADAPTER_META

    config = LoopConfig(out=str(tmp_path), model="embedded-base", task_options={"per_kind": 4}, samples=1,
                        train_limit=5, eval_limit=5, max_new_tokens=24, max_steps=2, epochs=3, batch_size=4,
                        progress=False)
    result = run_loop(config, log=lambda line: None)
    adapter = tmp_path / "round1" / "adapter"
    meta = json.loads((adapter / ADAPTER_META).read_text())
    assert meta["added_tokens"] == ["<|action_start|>", "<|action_end|>", "<|plugin|>", "<|interpreter|>"]
    assert meta["losses"][-1] < meta["losses"][0]
    size = sum(p.stat().st_size for p in adapter.iterdir() if p.is_file())
    assert size < 30_000_000  # LoRA + four embedding rows, not a copy of the model
    assert result.before.runs == result.rounds[0][1].runs == 5

    tuned = load_model(f"embedded-base,adapter={adapter}")
    assert tuned.tokenizer.convert_tokens_to_ids("<|action_start|>") == 49152
    ids = tuned.tokenizer("<|action_start|><|plugin|>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 2 and tuned.model.get_input_embeddings().weight.shape[0] == 49156
