"""The message model: the only currency between agents, protocols, models and tools.

Roles follow InternLM2's chat format: ``system``, ``user``, ``assistant`` and ``environment``
(the result of a tool call). OpenAI's ``tool`` role maps to ``environment`` on the way in
and back on the way out, so the same conversation can go to a completion model through a
protocol or to a chat API natively.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant", "environment"]
ToolKind = Literal["plugin", "interpreter"]

#: Name of the built-in code-interpreter tool; interpreter calls parsed from model text use it.
INTERPRETER_TOOL_NAME = "python_interpreter"


def new_call_id() -> str:
    """A short unique id for a tool call (OpenAI style)."""
    return "call_" + uuid.uuid4().hex[:24]


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ImagePart(BaseModel):
    """An image by reference: a URL (http, file or data URL) or a local path."""

    type: Literal["image"] = "image"
    url: str
    detail: str | None = None


class AudioPart(BaseModel):
    type: Literal["audio"] = "audio"
    url: str
    format: str | None = None


class FilePart(BaseModel):
    type: Literal["file"] = "file"
    path: str
    mime_type: str | None = None
    name: str | None = None


ContentPart = Annotated[Union[TextPart, ImagePart, AudioPart, FilePart], Field(discriminator="type")]


class Usage(BaseModel):
    """Token and latency accounting for one model call (or a sum of calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            latency_s=self.latency_s + other.latency_s,
        )


class ToolCall(BaseModel):
    """One action of the assistant. For ``kind="interpreter"`` the code is ``arguments["code"]``."""

    id: str = Field(default_factory=new_call_id)
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    kind: ToolKind = "plugin"

    @property
    def code(self) -> str | None:
        return self.arguments.get("code") if self.kind == "interpreter" else None


class Message(BaseModel):
    """One turn of a conversation.

    ``meta`` carries what is not part of the prompt: ``parse_error`` (set by a protocol when model
    output could not be understood), ``tool_name`` on environment messages, ``raw`` model text.
    """

    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str | list[ContentPart] = ""
    name: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    usage: Usage | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @field_validator("content", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return "" if value is None else value

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def system(cls, content: str) -> Message:
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str | list[ContentPart]) -> Message:
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: list[ToolCall] | None = None, **kw: Any) -> Message:
        return cls(role="assistant", content=content, tool_calls=tool_calls or [], **kw)

    @classmethod
    def tool_result(cls, call: ToolCall, content: str | list[ContentPart], **meta: Any) -> Message:
        """The ``environment`` message that answers ``call``."""
        return cls(
            role="environment",
            name=call.kind,
            tool_call_id=call.id,
            content=content,
            meta={"tool_name": call.name, **meta},
        )

    # -- views --------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The text of the content; non-text parts are shown as short placeholders."""
        if isinstance(self.content, str):
            return self.content
        out = []
        for part in self.content:
            if isinstance(part, TextPart):
                out.append(part.text)
            elif isinstance(part, ImagePart):
                out.append(f"[image: {part.url if not part.url.startswith('data:') else 'inline'}]")
            elif isinstance(part, AudioPart):
                out.append(f"[audio: {part.url if not part.url.startswith('data:') else 'inline'}]")
            else:
                out.append(f"[file: {part.path}]")
        return "\n".join(out)

    @property
    def parse_error(self) -> str | None:
        return self.meta.get("parse_error")

    # -- OpenAI chat dicts -----------------------------------------------------------------------
    def to_openai(self) -> dict[str, Any]:
        """This message as an OpenAI chat-completions message dict (``environment`` → ``tool``)."""
        if self.role == "environment":
            if not self.tool_call_id:  # feedback not tied to a call (e.g. a parse error): a chat API wants a user turn
                return {"role": "user", "content": self.text}
            return {"role": "tool", "tool_call_id": self.tool_call_id, "content": self.text}
        out = {"role": self.role, "content": _content_to_openai(self.content)}
        if self.name and self.role != "environment":
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": json.dumps(c.arguments, ensure_ascii=False)},
                }
                for c in self.tool_calls
            ]
            if out["content"] == "":
                out["content"] = None
        return out

    @classmethod
    def from_openai(cls, data: dict[str, Any], *, interpreter_names: tuple[str, ...] = (INTERPRETER_TOOL_NAME,)) -> Message:
        """Build a message from an OpenAI chat dict. Raises ``ValueError`` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"an OpenAI message must be a dict, got {type(data).__name__}")
        role = data.get("role")
        if role in ("tool", "function"):
            tool_name = data.get("name")
            return cls(
                role="environment",
                name="interpreter" if tool_name in interpreter_names else "plugin",
                tool_call_id=data.get("tool_call_id"),
                content=_content_from_openai(data.get("content")),
                meta={"tool_name": tool_name} if tool_name else {},
            )
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant", "environment"):
            raise ValueError(
                f"unknown role {role!r}: use one of system, developer, user, assistant, tool"
            )
        calls = []
        raw_calls = data.get("tool_calls") or []
        if not isinstance(raw_calls, list):
            raise ValueError(f"'tool_calls' must be a list of call dicts, got {type(raw_calls).__name__}")
        for raw in raw_calls:
            fn = (raw.get("function") or {}) if isinstance(raw, dict) else None
            if not isinstance(fn, dict):
                raise ValueError(
                    "each tool call must look like {'id': ..., 'type': 'function', "
                    f"'function': {{'name': ..., 'arguments': '<JSON object>'}}}}, got {raw!r:.80}"
                )
            args = fn.get("arguments") or {}
            if isinstance(args, str):
                try:
                    args = json.loads(args) if args.strip() else {}
                except json.JSONDecodeError as exc:
                    raise ValueError(f"tool call {fn.get('name')!r} has arguments that are not JSON: {exc}") from exc
            if not isinstance(args, dict):
                raise ValueError(
                    f"tool call {fn.get('name')!r} has arguments that are not a JSON object: pass a dict or a JSON object string"
                )
            name = fn.get("name") or ""
            kind: ToolKind = "interpreter" if name in interpreter_names else "plugin"
            calls.append(ToolCall(id=raw.get("id") or new_call_id(), name=name, arguments=args, kind=kind))
        return cls(
            role=role,
            content=_content_from_openai(data.get("content")),
            name=data.get("name"),
            tool_calls=calls,
        )


def _content_to_openai(content: str | list[ContentPart]) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image_url: dict[str, Any] = {"url": _as_url(part.url)}
            if part.detail:
                image_url["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image_url})
        elif isinstance(part, AudioPart):
            parts.append({"type": "input_audio", "input_audio": {"data": part.url, "format": part.format or "wav"}})
        else:
            parts.append({"type": "file", "file": {"filename": part.name or part.path, "file_data": part.path}})
    return parts


def _content_from_openai(content: Any) -> str | list[ContentPart]:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise ValueError(f"message content must be a string or a list of parts, got {type(content).__name__}")
    parts: list[ContentPart] = []
    for raw in content:
        if not isinstance(raw, dict):
            raise ValueError(f"a content part must be a dict like {{'type': 'text', 'text': ...}}, got {raw!r:.80}")
        kind = raw.get("type")
        if kind == "text":
            parts.append(TextPart(text=raw.get("text", "")))
        elif kind == "image_url":
            image = raw.get("image_url") or {}
            url = image if isinstance(image, str) else image.get("url", "")
            parts.append(ImagePart(url=url, detail=None if isinstance(image, str) else image.get("detail")))
        elif kind == "input_audio":
            audio = raw.get("input_audio") or {}
            parts.append(AudioPart(url=audio.get("data", ""), format=audio.get("format")))
        elif kind == "file":
            file = raw.get("file") or {}
            parts.append(FilePart(path=file.get("file_data") or file.get("file_id", ""), name=file.get("filename")))
        else:
            raise ValueError(f"unsupported content part type {kind!r}: use text, image_url, input_audio or file")
    return parts


def _as_url(ref: str) -> str:
    """Local image paths become data URLs so a remote API can see them."""
    if ref.startswith(("http://", "https://", "data:")):
        return ref
    path = ref[7:] if ref.startswith("file://") else ref
    try:
        with open(path, "rb") as fh:
            data = base64.b64encode(fh.read()).decode()
    except OSError:
        return ref
    ext = path.rsplit(".", 1)[-1].lower()
    mime = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "webp": "webp"}.get(ext, "png")
    return f"data:image/{mime};base64,{data}"


def to_openai_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.to_openai() for m in messages]


def from_openai_messages(data: list[dict[str, Any]]) -> list[Message]:
    return [Message.from_openai(d) for d in data]


def as_messages(value: str | Message | dict[str, Any] | list[Any]) -> list[Message]:
    """Accept what a user naturally passes as agent input and return messages."""
    if isinstance(value, str):
        return [Message.user(value)]
    if isinstance(value, Message):
        return [value]
    if isinstance(value, dict):
        return [Message.model_validate(value) if "meta" in value or value.get("role") == "environment" else Message.from_openai(value)]
    if isinstance(value, list):
        out: list[Message] = []
        for item in value:
            out.extend(as_messages(item))
        return out
    raise TypeError(f"cannot make messages from {type(value).__name__}: pass a string, a Message, a dict or a list of them")
