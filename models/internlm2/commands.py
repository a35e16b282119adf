"""``agentkit convert``: rewrite a checkpoint between InternLM2's released layout and Llama's, exactly.

Only typer is imported here; the conversion code (torch, safetensors) loads when a command runs.
"""

from __future__ import annotations

import typer

SHARD_HELP = "largest output shard, e.g. 5GB or 500MB"


def register(app: typer.Typer) -> None:
    """Add the ``convert`` command group to the agentkit CLI."""
    convert = typer.Typer(
        name="convert",
        help="Convert checkpoint directories between layouts (tensors are permuted, never cast).",
        no_args_is_help=True,
        rich_markup_mode=None,
    )

    @convert.command("internlm2-to-llama")
    def internlm2_to_llama(
        src: str = typer.Argument(..., help="released InternLM2 checkpoint directory (config.json + weights)"),
        dst: str = typer.Argument(..., help="new directory for the Llama-layout copy"),
        max_shard_size: str = typer.Option("5GB", "--max-shard-size", help=SHARD_HELP),
    ) -> None:
        """Split wqkv into q/k/v and rename tensors: the result loads as LlamaForCausalLM."""
        from .convert import internlm2_to_llama as run

        typer.echo(f"wrote {run(src, dst, max_shard_size=max_shard_size)}")

    @convert.command("llama-to-internlm2")
    def llama_to_internlm2(
        src: str = typer.Argument(..., help="Llama checkpoint directory (config.json + weights)"),
        dst: str = typer.Argument(..., help="new directory for the InternLM2-layout copy"),
        max_shard_size: str = typer.Option("5GB", "--max-shard-size", help=SHARD_HELP),
    ) -> None:
        """Pack q/k/v into wqkv and rename tensors: the released InternLM2 layout."""
        from .convert import llama_to_internlm2 as run

        typer.echo(f"wrote {run(src, dst, max_shard_size=max_shard_size)}")

    app.add_typer(convert, name="convert")
