"""The LMDeploy backend: a clear error where it cannot run (no GPU here), and its mapping of our settings."""

from __future__ import annotations

import pytest

from agentkit import load_model
from agentkit.errors import ConfigError
from agentkit.llm import GenerationConfig
from agentkit.models.lmdeploy import api_server_command, cut_at_stop, generation_kwargs, gpu_available

needs_gpu = pytest.mark.skipif(not gpu_available(), reason="LMDeploy needs an NVIDIA GPU with CUDA; none here")


@pytest.mark.skipif(gpu_available(), reason="checks the message shown on machines without a GPU")
def test_spec_without_a_gpu_says_what_to_use_instead(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_model(f"lmdeploy:{tmp_path}")
    message = str(info.value)
    assert "NVIDIA GPU" in message
    assert "'hf:PATH'" in message and "openai:http://" in message and "--tool-call-parser internlm" in message


def test_greedy_and_sampling_settings_map_to_lmdeploy():
    greedy = generation_kwargs(GenerationConfig(max_new_tokens=7, stop=["<|action_end|>", "<|im_end|>"]))
    assert greedy == {"max_new_tokens": 7, "top_p": 1.0, "stop_words": ["<|action_end|>", "<|im_end|>"],
                      "skip_special_tokens": False, "do_sample": False, "top_k": 1, "temperature": 1.0}
    sampled = generation_kwargs(GenerationConfig(temperature=0.7, top_p=0.9, seed=3))
    assert sampled["do_sample"] is True and sampled["temperature"] == 0.7
    assert sampled["top_p"] == 0.9 and sampled["random_seed"] == 3


def test_stop_words_returned_by_lmdeploy_are_cut():
    text = 'Let me check.<|action_start|><|plugin|>\n{"name": "x"}<|action_end|>'
    assert cut_at_stop(text, ["<|action_end|>", "<|im_end|>"]) == text.removesuffix("<|action_end|>")
    assert cut_at_stop("no stop here", ["<|im_end|>"]) == "no stop here"


def test_api_server_command_uses_the_internlm_tool_parser():
    command = api_server_command("/models/internlm2-chat-7b", port=24000, model_name="internlm2")
    assert command[:4] == ["lmdeploy", "serve", "api_server", "/models/internlm2-chat-7b"]
    assert command[command.index("--tool-call-parser") + 1] == "internlm"
    assert command[command.index("--server-port") + 1] == "24000"
    assert command[command.index("--model-name") + 1] == "internlm2"


@needs_gpu
def test_pipeline_generates_with_the_internlm2_protocol():  # pragma: no cover - GPU machines only
    import os

    path = os.environ.get("AGENTKIT_LMDEPLOY_MODEL")
    if not path:
        pytest.skip("set AGENTKIT_LMDEPLOY_MODEL to a local InternLM2 checkpoint directory")
    from agentkit.messages import Message

    model = load_model(f"lmdeploy:{path}")
    reply = model.generate([Message(role="user", content="Say hello.")], config=GenerationConfig(max_new_tokens=16))
    assert reply.text and reply.usage.completion_tokens > 0
