"""``agentkit serve``: an OpenAI-compatible server for a local model.

Only typer is imported here; torch, transformers and uvicorn load when the command runs.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the agentkit CLI."""

    @app.command("serve")
    def serve_command(
        model: str = typer.Option("embedded", "--model", "-m",
                                  help="embedded or hf:PATH (continuous batching); scripted:FILE or openai:URL#MODEL "
                                       "are served as they are"),
        port: int = typer.Option(8000, "--port", "-p", help="TCP port"),
        host: str = typer.Option("127.0.0.1", "--host", help="address to bind; 0.0.0.0 for every interface"),
        api_key: str | None = typer.Option(None, "--api-key", envvar="AGENTKIT_API_KEY",
                                              help="require 'Authorization: Bearer KEY' on /v1/* "
                                                   "(default: $AGENTKIT_API_KEY, else no key)"),
        max_batch_size: int = typer.Option(32, "--max-batch-size", help="requests decoded together"),
        max_queue: int = typer.Option(1024, "--max-queue", help="requests waiting beyond the batch; more get 503 "
                                      "(a waiting request holds only its prompt ids)"),
        max_new_tokens: int = typer.Option(512, "--max-new-tokens", help="default max_tokens of a request"),
        dtype: str = typer.Option("auto", "--dtype",
                                  help="auto (bf16 where it measures faster: GPUs, AMX CPUs, some others; else fp32), "
                                       "float32, bfloat16"),
        protocol: str | None = typer.Option(None, "--protocol",
                                               help="tool-call format: internlm2 (default), openai_tools, react, autogpt"),
        name: str | None = typer.Option(None, "--name", help="model name clients send (default: from --model)"),
        threads: int | None = typer.Option(None, "--threads", help="torch threads (default: one per core)"),
        prefix_cache_tokens: int = typer.Option(4096, "--prefix-cache-tokens",
                                                help="prompt-prefix tokens kept for reuse across requests (0: off)"),
        join_window_ms: float = typer.Option(10.0, "--join-window-ms", min=0,
                                             help="an idle server waits while a burst keeps arriving, each request "
                                                  "within this of the last, to prefill it together (0: off)"),
    ) -> None:
        """Serve a model at /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics."""
        from agentkit.models.serving.engine import EngineConfig
        from agentkit.models.serving.server import serve

        config = EngineConfig(max_batch_size=max_batch_size, max_queue=max_queue, max_new_tokens=max_new_tokens,
                              dtype=dtype, threads=threads, prefix_cache_tokens=prefix_cache_tokens,
                              join_window_s=join_window_ms / 1000)
        serve(model, host=host, port=port, api_key=api_key, config=config, model_name=name, protocol=protocol,
              ready=lambda url: typer.echo(f"agentkit: serving {name or model} at {url}", err=True))
