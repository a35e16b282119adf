"""Text protocols: how tool calls look in a completion model's prompt and output."""

from __future__ import annotations

from agentkit.errors import ConfigError
from agentkit.protocols.base import Protocol

__all__ = ["Protocol", "get_protocol", "PROTOCOLS"]

#: Protocol names accepted by :func:`get_protocol` and the CLI.
PROTOCOLS = ("internlm2", "react", "openai_tools", "autogpt")


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (one of :data:`PROTOCOLS`)."""
    if name == "internlm2":
        from agentkit.protocols.internlm2 import InternLM2Protocol

        return InternLM2Protocol()
    if name == "react":
        from agentkit.protocols.react import ReActProtocol

        return ReActProtocol()
    if name == "openai_tools":
        from agentkit.protocols.openai_tools import OpenAIToolsProtocol

        return OpenAIToolsProtocol()
    if name == "autogpt":
        from agentkit.protocols.autogpt import AutoGPTProtocol

        return AutoGPTProtocol()
    raise ConfigError(f"unknown protocol {name!r}: use one of {', '.join(PROTOCOLS)}")
