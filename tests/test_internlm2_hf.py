"""``hf:PATH`` on a released-format InternLM2 directory: model and tokenizer load with no remote code, and run."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.llm import Completion, GenerationConfig  # noqa: E402
from agentkit.messages import Message  # noqa: E402
from agentkit.models import load_model  # noqa: E402
from agentkit.models.internlm2 import InternLM2ForCausalLM, InternLM2Tokenizer, internlm2_to_llama  # noqa: E402
from agentkit.models.internlm2.testing import train_tiny_tokenizer, write_tiny_checkpoint  # noqa: E402

PROMPT = "<|im_start|>user\nWhat is 12 * 7?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A released-format chat checkpoint whose vocabulary is a tokenizer trained here (no dummy prefix, so
    the Llama copy's plain tokenizer decodes exactly as ours does)."""
    directory = tmp_path_factory.mktemp("internlm2-chat")
    train_tiny_tokenizer(directory, add_dummy_prefix=False, placeholders=True)
    write_tiny_checkpoint(directory, heads=4, kv_heads=2, vocab_size=400, shards=2)
    return directory


def test_hf_spec_loads_and_completes(tiny_dir, tmp_path):
    model = load_model(f"hf:{tiny_dir}", dtype="float32", threads=2)
    assert isinstance(model.model, InternLM2ForCausalLM) and isinstance(model.tokenizer, InternLM2Tokenizer)
    assert model.eos_ids == {2, 7}  # </s> and <|im_end|> from generation_config.json
    config = GenerationConfig(max_new_tokens=10)
    [completion] = model.complete([PROMPT], config)
    assert isinstance(completion, Completion) and completion.completion_tokens >= 1
    pieces = list(model.stream_complete(PROMPT, config))
    assert "".join(p for p in pieces if isinstance(p, str)) == pieces[-1].text == completion.text

    internlm2_to_llama(tiny_dir, tmp_path / "llama")
    llama = load_model(f"hf:{tmp_path / 'llama'}", dtype="float32", threads=2)
    assert type(llama.model).__name__ == "LlamaForCausalLM"
    [same] = llama.complete([PROMPT], config)
    assert (same.text, same.completion_tokens) == (completion.text, completion.completion_tokens)


def test_chat_through_the_internlm2_protocol(tiny_dir):
    model = load_model(f"hf:{tiny_dir}", dtype="float32", threads=2)
    reply = model.generate([Message.user("hi")], config=GenerationConfig(max_new_tokens=6))
    assert reply.role == "assistant"


def test_importing_the_package_and_cli_module_stays_light():
    code = ("import sys, agentkit.models, agentkit.models.internlm2, agentkit.models.internlm2.commands; "
            "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; print(heavy); assert not heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("rope_scaling", [{"type": "yarn", "factor": 4.0}, {"type": "ntk", "factor": 2.0}])
def test_unknown_rope_scaling_is_one_config_error(tmp_path, rope_scaling):
    """transformers' AutoTokenizer reads the config too (and trips over some rope types if it raises early):
    the user still gets one ConfigError naming the problem."""
    train_tiny_tokenizer(tmp_path)
    write_tiny_checkpoint(tmp_path, rope_scaling=rope_scaling)
    with pytest.raises(ConfigError, match=f"rope_scaling type '{rope_scaling['type']}' is not one InternLM2 uses"):
        load_model(f"hf:{tmp_path}")
