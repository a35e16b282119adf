"""LMDeploy backend (NVIDIA GPU only): a TurboMind ``pipeline`` in this process, or ``lmdeploy serve api_server``.

Two ways to run an InternLM2 (or any LMDeploy-supported) checkpoint on a GPU:

* ``lmdeploy:PATH`` — :class:`LMDeployModel`, a :class:`~agentkit.llm.CompletionModel` on
  ``lmdeploy.pipeline``: agentkit renders the prompt with its protocol (InternLM2 by default) and
  parses actions from the raw text, exactly as with ``hf:PATH``; LMDeploy batches the prompts.
* A separate server — :func:`api_server_command` gives the ``lmdeploy serve api_server`` command
  line with ``--tool-call-parser internlm``; agentkit then talks to it through the ``openai:`` backend
  (``openai:http://HOST:PORT/v1#MODEL``), with LMDeploy parsing tool calls.

LMDeploy has no CPU device (its wheels are CUDA-only), so on a machine without an NVIDIA GPU both
paths stop with a :class:`~agentkit.errors.ConfigError` that names the alternatives.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

from agentkit.errors import ConfigError
from agentkit.llm import Completion, CompletionModel, GenerationConfig
from agentkit.protocols.base import Protocol

__all__ = ["LMDeployModel", "api_server_command", "gpu_available", "require_gpu"]

#: Where to go when LMDeploy cannot run here.
_ALTERNATIVES = ("use 'embedded' or 'hf:PATH' on the CPU (served with continuous batching by 'agentkit serve'), "
                 "or run 'lmdeploy serve api_server PATH --tool-call-parser internlm' on a GPU machine and "
                 "point agentkit at it with 'openai:http://HOST:23333/v1#MODEL'")


def gpu_available() -> bool:
    """Whether an NVIDIA GPU is usable here (torch's view when torch is installed, else ``nvidia-smi``)."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        return bool(torch.cuda.is_available())
    return shutil.which("nvidia-smi") is not None


def require_gpu() -> None:
    """Raise a :class:`ConfigError` saying what to do instead when LMDeploy cannot run on this machine."""
    if not gpu_available():
        raise ConfigError(f"LMDeploy runs only on an NVIDIA GPU with CUDA and this machine has none: {_ALTERNATIVES}")
    if importlib.util.find_spec("lmdeploy") is None:
        raise ConfigError("LMDeploy is not installed: pip install 'agentkit[lmdeploy]' (a CUDA wheel), "
                          f"or {_ALTERNATIVES}")


def api_server_command(path: str, *, port: int = 23333, model_name: str | None = None,
                       tp: int = 1) -> list[str]:
    """The command line that serves ``path`` with LMDeploy's OpenAI-compatible server and InternLM tool calls."""
    command = ["lmdeploy", "serve", "api_server", path, "--server-port", str(port), "--tp", str(tp),
               "--tool-call-parser", "internlm"]
    if model_name:
        command += ["--model-name", model_name]
    return command


def generation_kwargs(config: GenerationConfig) -> dict[str, Any]:
    """LMDeploy ``GenerationConfig`` arguments for ours. Special tokens stay in the text: the protocol reads
    ``<|action_start|>`` and friends, so they must not be skipped."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": config.max_new_tokens,
        "top_p": config.top_p,
        "stop_words": list(config.stop),
        "skip_special_tokens": False,
    }
    if config.temperature == 0:
        kwargs.update(do_sample=False, top_k=1, temperature=1.0)
    else:
        kwargs.update(do_sample=True, temperature=config.temperature)
    if config.seed is not None:
        kwargs["random_seed"] = config.seed
    return kwargs


def cut_at_stop(text: str, stops: list[str]) -> str:
    """LMDeploy may return the stop word itself; our contract is that it is not returned."""
    cuts = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return text[:min(cuts)] if cuts else text


class LMDeployModel(CompletionModel):
    """A completion model on an in-process LMDeploy TurboMind pipeline (GPU)."""

    def __init__(self, pipeline: Any, protocol: Protocol | None = None, *, model_name: str = "lmdeploy"):
        super().__init__(protocol)
        self.pipeline = pipeline
        self.model_name = model_name

    @classmethod
    def from_pretrained(cls, path: str, *, protocol: Protocol | None = None, tp: int = 1,
                        session_len: int | None = None, cache_max_entry_count: float = 0.8) -> LMDeployModel:
        """Load ``path`` (a HF checkpoint directory or a hub id LMDeploy can read) into a TurboMind pipeline."""
        require_gpu()
        local = Path(path).expanduser()
        looks_like_hub_id = path.count("/") == 1 and not path.startswith((".", "/", "~"))
        if not local.exists() and not looks_like_hub_id:
            raise ConfigError(f"model directory {path!r} does not exist: pass a checkpoint directory, "
                              "e.g. lmdeploy:/models/internlm2-chat-7b")
        import lmdeploy

        backend = lmdeploy.TurbomindEngineConfig(tp=tp, session_len=session_len,
                                                 cache_max_entry_count=cache_max_entry_count)
        pipeline = lmdeploy.pipeline(path, backend_config=backend)
        return cls(pipeline, protocol, model_name=f"lmdeploy:{path}")

    def complete(self, prompts: list[str], config: GenerationConfig) -> list[Completion]:
        import lmdeploy

        gen_config = lmdeploy.GenerationConfig(**generation_kwargs(config))
        start = time.perf_counter()
        # do_preprocess=False: the prompt is already rendered by our protocol, no chat template on top
        responses = self.pipeline(prompts, gen_config=gen_config, do_preprocess=False)
        latency = time.perf_counter() - start
        return [Completion(text=cut_at_stop(r.text, config.stop), prompt_tokens=r.input_token_len,
                           completion_tokens=r.generate_token_len, latency_s=latency,
                           meta={"finish_reason": r.finish_reason}) for r in responses]
