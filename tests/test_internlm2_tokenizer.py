"""InternLM2's sentencepiece tokenizer without remote code, on small models trained here in milliseconds.

Encoding is checked against sentencepiece itself applied the way the released tokenizer applies it (text
split on the special tokens, each piece encoded by the model), for the normalizer settings a model can carry.
"""

from __future__ import annotations

import io
import json
import re

import pytest

spm = pytest.importorskip("sentencepiece")
transformers = pytest.importorskip("transformers")

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.models.internlm2 import SPECIAL_TOKENS, InternLM2Tokenizer, load_internlm2_tokenizer  # noqa: E402
from agentkit.models.internlm2.testing import TINY_CORPUS, train_tiny_tokenizer  # noqa: E402

CHAT = (
    "<|im_start|>system name=<|plugin|>\n[{\"name\": \"calculator\"}]<|im_end|>\n"
    "<|im_start|>user\nWhat is 12 * 7?  Answer briefly.<|im_end|>\n"
    "<|im_start|>assistant\nI will compute it.<|action_start|><|plugin|>\n"
    '{"name": "calculator", "parameters": {"expression": "12*7"}}<|action_end|><|im_end|>\n'
    "<|im_start|>environment name=<|plugin|>\n84<|im_end|>\n"
    "<|im_start|>assistant\nCafé: 84 — 你好 ✓ 🙂<|im_end|>"
)
SETTINGS = [  # (add_dummy_prefix, remove_extra_whitespaces, normalization)
    (True, False, "identity"),
    (False, False, "identity"),
    (True, True, "nmt_nfkc"),
]


def sentencepiece_ids(processor, tokenizer, text: str) -> list[int]:
    """What the released (remote-code) tokenizer produces: BOS, then specials whole and text pieces by sentencepiece."""
    specials = sorted(tokenizer.all_special_tokens, key=len, reverse=True)
    ids = [tokenizer.bos_token_id]
    for part in re.split("(" + "|".join(map(re.escape, specials)) + ")", text):
        if part in specials:
            ids.append(tokenizer.convert_tokens_to_ids(part))
        elif part:
            ids.extend(processor.encode(part))
    return ids


@pytest.mark.parametrize(("dummy_prefix", "strip_spaces", "normalization"), SETTINGS)
def test_encodes_as_sentencepiece_with_chat_tokens_whole(tmp_path, dummy_prefix, strip_spaces, normalization):
    model_file = train_tiny_tokenizer(tmp_path, add_dummy_prefix=dummy_prefix, normalization=normalization,
                                      remove_extra_whitespaces=strip_spaces)
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    tokenizer = load_internlm2_tokenizer(tmp_path)
    for token in SPECIAL_TOKENS:  # the ids the sentencepiece model gave them
        assert tokenizer.convert_tokens_to_ids(token) == processor.piece_to_id(token)
    assert set(SPECIAL_TOKENS) <= set(tokenizer.all_special_tokens)
    assert tokenizer(CHAT)["input_ids"] == sentencepiece_ids(processor, tokenizer, CHAT)
    for text in ("Hello world", "  two  spaces ", "def add(a, b):\n    return a + b", "naïve 你好"):
        assert tokenizer(text)["input_ids"] == sentencepiece_ids(processor, tokenizer, text)


@pytest.mark.parametrize("dummy_prefix", [True, False])
def test_decode_round_trips_and_keeps_special_tokens(tmp_path, dummy_prefix):
    train_tiny_tokenizer(tmp_path, add_dummy_prefix=dummy_prefix)
    tokenizer = load_internlm2_tokenizer(tmp_path)
    ids = tokenizer(CHAT, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == CHAT
    assert tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False) == CHAT
    assert "<|" not in tokenizer.decode(ids, skip_special_tokens=True)
    with_bos = tokenizer(CHAT)["input_ids"]
    assert with_bos[0] == tokenizer.bos_token_id == 1 and tokenizer.decode(with_bos) == "<s>" + CHAT
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.decode([im_end]) == "<|im_end|>"
    assert tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"] == [im_end]


def test_released_placeholders_become_the_chat_tokens(tmp_path):
    """The released tokenizer.model holds [UNUSED_TOKEN_141..146] where tokenizer_config.json puts the chat tokens."""
    model_file = train_tiny_tokenizer(tmp_path, placeholders=True)
    processor = spm.SentencePieceProcessor(model_file=str(model_file))
    expected = {token: processor.piece_to_id(f"[UNUSED_TOKEN_{141 + i}]") for i, token in enumerate(SPECIAL_TOKENS)}
    tokenizer = load_internlm2_tokenizer(tmp_path)
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS} == expected
    ids = tokenizer(CHAT, add_special_tokens=False)["input_ids"]
    assert ids.count(expected["<|im_start|>"]) == CHAT.count("<|im_start|>")
    assert tokenizer.decode(ids) == CHAT
    # with no tokenizer_config.json the placeholders are still recognised
    (tmp_path / "tokenizer_config.json").unlink()
    bare = load_internlm2_tokenizer(tmp_path)
    assert {token: bare.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS} == expected


def test_released_ids_are_the_documented_ones():
    assert SPECIAL_TOKENS == {"<|plugin|>": 92538, "<|interpreter|>": 92539, "<|action_end|>": 92540,
                              "<|action_start|>": 92541, "<|im_end|>": 92542, "<|im_start|>": 92543}


def test_auto_tokenizer_picks_it_without_remote_code(tmp_path):
    import agentkit.models.internlm2.modeling  # noqa: F401  (registration)

    train_tiny_tokenizer(tmp_path)  # its tokenizer_config.json has the released auto_map
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "internlm2", "vocab_size": 400,
                                                      "hidden_size": 48, "num_attention_heads": 4}))
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert isinstance(tokenizer, InternLM2Tokenizer)
    assert tokenizer.pad_token == "</s>" and tokenizer.eos_token_id == 2
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt == "<s><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_save_pretrained_and_reload(tmp_path):
    train_tiny_tokenizer(tmp_path / "src", placeholders=True)
    tokenizer = load_internlm2_tokenizer(tmp_path / "src")
    tokenizer.save_pretrained(tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer.model").is_file()
    config = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "InternLM2Tokenizer" and "auto_map" not in config
    reloaded = load_internlm2_tokenizer(tmp_path / "out")
    assert reloaded(CHAT)["input_ids"] == tokenizer(CHAT)["input_ids"]
    assert reloaded.added_tokens_decoder.keys() == tokenizer.added_tokens_decoder.keys()
    # plain transformers reads the tokenizer.json it wrote, chat tokens included
    plain = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "out" / "tokenizer.json"))
    assert plain(CHAT, add_special_tokens=False)["input_ids"] == tokenizer(CHAT, add_special_tokens=False)["input_ids"]


def test_unusable_tokenizer_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no tokenizer.model"):
        load_internlm2_tokenizer(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ConfigError, match="not a sentencepiece model"):
        load_internlm2_tokenizer(tmp_path)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(TINY_CORPUS * 10), model_writer=buffer,
                                   vocab_size=100, model_type="unigram", minloglevel=2)
    (tmp_path / "tokenizer.model").write_bytes(buffer.getvalue())
    with pytest.raises(ConfigError, match="not a BPE sentencepiece model"):
        load_internlm2_tokenizer(tmp_path)
