"""Serve any set of tools over HTTP (FastAPI), one documented operation per tool.

Routes:

* ``POST /tools/{name}`` — call a tool (operationId = the tool's name; its request body is the tool's input
  schema, so ``/openapi.json`` documents every tool). The body is either a JSON object of arguments, or
  ``multipart/form-data`` with one file part per file argument, named after the argument (repeat the part for a
  list), plus the other arguments as a JSON object in a form field named ``arguments``. In a JSON body a file
  argument is ``{"base64": ..., "mime_type": ..., "name": ...}`` or a ``/files/`` URL this server returned (only
  its name is used: the server never fetches URLs, and never opens its own paths on a client's say-so).
  ``?files=base64`` returns files inline instead of by URL.
* ``GET /tools`` — the specs (OpenAI and InternLM2 schemas, input and output kinds); ``GET /health``;
  ``GET /files/{name}`` — files the server stored, from its own directory only.

Answers: ``{"output": "text"}`` or ``{"output": [parts]}`` (``{"type": "text", "text"}`` or ``{"type": "image" |
"audio" | "file", "url" | "base64", "mime_type", "name"}``). Errors are ``{"error": kind, "message": text}``:
401 without the API key (``Authorization: Bearer K`` or ``X-API-Key: K``; ``/health``, ``/openapi.json`` and
``/docs`` stay open: they describe, never run), 422 for arguments the tool rejects (the ToolError text, naming the
field: ``validation_error`` before the call, ``tool_error`` when the tool itself refuses), 500 when the tool
raises, 504 past the per-call limit. A failing tool
never takes the server down. A call past its limit is abandoned, not killed (Python cannot kill a thread): tools
that must really stop, like the code interpreter, run in processes of their own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import mimetypes
import re
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

from agentkit.tools.base import BaseTool
from agentkit.tools.io import default_artifact_dir, save_artifact
from agentkit.tools.remote import file_arguments, file_suffix
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from agentkit.errors import ConfigError
from agentkit.messages import AudioPart, FilePart, ImagePart, TextPart
from agentkit.toolspec import Tool, ToolError, ToolOutput

log = logging.getLogger("agentkit.tools.server")

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_TYPES = {"string": "text", "integer": "int", "number": "float", "boolean": "bool", "array": "list",
               "object": "dict"}


class ErrorBody(BaseModel):
    """What every failure answers: a machine-readable kind and the text to show the model."""

    error: str
    message: str


class ToolResult(BaseModel):
    """A call's result: text, or content parts (files by URL, or inline with ``?files=base64``)."""

    output: str | list[dict[str, Any]]


class _Failure(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class ToolServer:
    """The tools, their file store and the per-call limit behind one FastAPI app."""

    def __init__(self, tools: Sequence[Tool], *, call_timeout: float | None, files_dir: Path):
        self.tools: dict[str, Tool] = {}
        for tool in tools:
            name = tool.spec.name
            if not _NAME.match(name):
                raise ConfigError(f"tool name {name!r} cannot be served: use 1-64 letters, digits, '_' or '-'")
            if name in self.tools:
                raise ConfigError(f"two tools are named {name!r}; a server needs unique names")
            self.tools[name] = tool
        self.call_timeout = call_timeout
        self.files_dir = files_dir
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._root = self.files_dir.resolve()

    # -- files ----------------------------------------------------------------------------------
    def served_file(self, name: str) -> Path | None:
        """The stored file called ``name``, or None: never anything outside the server's directory."""
        if not name or name != Path(name).name or name.startswith(".") or "\\" in name or "\x00" in name:
            return None
        candidate = (self._root / name).resolve()
        return candidate if candidate.parent == self._root and candidate.is_file() else None

    def _reference(self, value: str) -> Path | None:
        path = unquote(urlparse(value.strip()).path) if "://" in value else value.strip()
        _, sep, name = path.rpartition("/files/")
        return self.served_file(name if sep else path)

    def _store(self, data: bytes, name: str | None, mime: str | None, kind: str) -> str:
        return str(save_artifact(data, file_suffix(name, mime, kind), self.files_dir))

    # -- arguments ------------------------------------------------------------------------------
    async def read_arguments(self, tool: Tool, request: Request) -> dict[str, Any]:
        """The call's arguments with every file argument turned into a path in the server's store."""
        files = file_arguments(tool.spec.parameters)
        name = tool.spec.name
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form() as form:
                raw = form.get("arguments", "{}")
                if not isinstance(raw, str):
                    raise _Failure(422, "validation_error", f"{name}: 'arguments' must be a JSON text field")
                arguments = self._json_arguments(name, raw)
                uploaded: dict[str, list[str]] = {}
                for key, value in form.multi_items():
                    if key == "arguments":
                        continue
                    if key not in files or not isinstance(value, UploadFile):
                        raise _Failure(422, "validation_error", (
                            f"invalid arguments for {name}: unexpected form field {key!r}; send files as parts "
                            f"named {sorted(files) or '(none)'} and other arguments as JSON in 'arguments'"))
                    data = await value.read()
                    path = await asyncio.to_thread(self._store, data, value.filename, value.content_type,
                                                   files[key][0])
                    uploaded.setdefault(key, []).append(path)
        else:
            body = await request.body()
            arguments = self._json_arguments(name, body.decode("utf-8", "replace") if body else "{}")
            uploaded = {}
        for key, (kind, many) in files.items():
            if key in arguments and arguments[key] is not None:
                value = arguments[key]
                if many and isinstance(value, list):
                    arguments[key] = [await self._file_value(name, key, kind, v) for v in value]
                else:
                    arguments[key] = await self._file_value(name, key, kind, value, many)
            if key in uploaded:
                if many:
                    arguments[key] = [*(arguments.get(key) or []), *uploaded[key]]
                elif key in arguments or len(uploaded[key]) > 1:
                    raise _Failure(422, "validation_error",
                                   f"invalid arguments for {name}: argument {key!r} takes one file, got several")
                else:
                    arguments[key] = uploaded[key][0]
        return arguments

    @staticmethod
    def _json_arguments(name: str, text: str) -> dict[str, Any]:
        try:
            arguments = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Failure(422, "validation_error", f"{name}: the arguments are not valid JSON ({exc})") from None
        if not isinstance(arguments, dict):
            raise _Failure(422, "validation_error",
                           f"{name} takes a JSON object of arguments, got {type(arguments).__name__}")
        return arguments

    async def _file_value(self, name: str, key: str, kind: str, value: Any, many: bool = False) -> str:
        if isinstance(value, dict) and isinstance(value.get("base64"), str):
            try:
                data = base64.b64decode(value["base64"], validate=True)
            except binascii.Error:
                raise _Failure(422, "validation_error",
                               f"invalid arguments for {name}: argument {key!r} has invalid base64 data") from None
            return await asyncio.to_thread(self._store, data, value.get("name"), value.get("mime_type"), kind)
        if isinstance(value, str):
            path = self._reference(value)
            if path is not None:
                return str(path)
        article = "an" if kind[0] in "aeiou" else "a"
        expected = f"a list of {kind} files" if many else f"{article} {kind} file"
        raise _Failure(422, "validation_error", (
            f"invalid arguments for {name}: argument {key!r} should be {expected}: upload it as the "
            f"multipart part {key!r}, send {{\"base64\": ..., \"mime_type\": ...}}, or pass a /files/ URL this "
            f"server returned (got {_short(value)})"))

    # -- calling --------------------------------------------------------------------------------
    async def call(self, tool: Tool, arguments: dict[str, Any]) -> ToolOutput:
        """Validate, then run the tool in a daemon thread, abandoned after ``call_timeout``."""
        name = tool.spec.name
        if isinstance(tool, BaseTool):
            try:
                tool.validate(arguments)
            except ToolError as exc:
                raise _Failure(422, "validation_error", str(exc)) from None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ToolOutput] = loop.create_future()

        def settle(outcome: Any, failed: bool) -> None:
            if not future.done():
                future.set_exception(outcome) if failed else future.set_result(outcome)

        def runner() -> None:
            try:
                outcome, failed = tool.invoke(arguments), False
            except Exception as exc:
                outcome, failed = exc, True
            except BaseException as exc:  # SystemExit in a tool must not reach the event loop
                outcome, failed = RuntimeError(f"{type(exc).__name__}: {exc}"), True
            try:
                loop.call_soon_threadsafe(settle, outcome, failed)
            except RuntimeError:
                pass  # the server stopped while the call ran

        threading.Thread(target=runner, name=f"tool-server-{name}", daemon=True).start()
        try:
            return await asyncio.wait_for(future, self.call_timeout)
        except asyncio.TimeoutError:
            raise _Failure(504, "timeout", (
                f"{name} did not finish within {self.call_timeout:g} s on the tool server and was abandoned; "
                "try a smaller input or another approach")) from None
        except ToolError as exc:
            raise _Failure(422, "tool_error", str(exc)) from None
        except Exception as exc:
            log.exception("tool %s raised", name)
            raise _Failure(500, "tool_failed", f"{name} failed: {type(exc).__name__}: {exc}") from None

    # -- output ---------------------------------------------------------------------------------
    def render(self, output: Any, request: Request, inline: bool) -> str | list[dict[str, Any]]:
        """Message content as JSON: local files published under ``/files/`` (or inlined as base64)."""
        if isinstance(output, str):
            return output
        if not isinstance(output, list):
            return str(output)
        return [self._part(part, request, inline) for part in output]

    def _part(self, part: Any, request: Request, inline: bool) -> dict[str, Any]:
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        if isinstance(part, ImagePart):
            kind, ref, mime, name, extra = "image", part.url, None, None, {}
        elif isinstance(part, AudioPart):
            kind, ref, mime, name, extra = "audio", part.url, None, None, {"format": part.format}
        elif isinstance(part, FilePart):
            kind, ref, mime, name, extra = "file", part.path, part.mime_type, part.name, {}
        else:
            return {"type": "text", "text": str(part)}
        path = Path(ref.removeprefix("file://"))
        if ref.startswith("data:") or ("://" in ref and not ref.startswith("file://")) or not path.is_file():
            return {"type": kind, "url": ref, **extra}
        mime = mime or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        described = {"type": kind, "mime_type": mime, "name": name or path.name, **extra}
        data = path.read_bytes()
        if inline:
            return {**described, "base64": base64.b64encode(data).decode("ascii")}
        stored = save_artifact(data, file_suffix(path.name, mime, kind), self.files_dir)
        return {**described, "url": str(request.url_for("files", name=stored.name))}

    # -- description ----------------------------------------------------------------------------
    def describe(self, tool: Tool) -> dict[str, Any]:
        spec = tool.spec
        files = file_arguments(spec.parameters)
        inputs = {}
        for key, prop in (spec.parameters.get("properties") or {}).items():
            if key in files:
                kind, many = files[key]
                inputs[key] = f"list[{kind}]" if many else kind
            else:
                inputs[key] = _input_kind(prop)
        outputs = list(tool.meta.outputs) if isinstance(tool, BaseTool) else ["text"]
        return {**spec.model_dump(), "inputs": inputs, "outputs": outputs, "openai": spec.to_openai(),
                "internlm2": spec.to_internlm2()}


def _input_kind(prop: Any) -> str:
    """A short name for what an argument takes: text, int, float, bool, list or dict."""
    if not isinstance(prop, dict):
        return "value"
    if "$ref" in prop:
        return "dict"
    if "enum" in prop or "const" in prop:
        return "text" if all(isinstance(v, str) for v in prop.get("enum", [prop.get("const")])) else "value"
    options = [o for o in prop.get("anyOf", ()) if isinstance(o, dict) and o.get("type") != "null"]
    if len(options) == 1:
        return _input_kind(options[0])
    return _JSON_TYPES.get(prop.get("type", ""), "value")


# -- OpenAPI ------------------------------------------------------------------------------------------

_WIRE_FILE = {
    "anyOf": [
        {"type": "string", "description": "a /files/ URL (or file name) this server returned"},
        {"type": "object", "required": ["base64"], "properties": {
            "base64": {"type": "string", "format": "byte"},
            "mime_type": {"type": "string"},
            "name": {"type": "string"},
        }},
    ],
}


def _rewrite_refs(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        return {k: (f"#/components/schemas/{prefix}{v[len('#/$defs/'):]}"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/") else _rewrite_refs(v, prefix))
                for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v, prefix) for v in node]
    return node


def _request_body(tool: Tool, components: dict[str, Any]) -> dict[str, Any]:
    """The tool's input schema as the operation's body: JSON, plus multipart when it takes files."""
    name = tool.spec.name
    schema = _rewrite_refs(dict(tool.spec.parameters), f"{name}__")
    for def_name, definition in (schema.pop("$defs", None) or {}).items():
        components[f"{name}__{def_name}"] = definition
    files = file_arguments(tool.spec.parameters)
    properties = dict(schema.get("properties") or {})
    wire = dict(properties)
    for key, (kind, many) in files.items():
        original = properties[key]
        value = {"type": "array", "items": _WIRE_FILE} if many else _WIRE_FILE
        if any(option.get("type") == "null" for option in original.get("anyOf", ()) if isinstance(option, dict)):
            value = {"anyOf": [value, {"type": "null"}]}
        kept = {k: original[k] for k in ("description", "default") if k in original}
        wire[key] = {**value, **kept}
    content: dict[str, Any] = {"application/json": {"schema": {**schema, "properties": wire}}}
    if files:
        form = {key: ({"type": "array", "items": {"type": "string", "format": "binary"}} if many
                      else {"type": "string", "format": "binary"}) for key, (_, many) in files.items()}
        form["arguments"] = {"type": "string", "description": "the other arguments, as a JSON object"}
        content["multipart/form-data"] = {"schema": {"type": "object", "properties": form}}
    return {"required": True, "content": content}


# -- the app ------------------------------------------------------------------------------------------

def _auth(api_key: str) -> Any:
    bearer = HTTPBearer(auto_error=False)
    header = APIKeyHeader(name="X-API-Key", auto_error=False)
    expected = api_key.encode()

    def check(credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
              key: str | None = Depends(header)) -> None:
        given = credentials.credentials if credentials is not None else key
        if not given or not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(401, "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key'",
                                headers={"WWW-Authenticate": "Bearer"})

    return Depends(check)


def create_tool_app(tools: Sequence[Tool] | str, api_key: str | None = None, call_timeout: float | None = 60.0, *,
                    artifact_dir: str | Path | None = None, title: str = "agentkit tools") -> FastAPI:
    """A FastAPI app serving ``tools`` (tool objects, or names for ``load_tools``).

    ``artifact_dir`` holds uploads and results (default: ``served/`` in the artifact store), the only directory
    ``/files/`` reads from; ``call_timeout=None`` lets calls run as long as they take.
    """
    if isinstance(tools, str):
        from agentkit.tools.registry import load_tools

        tools = load_tools(tools)
    server = ToolServer(list(tools), call_timeout=call_timeout,
                        files_dir=Path(artifact_dir) if artifact_dir is not None else default_artifact_dir() / "served")
    guard = [_auth(api_key)] if api_key else []
    app = FastAPI(title=title, description=(__doc__ or "").split("\n\n")[0])
    app.state.tool_server = server

    @app.exception_handler(_Failure)
    async def failure(request: Request, exc: _Failure) -> JSONResponse:
        return _error(exc.status, exc.kind, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, kind, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _error(422, "invalid_request", problems)

    @app.get("/health", operation_id="server.health", tags=["server"])
    async def health() -> dict[str, Any]:
        return {"status": "ok", "tools": len(server.tools)}

    @app.get("/tools", operation_id="server.list_tools", tags=["server"], dependencies=guard)
    async def list_tools() -> dict[str, Any]:
        return {"tools": [server.describe(tool) for tool in server.tools.values()]}

    @app.get("/files/{name}", name="files", operation_id="server.get_file", tags=["server"], dependencies=guard,
             responses={404: {"model": ErrorBody}})
    async def get_file(name: str) -> FileResponse:
        path = server.served_file(name)
        if path is None:
            raise HTTPException(404, f"no file {name!r} on this server")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    components: dict[str, Any] = {}
    errors = {status: {"model": ErrorBody, "description": text} for status, text in (
        (401, "missing or wrong API key"), (422, "invalid arguments, or the tool refused them"),
        (500, "the tool raised"), (504, "the call exceeded the per-call limit"))}
    for tool in server.tools.values():
        app.add_api_route(
            f"/tools/{tool.spec.name}", _endpoint(server, tool), methods=["POST"], operation_id=tool.spec.name,
            summary=tool.spec.name, description=tool.spec.description, tags=["tools"], dependencies=guard,
            response_model=None, responses={200: {"model": ToolResult}, **errors},
            openapi_extra={"requestBody": _request_body(tool, components)},
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _endpoint(server: ToolServer, tool: Tool) -> Any:
    async def call_tool(request: Request, files: Literal["url", "base64"] = Query(
            "url", description="how returned files come back: by URL, or inline as base64")) -> JSONResponse:
        arguments = await server.read_arguments(tool, request)
        output = await server.call(tool, arguments)
        rendered = await asyncio.to_thread(server.render, output, request, files == "base64")
        return JSONResponse({"output": rendered})

    call_tool.__name__ = f"call_{tool.spec.name}"
    return call_tool


def serve_tools(names_or_tools: str | Iterable[str | Tool], host: str = "127.0.0.1", port: int = 8000,
                api_key: str | None = None, *, call_timeout: float | None = 60.0,
                artifact_dir: str | Path | None = None, log_level: str = "info") -> None:
    """Serve tools with uvicorn until interrupted: ``"calculator,knowledge_base"``, names, or tool objects."""
    import uvicorn
    from agentkit.tools.registry import load_tool

    items = names_or_tools.split(",") if isinstance(names_or_tools, str) else list(names_or_tools)
    tools = [load_tool(item) if isinstance(item, str) else item for item in items
             if not isinstance(item, str) or item.strip()]
    if not tools:
        raise ConfigError("no tools to serve: name at least one, e.g. --tools calculator")
    app = create_tool_app(tools, api_key=api_key, call_timeout=call_timeout, artifact_dir=artifact_dir)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
