"""Label masking on hand-built conversations, Agent-FLAN import, datasets round trip, preference pairs."""

from __future__ import annotations

import pytest

from agentkit.errors import ConfigError
from agentkit.messages import Message, ToolCall
from agentkit.training.data import (
    IGNORE_INDEX,
    add_action_tokens,
    agent_flan_sample,
    load_samples,
    preference_pair,
    save_samples,
    segments,
    sft_sample,
)
from agentkit.toolspec import ToolSpec


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    from agentkit.models.embedded import embedded_gguf_path

    gguf = embedded_gguf_path()
    tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    add_action_tokens(tok)
    return tok


CALC = ToolSpec(name="calculator", description="Evaluate an expression.",
                parameters={"type": "object", "properties": {"expression": {"type": "string"}}})


def _conversation():
    call = ToolCall(name="calculator", arguments={"expression": "6 * 7"})
    return [Message.system("Be brief."), Message.user("6 times 7?"), Message.assistant("Let me compute.", [call]),
            Message.tool_result(call, "42"), Message.assistant("It is 42.")]


def test_only_assistant_text_and_actions_are_trained(tokenizer):
    sample = sft_sample(_conversation(), [CALC], tokenizer)
    trained = tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    assert trained == ('Let me compute.<|action_start|><|plugin|>\n{"name": "calculator", "parameters": '
                       '{"expression": "6 * 7"}}<|action_end|><|im_end|>It is 42.<|im_end|>')
    # everything else is masked, and the whole sample is exactly the rendered conversation
    whole = tokenizer.decode(sample.input_ids)
    from agentkit.protocols.internlm2 import InternLM2Protocol

    assert whole == InternLM2Protocol().render(_conversation(), [CALC], add_generation_prompt=False)
    masked = tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label == IGNORE_INDEX])
    for context in ("Be brief.", "6 times 7?", "<|im_start|>environment name=<|plugin|>\n42<|im_end|>",
                    '"name": "calculator"', "<|im_start|>assistant\n"):
        assert context in masked
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(sample.input_ids, sample.labels))


def test_masking_matches_the_generation_boundary(tokenizer):
    """The first trained token is what the model generates right after the agent's prompt."""
    from agentkit.protocols.internlm2 import InternLM2Protocol

    sample = sft_sample(_conversation(), [CALC], tokenizer)
    prompt = InternLM2Protocol().render(_conversation()[:2], [CALC])
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert sample.input_ids[: len(prompt_ids)] == prompt_ids
    assert all(label == IGNORE_INDEX for label in sample.labels[: len(prompt_ids)])
    assert sample.labels[len(prompt_ids)] == sample.input_ids[len(prompt_ids)]


def test_segments_split_multi_call_turns_and_refuse_empty_conversations():
    a = ToolCall(name="calculator", arguments={"expression": "1+1"})
    b = ToolCall(name="calculator", arguments={"expression": "2+2"})
    messages = [Message.user("both?"), Message.assistant("", [a, b]), Message.tool_result(a, "2"),
                Message.tool_result(b, "4"), Message.assistant("2 and 4")]
    trained = [text for text, is_trained in segments(messages, [CALC]) if is_trained]
    assert len(trained) == 3 and '"1+1"' in trained[0] and '"2+2"' in trained[1]
    with pytest.raises(ConfigError, match="no assistant turn"):
        segments([Message.user("hi")])


def test_missing_protocol_tokens_are_reported():
    transformers = pytest.importorskip("transformers")
    from agentkit.models.embedded import embedded_gguf_path

    gguf = embedded_gguf_path()
    plain = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    with pytest.raises(ConfigError, match="add_action_tokens"):
        sft_sample(_conversation(), [CALC], plain)


def test_agent_flan_records_use_their_loss_flags(tokenizer):
    record = {"id": "x1", "conversation": [
        {"role": "system", "content": "You are an agent.", "loss": False},
        {"role": "user", "content": "Find the weather.", "loss": False},
        {"role": "assistant", "content": "Thought: search.\nAction: weather", "loss": True},
        {"role": "user", "content": "Observation: sunny", "loss": False},
        {"role": "assistant", "content": "It is sunny.", "loss": False},
    ]}
    sample = agent_flan_sample(record, tokenizer)
    trained = tokenizer.decode([t for t, label in zip(sample.input_ids, sample.labels) if label != IGNORE_INDEX])
    assert trained == "Thought: search.\nAction: weather<|im_end|>"
    assert tokenizer.decode(sample.input_ids).startswith("<|im_start|>system\nYou are an agent.<|im_end|>\n")
    with pytest.raises(ConfigError, match="conversation"):
        agent_flan_sample({"id": "bad"}, tokenizer)


def test_samples_round_trip_through_a_datasets_directory(tokenizer, tmp_path):
    pytest.importorskip("datasets")
    samples = [sft_sample(_conversation(), [CALC], tokenizer, meta={"task_id": "t1"})]
    save_samples(samples, tmp_path / "data")
    loaded = load_samples(tmp_path / "data")
    assert loaded[0].input_ids == samples[0].input_ids and loaded[0].labels == samples[0].labels
    assert loaded[0].meta == {"task_id": "t1"}
    with pytest.raises(ConfigError, match="not a saved dataset"):
        load_samples(tmp_path / "missing")


def test_preference_pair_shares_the_prompt():
    conversation = _conversation()
    pair = preference_pair(conversation[:2], [conversation[2]], [Message.assistant("It is 41.")], [CALC])
    assert pair["prompt"].endswith("<|im_start|>assistant\n")
    assert pair["chosen"].startswith("Let me compute.<|action_start|><|plugin|>")
    assert pair["chosen"].endswith("<|im_end|>")
    assert pair["rejected"] == "It is 41.<|im_end|>"
