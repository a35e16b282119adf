"""Serving: a continuous-batching engine over a KV cache and an OpenAI-compatible HTTP server.

* :class:`~agentkit.models.serving.engine.Engine` batches concurrent requests on one transformers
  model: new requests join at step boundaries, finished ones leave, every step decodes one token for
  each running request (and prefills joiners in the same forward pass).
* :class:`~agentkit.models.serving.engine.EngineModel` is a :class:`~agentkit.llm.CompletionModel`
  on an engine, for in-process use.
* :func:`~agentkit.models.serving.server.create_app` / ``agentkit serve`` put it behind
  ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``, ``/health`` and ``/metrics``.

Nothing heavy is imported here: the submodules load torch / fastapi when used.
"""

from __future__ import annotations

__all__ = ["Engine", "EngineConfig", "EngineModel", "SamplingParams", "QueueFull", "create_app", "serve"]


def __getattr__(name: str):
    if name in ("Engine", "EngineConfig", "EngineModel", "SamplingParams", "QueueFull"):
        from agentkit.models.serving import engine

        return getattr(engine, name)
    if name in ("create_app", "serve"):
        from agentkit.models.serving import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
