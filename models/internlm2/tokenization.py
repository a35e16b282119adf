"""InternLM2's tokenizer from its sentencepiece ``tokenizer.model``, without the remote code.

Released directories ship ``tokenizer.model`` (a BPE sentencepiece model with byte fallback) and a
``tokenizer_config.json`` whose ``auto_map`` points at ``tokenization_internlm2.py``. Here the model is
rebuilt as a ``tokenizers`` pipeline that encodes as that remote tokenizer does: the text is split on the
special tokens, each piece is normalized the way the sentencepiece model says (its precompiled
normalization, extra-whitespace removal and dummy ``▁`` prefix, as flagged in the model) and BPE-merged in
the order of the piece scores. The chat tokens keep their ids (92538–92543 in the released vocabulary,
where ``tokenizer.model`` holds ``[UNUSED_TOKEN_141]``…``[UNUSED_TOKEN_146]`` and ``tokenizer_config.json``
renames them) and are special: they are never split, and ``decode`` keeps them unless asked to skip
special tokens.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers
from tokenizers.models import BPE
from transformers.tokenization_utils_tokenizers import TokenizersBackend

from agentkit.errors import ConfigError

__all__ = ["SPECIAL_TOKENS", "InternLM2Tokenizer", "load_internlm2_tokenizer"]

#: InternLM2's chat and tool-call tokens with their ids in the released 92,544-piece vocabulary.
SPECIAL_TOKENS: dict[str, int] = {
    "<|plugin|>": 92538,
    "<|interpreter|>": 92539,
    "<|action_end|>": 92540,
    "<|action_start|>": 92541,
    "<|im_end|>": 92542,
    "<|im_start|>": 92543,
}
#: What the released ``tokenizer.model`` holds at those ids before ``tokenizer_config.json`` renames them.
PLACEHOLDERS: dict[str, str] = {f"[UNUSED_TOKEN_{141 + i}]": name for i, name in enumerate(SPECIAL_TOKENS)}

MODEL_FILE = "tokenizer.model"
CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"

# sentencepiece piece types (sentencepiece_model.proto)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED = 1, 2, 3, 4
_BPE = 2

#: tokenizer_config.json options this loader honours; the rest (auto_map, tokenizer_class, sp_model_kwargs,
#: decode_with_prefix_space ...) belongs to the remote code.
_CONFIG_OPTIONS = (
    "bos_token", "eos_token", "unk_token", "pad_token", "add_bos_token", "add_eos_token",
    "clean_up_tokenization_spaces", "model_max_length", "padding_side", "truncation_side", "chat_template",
    "extra_special_tokens", "additional_special_tokens",
)
#: from_pretrained arguments about where and how to fetch files, which a local directory does not need.
_LOADING_ARGS = (
    "cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies",
    "trust_remote_code", "code_revision", "use_fast", "gguf_file", "_from_auto", "_from_pipeline", "_commit_hash",
    "user_agent", "resume_download", "config",
)


def _token_text(value: Any) -> Any:
    """A token given as a string, an AddedToken or a serialized one (a dict, as in tokenizer_config.json)."""
    if isinstance(value, dict):
        return value.get("content")
    return getattr(value, "content", value)


def _load_proto(model_file: str | os.PathLike[str]) -> Any:
    try:
        from transformers.convert_slow_tokenizer import import_protobuf

        proto = import_protobuf().ModelProto()
    except ImportError as exc:
        raise ConfigError("reading InternLM2's tokenizer.model needs sentencepiece (or protobuf): "
                          "pip install sentencepiece") from exc
    try:
        proto.ParseFromString(Path(model_file).read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read {str(model_file)!r}: {exc.strerror or exc}") from exc
    except Exception as exc:  # protobuf's DecodeError
        raise ConfigError(f"{str(model_file)!r} is not a sentencepiece model: {exc}") from exc
    if not proto.pieces:
        raise ConfigError(f"{str(model_file)!r} is not a sentencepiece model (it has no pieces)")
    return proto


def _chat_token_ids(names: dict[int, str]) -> dict[str, int]:
    """Where each chat token lives (``names``: id → token): a piece of its own (or named so by
    tokenizer_config.json), else the ``[UNUSED_TOKEN_*]`` placeholder the released model keeps for it."""
    by_name = {name: i for i, name in names.items()}
    found: dict[str, int] = {}
    for placeholder, token in PLACEHOLDERS.items():
        if token in by_name:
            found[token] = by_name[token]
        elif placeholder in by_name:
            found[token] = by_name[placeholder]
    return found


def build_backend(model_file: str | os.PathLike[str],
                  added_tokens_decoder: dict[Any, Any] | None = None) -> tuple[Tokenizer, list[str]]:
    """The ``tokenizers`` pipeline for an InternLM2 ``tokenizer.model``, and the chat tokens it has.

    Encoding matches the remote tokenizer: text is split on special tokens first, so with the model's
    ``add_dummy_prefix`` flag set every piece between two special tokens gets its own ``▁`` prefix.

    ``added_tokens_decoder`` (id → token, as in tokenizer_config.json) renames the pieces at those ids, as
    the released tokenizer does for its chat tokens; ids past the sentencepiece vocabulary extend it.
    """
    proto = _load_proto(model_file)
    if proto.trainer_spec.model_type != _BPE:
        raise ConfigError(f"{str(model_file)!r} is not a BPE sentencepiece model, which InternLM2's tokenizer is "
                          "(this one is of another kind): point at the checkpoint's own tokenizer.model")
    pieces = list(proto.pieces)
    names = {i: p.piece for i, p in enumerate(pieces)}
    flags: dict[int, dict[str, Any]] = {}
    for key, value in (added_tokens_decoder or {}).items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"added_tokens_decoder in {CONFIG_FILE} has a non-numeric id {key!r}") from None
        content = _token_text(value)
        if not isinstance(content, str) or not content:
            raise ConfigError(f"added_tokens_decoder entry {key} in {CONFIG_FILE} has no token text")
        names[index] = content
        flags[index] = value if isinstance(value, dict) else {
            key: getattr(value, key) for key in ("special", "lstrip", "rstrip", "single_word", "normalized")
            if hasattr(value, key)}
    extra = sorted(i for i in names if i >= len(pieces))
    if extra and extra != list(range(len(pieces), len(pieces) + len(extra))):
        raise ConfigError(f"{CONFIG_FILE} adds tokens at ids {extra}, which leave gaps after the "
                          f"{len(pieces)} pieces of {MODEL_FILE}: ids must continue the vocabulary")
    chat = _chat_token_ids(names)
    for token, index in chat.items():  # a placeholder piece becomes the chat token it stands for
        names[index] = token
    vocab: dict[str, int] = {}
    for index in sorted(names):
        if names[index] in vocab:
            raise ConfigError(f"token {names[index]!r} is at ids {vocab[names[index]]} and {index} in "
                              f"{MODEL_FILE} / {CONFIG_FILE}: each token needs one id")
        vocab[names[index]] = index

    def kind(index: int) -> int:
        return pieces[index].type if index < len(pieces) else _CONTROL

    # Merge order: sentencepiece merges the adjacent pair whose result has the highest score first.
    from transformers.tokenization_utils_base import generate_merges

    mergeable = {names[i]: pieces[i].score for i in range(len(pieces)) if kind(i) == _NORMAL}
    skip = {names[i] for i in names if kind(i) != _NORMAL}
    merges = generate_merges(vocab, vocab_scores=mergeable, skip_tokens=skip)
    unk = names[proto.trainer_spec.unk_id] if 0 <= proto.trainer_spec.unk_id < len(pieces) else None
    tokenizer = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True,
                              byte_fallback=proto.trainer_spec.byte_fallback, dropout=None))

    spec = proto.normalizer_spec
    steps: list[Any] = []
    if spec.precompiled_charsmap:
        steps.append(normalizers.Precompiled(spec.precompiled_charsmap))
    if spec.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Replace(Regex("^ | $"), "")]
    if spec.add_dummy_prefix:
        steps.append(normalizers.Prepend("▁"))
    steps.append(normalizers.Replace(" ", "▁"))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = None
    tail = [decoders.Strip(content=" ", left=1, right=0)] if spec.add_dummy_prefix else []
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), *tail])

    # Control pieces (<s>, </s>), <unk>, the chat tokens and whatever tokenizer_config.json declares are special
    # (never split, skippable on decode); other user-defined pieces are kept whole, as sentencepiece does.
    special, plain = [], []
    for index in sorted(names):
        declared = flags.get(index)
        is_special = (kind(index) in (_CONTROL, _UNKNOWN) or names[index] in chat
                      or (declared is not None and declared.get("special", True)))
        if is_special:
            special.append(AddedToken(names[index], special=True, normalized=False,
                                      lstrip=bool((declared or {}).get("lstrip", False)),
                                      rstrip=bool((declared or {}).get("rstrip", False)),
                                      single_word=bool((declared or {}).get("single_word", False))))
        elif kind(index) == _USER_DEFINED or declared is not None:
            plain.append(AddedToken(names[index], special=False,
                                    normalized=bool((declared or {}).get("normalized", True))))
    tokenizer.add_special_tokens(special)
    tokenizer.add_tokens(plain)
    return tokenizer, list(chat)


class InternLM2Tokenizer(TokenizersBackend):
    """InternLM2's tokenizer (``tokenizer.model`` + ``tokenizer_config.json``) on the ``tokenizers`` library.

    ``from_pretrained`` reads a local directory; ``AutoTokenizer`` picks this class for InternLM2 checkpoints
    once :mod:`agentkit.models.internlm2.modeling` is imported, the released ``auto_map`` notwithstanding.
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"vocab_file": MODEL_FILE}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]
    padding_side = "left"
    #: set when the sentencepiece model adds a dummy ``▁`` prefix to every piece of text it encodes
    dummy_prefix = False

    def __init__(self, vocab_file: str | os.PathLike[str] | None = None, *, tokenizer_object: Tokenizer | None = None,
                 added_tokens_decoder: dict[Any, Any] | None = None, unk_token: Any = "<unk>", bos_token: Any = "<s>",
                 eos_token: Any = "</s>", pad_token: Any = "</s>", add_bos_token: bool = True,
                 add_eos_token: bool = False, clean_up_tokenization_spaces: bool = False, **kwargs: Any):
        chat: list[str] = []
        if tokenizer_object is None:
            if vocab_file is None:
                raise ConfigError("InternLM2Tokenizer needs the sentencepiece model: pass vocab_file='tokenizer.model'")
            tokenizer_object, chat = build_backend(vocab_file, added_tokens_decoder)
        given = kwargs.pop("extra_special_tokens", None)
        legacy = kwargs.pop("additional_special_tokens", None)
        extra = [_token_text(t) for t in (given or legacy or [])]
        kwargs["extra_special_tokens"] = extra + [t for t in chat if t not in extra]
        super().__init__(
            tokenizer_object=tokenizer_object,
            vocab_file=None if vocab_file is None else str(vocab_file),
            unk_token=_token_text(unk_token), bos_token=_token_text(bos_token), eos_token=_token_text(eos_token),
            pad_token=_token_text(pad_token), add_bos_token=add_bos_token, add_eos_token=add_eos_token,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs,
        )
        self.dummy_prefix = "Prepend" in repr(self._tokenizer.normalizer)

    def _decode(self, token_ids: int | list[int], skip_special_tokens: bool = False,
                clean_up_tokenization_spaces: bool | None = None, **kwargs: Any) -> str:
        """The inverse of encoding: with a dummy prefix, each run of text between special tokens drops the
        ``▁`` its encoding added (as sentencepiece's own decode does), so ``decode(encode(text)) == text``
        and the chat tokens come back exactly where they were, with no space inserted around them."""
        if isinstance(token_ids, int):
            token_ids = [token_ids]
        # (clean_up_tokenization_spaces is a WordPiece-era step; transformers skips it for BPE tokenizers too)
        if not self.dummy_prefix:
            return super()._decode(token_ids, skip_special_tokens=skip_special_tokens,
                                   clean_up_tokenization_spaces=clean_up_tokenization_spaces, **kwargs)
        specials = {i: t.content for i, t in self.added_tokens_decoder.items() if t.special}
        parts: list[str] = []
        run: list[int] = []
        for token in token_ids:
            if token in specials:
                if run:
                    parts.append(self._tokenizer.decode(run, skip_special_tokens=False))
                    run = []
                if not skip_special_tokens:
                    parts.append(specials[token])
            else:
                run.append(token)
        if run:
            parts.append(self._tokenizer.decode(run, skip_special_tokens=False))
        return "".join(parts)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *init_inputs: Any,
                        **kwargs: Any) -> InternLM2Tokenizer:
        """Load from a local directory holding ``tokenizer.model`` (and usually ``tokenizer_config.json``).

        Options from tokenizer_config.json apply unless overridden by keyword arguments.
        """
        directory = Path(pretrained_model_name_or_path).expanduser()
        model_file = directory / MODEL_FILE
        if not model_file.is_file():
            raise ConfigError(f"no {MODEL_FILE} in {str(directory)!r}: InternLM2's tokenizer is the sentencepiece "
                              "model shipped with the checkpoint; copy it next to config.json")
        config: dict[str, Any] = {}
        if (directory / CONFIG_FILE).is_file():
            try:
                config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigError(f"{str(directory / CONFIG_FILE)!r} is not valid JSON: {exc}") from exc
        options = {key: config[key] for key in _CONFIG_OPTIONS if key in config}
        if (directory / CHAT_TEMPLATE_FILE).is_file():
            options["chat_template"] = (directory / CHAT_TEMPLATE_FILE).read_text(encoding="utf-8")
        for key in _LOADING_ARGS:
            kwargs.pop(key, None)
        options.update(kwargs)
        options.setdefault("added_tokens_decoder", config.get("added_tokens_decoder"))
        options.setdefault("name_or_path", str(directory))
        return cls(str(model_file), *init_inputs, **options)

    def _save_pretrained(self, save_directory: str | os.PathLike[str], file_names: tuple[str, ...],
                         legacy_format: bool | None = None, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Also copy ``tokenizer.model`` and list the added tokens in tokenizer_config.json: those two are
        what :meth:`from_pretrained` reads back."""
        file_names = super()._save_pretrained(save_directory, file_names, legacy_format, filename_prefix)
        config_file = Path(save_directory) / ((filename_prefix + "-" if filename_prefix else "") + CONFIG_FILE)
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
            config["added_tokens_decoder"] = serialize_added_tokens(self.added_tokens_decoder)
            config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        source = getattr(self, "vocab_file", None)
        target = Path(save_directory) / ((filename_prefix + "-" if filename_prefix else "") + MODEL_FILE)
        if source and Path(source).is_file() and Path(source).resolve() != target.resolve():
            shutil.copyfile(source, target)
        return (*file_names, str(target)) if target.is_file() else file_names


def serialize_added_tokens(added: dict[int, Any]) -> dict[str, dict[str, Any]]:
    """``added_tokens_decoder`` as tokenizer_config.json writes it (id → token fields)."""
    return {str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                     "single_word": t.single_word, "special": t.special} for i, t in sorted(added.items())}


def load_internlm2_tokenizer(path: str | os.PathLike[str], **kwargs: Any) -> InternLM2Tokenizer:
    """InternLM2's tokenizer from a checkpoint directory, with the chat tokens special and at their ids."""
    return InternLM2Tokenizer.from_pretrained(path, **kwargs)
