"""InternLM2's configuration for transformers 5, read and written with the released ``config.json`` field names.

The model runs on transformers' Llama modules, so the config also answers Llama's attribute names
(``attention_bias`` reads ``bias``; ``rope_parameters`` holds ``rope_theta`` and ``rope_scaling``). What it
writes back is what the released checkpoints carry: ``bias``, ``rope_theta`` and
``rope_scaling={"type": ..., "factor": ...}``, so a saved directory looks like a published one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig
from transformers.modeling_rope_utils import RopeParameters

from agentkit.errors import ConfigError

__all__ = ["ROPE_SCALING_TYPES", "InternLM2Config", "check_rope_scaling", "rope_parameters_from"]

#: Rope scaling types InternLM2's released modeling code implements (its config rejects any other).
ROPE_SCALING_TYPES = ("dynamic", "linear")

#: Keys of released ``config.json`` files that only mean something to the remote code: ``auto_map`` points at
#: Python files we do not run, and ``attn_implementation: "eager"`` chose between the remote code's own
#: kernels. Dropping it lets transformers pick its default (SDPA), which computes the same attention.
_REMOTE_CODE_KEYS = ("auto_map", "attn_implementation")


def rope_parameters_from(rope_scaling: Any, rope_theta: float) -> dict[str, Any]:
    """transformers' ``rope_parameters`` from InternLM2's ``rope_scaling`` dict (or ``None``) and ``rope_theta``.

    A type InternLM2 does not use is kept as given: the config still loads (transformers' AutoTokenizer
    reads it too, and falls over on a config that raises), and the model refuses it, see
    :func:`check_rope_scaling`.
    """
    if rope_scaling is None:
        return {"rope_type": "default", "rope_theta": float(rope_theta)}
    if not isinstance(rope_scaling, dict):
        raise ConfigError(f"rope_scaling must be a dict like {{'type': 'dynamic', 'factor': 2.0}} or null, "
                          f"got {rope_scaling!r}")
    kind = rope_scaling.get("type", rope_scaling.get("rope_type"))
    if kind in (None, "default"):
        return {"rope_type": "default", "rope_theta": float(rope_theta)}
    params = {k: v for k, v in rope_scaling.items() if k not in ("type", "rope_type", "rope_theta")}
    factor = params.get("factor")
    if isinstance(factor, int) and not isinstance(factor, bool):
        params["factor"] = float(factor)
    return {"rope_type": kind, **params, "rope_theta": float(rope_theta)}


def check_rope_scaling(rope_parameters: dict[str, Any]) -> None:
    """Refuse, with a :class:`ConfigError`, rope scaling InternLM2's modeling code does not implement."""
    kind = rope_parameters.get("rope_type", "default")
    if kind == "default":
        return
    if kind not in ROPE_SCALING_TYPES:
        raise ConfigError(f"rope_scaling type {kind!r} is not one InternLM2 uses: set it to one of "
                          f"{', '.join(ROPE_SCALING_TYPES)} (released chat models use 'dynamic'), or null for none")
    factor = rope_parameters.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1.0:
        raise ConfigError(f"rope_scaling factor must be a number >= 1 (e.g. 2.0), got {factor!r}")


@strict
class InternLM2Config(PreTrainedConfig):
    """Configuration of an InternLM2 / InternLM2-Chat model; defaults are those of the released config class."""

    model_type = "internlm2"
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["past_key_values"]
    attribute_map: ClassVar[dict[str, str]] = {"attention_bias": "bias"}
    # The model is Llama's, so Llama's parallelism plans apply to it unchanged.
    base_model_tp_plan: ClassVar[dict[str, Any]] = {
        "layers.*.self_attn.q_proj": "colwise",
        "layers.*.self_attn.k_proj": "colwise",
        "layers.*.self_attn.v_proj": "colwise",
        "layers.*.self_attn.o_proj": "rowwise",
        "layers.*.mlp.gate_proj": "colwise",
        "layers.*.mlp.up_proj": "colwise",
        "layers.*.mlp.down_proj": "rowwise",
    }
    base_model_pp_plan: ClassVar[dict[str, Any]] = {
        "embed_tokens": (["input_ids"], ["inputs_embeds"]),
        "layers": (["hidden_states", "attention_mask"], ["hidden_states"]),
        "norm": (["hidden_states"], ["hidden_states"]),
    }

    vocab_size: int = 103168
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    num_key_value_heads: int | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 2048
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    use_cache: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    tie_word_embeddings: bool = False
    #: bias on ``wqkv`` and ``wo`` (Llama's ``attention_bias``); the MLP never has one
    bias: bool = True
    rope_parameters: RopeParameters | dict | None = None
    attention_dropout: int | float = 0.0
    mlp_bias: bool = False
    head_dim: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        for key in _REMOTE_CODE_KEYS:
            kwargs.pop(key, None)
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.num_attention_heads < 1 or self.hidden_size % self.num_attention_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                              f"{self.num_attention_heads}: fix config.json")
        if self.num_key_value_heads < 1 or self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                              f"num_key_value_heads {self.num_key_value_heads}: fix config.json")
        derived = self.hidden_size // self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = derived
        elif self.head_dim != derived:  # the packed wqkv layout and the released code assume it
            raise ConfigError(f"head_dim {self.head_dim} differs from hidden_size / num_attention_heads = {derived}, "
                              "which InternLM2 requires: remove head_dim from config.json")
        if self.mlp_bias:
            raise ConfigError("InternLM2's feed-forward layers have no bias: set mlp_bias to false")
        rope_scaling = kwargs.pop("rope_scaling", None)
        rope_theta = kwargs.pop("rope_theta", None)
        if rope_scaling is not None or rope_theta is not None or self.rope_parameters is None:
            self.rope_parameters = rope_parameters_from(rope_scaling, 10000.0 if rope_theta is None else rope_theta)
        else:
            given = dict(self.rope_parameters)
            self.rope_parameters = rope_parameters_from(given, given.get("rope_theta", 10000.0))
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs: Any) -> InternLM2Config:
        """Read a released ``config.json``; its remote-code-only keys are dropped (options passed here still apply)."""
        config_dict = {k: v for k, v in config_dict.items() if k not in _REMOTE_CODE_KEYS}
        return super().from_dict(config_dict, **kwargs)

    @property
    def rope_theta(self) -> float:
        return float(self.rope_parameters["rope_theta"])

    def check_supported(self) -> None:
        """Raise a :class:`ConfigError` if the model cannot be built as InternLM2 (an unknown rope scaling)."""
        check_rope_scaling(self.rope_parameters or {})

    def released_rope_scaling(self) -> dict[str, Any] | None:
        """``rope_scaling`` as released configs write it: ``{"type": "dynamic", "factor": 2.0}`` or ``None``."""
        params = dict(self.rope_parameters or {})
        kind = params.pop("rope_type", "default")
        params.pop("rope_theta", None)
        return None if kind == "default" else {"type": kind, **params}

    def to_dict(self) -> dict[str, Any]:
        """The released field names: ``rope_theta`` and ``rope_scaling`` instead of ``rope_parameters``."""
        output = super().to_dict()
        output.pop("rope_parameters", None)
        output["rope_theta"] = self.rope_theta
        output["rope_scaling"] = self.released_rope_scaling()
        # Fields the released format derives or lacks are written only when they say something.
        if output.get("head_dim") == self.hidden_size // self.num_attention_heads:
            output.pop("head_dim")
        if not output.get("mlp_bias"):
            output.pop("mlp_bias", None)
        if not output.get("attention_dropout"):
            output.pop("attention_dropout", None)
        return output
