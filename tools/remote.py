"""Tools that run in a tool server (``agentkit tools serve``), called over HTTP like local ones.

A :class:`RemoteTool` has the served tool's spec, so a model sees no difference. Files cross the wire as bytes:
the local paths a model passes to ``ImageIO`` / ``AudioIO`` / ``File`` arguments are uploaded (multipart), and the
files a remote tool returns are downloaded into the local artifact store, so the next tool — local or remote — gets
a local path. Every failure (the server unreachable, a rejected key, bad arguments, the tool raising or timing
out) is a :class:`~agentkit.toolspec.ToolError` carrying the server's message, which the agent shows the model.

Wire format (see :mod:`agentkit.tools.server`): ``POST {url}/tools/{name}`` with a JSON object of arguments, or
``multipart/form-data`` with one part per file argument (named after it) and the other arguments as JSON in a
form field called ``arguments``. The answer is ``{"output": text}`` or ``{"output": [parts]}``; errors are
``{"error": kind, "message": text}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import difflib
import json
import mimetypes
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlparse

import httpx
from agentkit.tools.io import IOType, resolve_reference, save_artifact

from agentkit.errors import ConfigError
from agentkit.messages import AudioPart, ContentPart, FilePart, ImagePart, TextPart
from agentkit.toolspec import ToolError, ToolOutput, ToolSpec

#: How long a client waits for one call; longer than the server's default per-call limit (60 s), so the
#: server's own timeout (a 504 with a message) is what normally ends a slow call.
DEFAULT_TIMEOUT = 120.0
FILE_KINDS = ("image", "audio", "file")
_DEFAULT_SUFFIX = {"image": ".png", "audio": ".wav", "file": ".bin"}
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")
FilesMode = Literal["url", "base64"]


# -- shared with the server -------------------------------------------------------------------------

def file_arguments(parameters: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """The arguments of a tool schema that take files: name → (kind, is_list), read from ``format``."""
    found: dict[str, tuple[str, bool]] = {}
    for name, prop in (parameters.get("properties") or {}).items():
        kind = _file_kind(prop) if isinstance(prop, dict) else None
        if kind is not None:
            found[name] = kind
    return found


def _file_kind(prop: dict[str, Any]) -> tuple[str, bool] | None:
    if prop.get("type") == "string" and prop.get("format") in FILE_KINDS:
        return prop["format"], False
    items = prop.get("items")
    if prop.get("type") == "array" and isinstance(items, dict):
        inner = _file_kind(items)
        if inner is not None and not inner[1]:
            return inner[0], True
    for option in prop.get("anyOf") or ():
        inner = _file_kind(option) if isinstance(option, dict) else None
        if inner is not None:
            return inner
    return None


def file_suffix(name: str | None, mime_type: str | None, kind: str) -> str:
    """A safe suffix for a stored file: the name's, else the MIME type's, else the kind's default."""
    suffix = Path(name).suffix if name else ""
    if _SUFFIX.match(suffix):
        return suffix.lower()
    guessed = mimetypes.guess_extension(mime_type) if mime_type else None
    return guessed if guessed and _SUFFIX.match(guessed) else _DEFAULT_SUFFIX.get(kind, ".bin")


# -- the client -----------------------------------------------------------------------------------------

def _headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _timeout(seconds: float) -> httpx.Timeout:
    return httpx.Timeout(seconds, connect=min(seconds, 10.0))


def _error_message(response: httpx.Response, url: str) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = None
    if isinstance(body, dict):
        message = body.get("message") or body.get("detail")
    if not isinstance(message, str) or not message:
        message = f"the tool server at {url} answered {response.status_code}: {response.text[:200].strip()}"
    if response.status_code == 401:
        message = f"the tool server at {url} refused the API key (401): {message}"
    return message


@contextlib.contextmanager
def _http_errors(url: str, what: str, error: type[Exception] = ToolError) -> Iterator[None]:
    """httpx's exceptions as one readable error naming the server."""
    try:
        yield
    except httpx.ConnectError as exc:
        raise error(f"cannot reach the tool server at {url} ({exc}); is 'agentkit tools serve' running there?") \
            from None
    except httpx.TimeoutException as exc:
        raise error(f"{what}: the tool server at {url} did not answer in time ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise error(f"{what}: request to the tool server at {url} failed: {exc}") from None


def fetch_tool_listing(url: str, api_key: str | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """``GET {url}/tools``: the served tools' specs. A setup problem, so failures are ConfigErrors."""
    base = url.rstrip("/")
    with _http_errors(base, "listing tools", ConfigError):
        response = httpx.get(f"{base}/tools", headers=_headers(api_key), timeout=_timeout(timeout))
    if response.status_code >= 400:
        raise ConfigError(_error_message(response, base))
    try:
        tools = response.json()["tools"]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{base}/tools did not return a tool listing; is {base} an agentkit tool server?") from None
    return tools


class RemoteTool:
    """One tool of a tool server; ``invoke`` / ``ainvoke`` call it over HTTP.

    ``files="base64"`` asks for returned files inline instead of by URL (one request instead of two per file);
    ``artifact_dir`` is where arguments are resolved from and results saved (default: the artifact store).
    """

    def __init__(self, url: str, spec: ToolSpec, *, api_key: str | None = None, outputs: tuple[str, ...] = ("text",),
                 timeout: float = DEFAULT_TIMEOUT, files: FilesMode = "url",
                 artifact_dir: str | os.PathLike[str] | None = None, client: httpx.Client | None = None):
        if files not in ("url", "base64"):
            raise ConfigError(f"files must be 'url' or 'base64', got {files!r}")
        self.url = url.rstrip("/")
        self._spec = spec
        self.api_key = api_key
        self.outputs = tuple(outputs)
        self.timeout = timeout
        self.files = files
        self.artifact_dir = artifact_dir
        self._file_args = file_arguments(spec.parameters)
        self._client = client
        self._client_lock = threading.Lock()

    @classmethod
    def from_server(cls, url: str, name: str, api_key: str | None = None, **options: Any) -> RemoteTool:
        """The tool ``name`` of the server at ``url`` (its spec fetched now; a ConfigError if absent)."""
        listing = {entry["name"]: entry for entry in fetch_tool_listing(url, api_key)}
        if name not in listing:
            close = difflib.get_close_matches(name, list(listing), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"the tool server at {url} has no tool {name!r}.{hint} "
                              f"It serves: {', '.join(sorted(listing)) or '(none)'}")
        return cls._from_entry(url, listing[name], api_key, **options)

    @classmethod
    def _from_entry(cls, url: str, entry: dict[str, Any], api_key: str | None, **options: Any) -> RemoteTool:
        spec = ToolSpec(name=entry["name"], description=entry.get("description", ""),
                        parameters=entry.get("parameters") or {"type": "object", "properties": {}},
                        kind=entry.get("kind", "plugin"), requires_approval=bool(entry.get("requires_approval")))
        return cls(url, spec, api_key=api_key, outputs=tuple(entry.get("outputs") or ("text",)), **options)

    @property
    def spec(self) -> ToolSpec:
        return self._spec

    @property
    def name(self) -> str:
        return self._spec.name

    def __repr__(self) -> str:
        return f"RemoteTool({self.name!r}, url={self.url!r})"

    # -- calling ------------------------------------------------------------------------------------
    def invoke(self, arguments: dict[str, Any]) -> ToolOutput:
        request = self._request(arguments)
        with _http_errors(self.url, self.name):
            response = self._sync_client().post(self._call_url, **request)
            payload = self._payload(response)
            return self._output(payload, lambda name: self._download(self._sync_client().get(self._file_url(name))))

    async def ainvoke(self, arguments: dict[str, Any]) -> ToolOutput:
        request = await asyncio.to_thread(self._request, arguments)
        async with httpx.AsyncClient(headers=_headers(self.api_key), timeout=_timeout(self.timeout)) as client:
            with _http_errors(self.url, self.name):
                payload = self._payload(await client.post(self._call_url, **request))
                files = {name: self._download(await client.get(self._file_url(name)))
                         for name in self._wanted(payload)}
        return await asyncio.to_thread(self._output, payload, files.__getitem__)

    def close(self) -> None:
        """Close the connection pool of synchronous calls (a shared client is closed for all its tools)."""
        if self._client is not None:
            self._client.close()

    # -- request --------------------------------------------------------------------------------------
    @property
    def _call_url(self) -> str:
        return f"{self.url}/tools/{quote(self.name, safe='')}"

    def _file_url(self, name: str) -> str:
        return f"{self.url}/files/{quote(name, safe='')}"

    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = httpx.Client(headers=_headers(self.api_key), timeout=_timeout(self.timeout))
        return self._client

    def _request(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """httpx keyword arguments: a JSON body, or multipart when a file argument names a local file."""
        if not isinstance(arguments, dict):
            raise ToolError(f"{self.name} takes a JSON object of arguments, got {type(arguments).__name__}")
        body = dict(arguments)
        uploads: list[tuple[str, tuple[str, bytes, str]]] = []
        for name, (kind, many) in self._file_args.items():
            value = body.get(name)
            if value is None:
                continue
            values = value if many and isinstance(value, list) else [value]
            local = [self._is_local(v) for v in values]
            if not any(local) or (not many and isinstance(value, list)):
                continue  # server URLs and base64 objects travel in the JSON; the server judges the rest
            if all(local):
                uploads.extend((name, self._upload(v, kind, name)) for v in values)
                del body[name]
            else:  # a list mixing server URLs and local files: inline the local ones to keep the order
                body[name] = [self._inline(v, kind, name) if is_local else v for v, is_local in zip(values, local)]
        params = {"files": "base64"} if self.files == "base64" else {}
        if not uploads:
            return {"json": body, "params": params}
        return {"data": {"arguments": json.dumps(body, ensure_ascii=False)}, "files": uploads, "params": params}

    def _is_local(self, value: Any) -> bool:
        if isinstance(value, IOType):
            return True
        return isinstance(value, str) and not value.startswith(f"{self.url}/files/")

    def _upload(self, value: Any, kind: str, argument: str) -> tuple[str, bytes, str]:
        if isinstance(value, IOType):
            filename = value.name or f"{argument}{value.suffix}"
            return filename, value.to_bytes(), value.mime_type
        try:
            path = resolve_reference(value, self.artifact_dir)
        except ValueError as exc:
            raise ToolError(f"argument {argument!r} of {self.name} should be the path of "
                            f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} file: {exc}") from None
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.name, path.read_bytes(), mime

    def _inline(self, value: Any, kind: str, argument: str) -> dict[str, str]:
        filename, data, mime = self._upload(value, kind, argument)
        return {"base64": base64.b64encode(data).decode("ascii"), "mime_type": mime, "name": filename}

    # -- response -------------------------------------------------------------------------------------
    def _payload(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise ToolError(_error_message(response, self.url))
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or "output" not in payload:
            raise ToolError(f"{self.name}: the tool server at {self.url} sent an answer without 'output'")
        return payload

    def _download(self, response: httpx.Response) -> bytes:
        if response.status_code >= 400:
            raise ToolError(f"{self.name}: could not download its result: {_error_message(response, self.url)}")
        return response.content

    @staticmethod
    def _served_name(part: dict[str, Any]) -> str | None:
        """The server file a part refers to (the last segment of a ``/files/`` URL), if any."""
        url = part.get("url")
        if "base64" in part or not isinstance(url, str):
            return None
        path = unquote(urlparse(url).path)
        _, sep, name = path.rpartition("/files/")
        return name if sep and name and "/" not in name else None

    def _wanted(self, payload: dict[str, Any]) -> list[str]:
        output = payload["output"]
        if not isinstance(output, list):
            return []
        names = (self._served_name(p) for p in output if isinstance(p, dict) and p.get("type") in FILE_KINDS)
        return list(dict.fromkeys(n for n in names if n))

    def _output(self, payload: dict[str, Any], fetch: Callable[[str], bytes]) -> ToolOutput:
        """The server's output as local message content: files saved in the local artifact store."""
        output = payload["output"]
        if isinstance(output, str):
            return output
        if not isinstance(output, list):
            return json.dumps(output, ensure_ascii=False)
        parts: list[ContentPart] = []
        for part in output:
            if not isinstance(part, dict):
                parts.append(TextPart(text=str(part)))
            elif part.get("type") in FILE_KINDS:
                parts.append(self._file_part(part, fetch))
            else:
                parts.append(TextPart(text=str(part.get("text", ""))))
        return parts

    def _file_part(self, part: dict[str, Any], fetch: Callable[[str], bytes]) -> ContentPart:
        kind, mime, name = part["type"], part.get("mime_type"), part.get("name")
        served = self._served_name(part)
        if "base64" in part:
            try:
                data = base64.b64decode(part["base64"], validate=True)
            except (binascii.Error, TypeError):
                raise ToolError(f"{self.name}: the tool server sent a file that is not valid base64") from None
        elif served is not None:
            data = fetch(served)
        else:  # a URL elsewhere (http, data:): passed on as the tool gave it
            url = str(part.get("url", ""))
            return FilePart(path=url, mime_type=mime, name=name) if kind == "file" else (
                ImagePart(url=url) if kind == "image" else AudioPart(url=url, format=part.get("format")))
        path = save_artifact(data, file_suffix(served or name, mime, kind), self.artifact_dir)
        if kind == "image":
            return ImagePart(url=str(path))
        if kind == "audio":
            return AudioPart(url=str(path), format=part.get("format") or path.suffix.lstrip(".") or None)
        return FilePart(path=str(path), mime_type=mime, name=name)


def load_remote_tools(url: str, api_key: str | None = None, **options: Any) -> list[RemoteTool]:
    """Every tool the server at ``url`` serves, sharing one connection pool; ``options`` go to RemoteTool."""
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    client = options.pop("client", None) or httpx.Client(headers=_headers(api_key), timeout=_timeout(timeout))
    try:
        entries = fetch_tool_listing(url, api_key)
    except BaseException:
        client.close()
        raise
    return [RemoteTool._from_entry(url, entry, api_key, client=client, **options) for entry in entries]
