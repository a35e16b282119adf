"""The tool server on a real uvicorn (loopback) and RemoteTool against it: results equal local ones, images go
up and come back as local files, keys, validation, timeouts, tool failures and path traversal are answered as
documented JSON errors, the OpenAPI document has one operation per tool, and an agent uses remote tools."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time
from pathlib import Path
from typing import Literal

import httpx
import pytest
import uvicorn
from agentkit.models.scripted import ScriptedModel
from agentkit.tools import BaseTool, Calculator, ImageIO
from agentkit.tools.remote import RemoteTool, load_remote_tools
from agentkit.tools.server import create_tool_app
from PIL import Image
from typer.testing import CliRunner

from agentkit.agents import create_agent
from agentkit.cli import app as cli_app
from agentkit.errors import ConfigError
from agentkit.messages import ImagePart, Message, ToolCall
from agentkit.toolspec import ToolError, ToolSpec

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


class Flip(BaseTool):
    """Mirror an image."""

    name = "flip"

    def apply(self, image: ImageIO, axis: Literal["horizontal", "vertical"] = "horizontal") -> ImageIO:
        method = Image.Transpose.FLIP_LEFT_RIGHT if axis == "horizontal" else Image.Transpose.FLIP_TOP_BOTTOM
        return ImageIO(image.to_pil().transpose(method))


class Size(BaseTool):
    """Say how big an image is, as WIDTHxHEIGHT."""

    name = "size"

    def apply(self, image: ImageIO) -> str:
        width, height = image.size
        return f"{width}x{height}"


class Widths(BaseTool):
    """Say how wide each image is, in order."""

    name = "widths"

    def apply(self, images: list[ImageIO]) -> str:
        return ",".join(str(image.size[0]) for image in images)


class Sleepy(BaseTool):
    """Wait a while, then say so."""

    name = "sleepy"

    def apply(self, seconds: float = 3.0) -> str:
        time.sleep(seconds)
        return "awake"


class Broken(BaseTool):
    """Always fails."""

    name = "broken"

    def apply(self, x: int = 1) -> str:
        raise RuntimeError("the disk is on fire")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("server")
    (root / "secret.txt").write_text("TOP-SECRET")
    work = str(root / "work")  # where the server's tools write, apart from the client's store
    tools = [Calculator(), Flip(artifact_dir=work), Size(artifact_dir=work), Widths(), Sleepy(), Broken()]
    app = create_tool_app(tools, api_key=KEY, call_timeout=1.0, artifact_dir=root / "served")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield type("Served", (), {"url": f"http://127.0.0.1:{port}", "root": root, "dir": root / "served"})
    uv.should_exit = True
    thread.join(5)
    sock.close()
    assert not thread.is_alive()


@pytest.fixture(autouse=True)
def local_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "local"))
    return tmp_path / "local"


@pytest.fixture()
def remote(server):
    tools = {t.name: t for t in load_remote_tools(server.url, api_key=KEY)}
    yield tools
    next(iter(tools.values())).close()


@pytest.fixture()
def picture(tmp_path) -> tuple[Path, Image.Image]:
    image = Image.new("RGB", (6, 4), (0, 0, 255))
    image.putpixel((0, 0), (255, 0, 0))
    path = tmp_path / "input.png"
    image.save(path)
    return path, image


def post(server, name: str, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.post(f"{server.url}/tools/{name}", headers=headers, timeout=10, **kwargs)


async def test_remote_calculator_equals_local(remote):
    calc = remote["calculator"]
    local = Calculator()
    assert calc.spec == local.spec
    for expression in ("2**100 + sqrt(16)", "(1200 - 250) * 0.15", "10 // 3"):
        assert calc.invoke({"expression": expression}) == local.invoke({"expression": expression})
    assert await calc.ainvoke({"expression": "6*7"}) == "42"
    with pytest.raises(ToolError) as remote_error:
        calc.invoke({"expression": "1/0"})
    with pytest.raises(ToolError) as local_error:
        local.invoke({"expression": "1/0"})
    assert str(remote_error.value) == str(local_error.value)


async def test_image_round_trip_gives_local_files(remote, server, picture, local_store):
    path, image = picture
    [part] = remote["flip"].invoke({"image": str(path)})
    assert isinstance(part, ImagePart)
    flipped = Path(part.url)
    assert flipped.parent == local_store and flipped.is_file()  # downloaded into the local store
    with Image.open(flipped) as got:
        assert got.convert("RGB").tobytes() == image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).tobytes()
    assert (server.dir / flipped.name).is_file()  # and published by the server under the same content name
    assert remote["size"].invoke({"image": part.url}) == "6x4"
    assert Size().invoke({"image": part.url}) == "6x4"  # a local tool takes the downloaded path too
    [again] = await remote["flip"].ainvoke({"image": part.url, "axis": "horizontal"})
    with Image.open(again.url) as got:  # flipped twice: the original again
        assert got.convert("RGB").tobytes() == image.tobytes()
    assert await remote["size"].ainvoke({"image": ImageIO(path)}) == "6x4"


def test_base64_output_and_json_inputs(server, picture, local_store):
    path, _ = picture
    flip = RemoteTool.from_server(server.url, "flip", api_key=KEY, files="base64")
    [part] = flip.invoke({"image": str(path), "axis": "vertical"})
    with Image.open(part.url) as got:
        assert got.size == (6, 4) and got.convert("RGB").getpixel((0, 3)) == (255, 0, 0)
    encoded = base64.b64encode(path.read_bytes()).decode()
    response = post(server, "flip", params={"files": "base64"},
                    json={"image": {"base64": encoded, "mime_type": "image/png"}})
    assert response.status_code == 200, response.text
    [inline] = response.json()["output"]
    assert inline["type"] == "image" and "url" not in inline and inline["mime_type"] == "image/png"
    with Image.open(io.BytesIO(base64.b64decode(inline["base64"]))) as got:
        assert got.size == (6, 4)
    by_url = post(server, "flip", json={"image": {"base64": encoded, "mime_type": "image/png"}}).json()["output"][0]
    assert by_url["url"].startswith(f"{server.url}/files/")
    assert post(server, "size", json={"image": by_url["url"]}).json() == {"output": "6x4"}
    with path.open("rb") as fh:  # the documented multipart form: file parts + JSON 'arguments'
        response = post(server, "flip", files={"image": ("x.png", fh, "image/png")},
                        data={"arguments": '{"axis": "vertical"}'})
    assert response.status_code == 200, response.text
    served = httpx.get(response.json()["output"][0]["url"], headers=AUTH)
    with Image.open(io.BytesIO(served.content)) as got:
        assert got.convert("RGB").getpixel((0, 3)) == (255, 0, 0)


def test_lists_of_files_keep_their_order(server, remote, picture, tmp_path):
    path, _ = picture
    small = tmp_path / "small.png"
    Image.new("RGB", (2, 2)).save(small)
    assert remote["widths"].invoke({"images": [str(path), str(small), str(path)]}) == "6,2,6"
    url = post(server, "flip", files={"image": ("s.png", small.read_bytes(), "image/png")}).json()["output"][0]["url"]
    assert remote["widths"].invoke({"images": [str(path), url, str(small)]}) == "6,2,2"
    assert remote["widths"].invoke({"images": []}) == ""
    response = post(server, "widths", json={"images": "nope.png"})
    assert response.status_code == 422 and "should be a list of image files" in response.json()["message"]


def test_api_key_is_required(server):
    assert httpx.get(f"{server.url}/health").status_code == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}):
        response = post(server, "calculator", headers=headers, json={"expression": "1+1"})
        assert response.status_code == 401 and response.json()["error"] == "unauthorized"
        assert httpx.get(f"{server.url}/tools", headers=headers).status_code == 401
    ok = post(server, "calculator", headers={"X-API-Key": KEY}, json={"expression": "1+1"})
    assert ok.status_code == 200 and ok.json() == {"output": "2"}
    spec = ToolSpec(name="calculator", parameters={"type": "object", "properties": {}})
    with pytest.raises(ToolError, match="refused the API key"):
        RemoteTool(server.url, spec, api_key="nope").invoke({"expression": "1+1"})
    with pytest.raises(ConfigError, match="401"):
        load_remote_tools(server.url, api_key="nope")


def test_validation_errors_are_422_naming_the_field(server, remote, picture):
    response = post(server, "calculator", json={"expression": "1+"})
    assert response.status_code == 422 and response.json()["error"] == "tool_error"
    url = remote["flip"].url + "/files/" + Path(remote["flip"].invoke({"image": str(picture[0])})[0].url).name
    response = post(server, "flip", json={"image": url, "axis": 3})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert "argument 'axis' should be one of \"horizontal\", \"vertical\"" in body["message"]
    with pytest.raises(ToolError, match="argument 'axis' should be one of"):
        remote["flip"].invoke({"image": str(picture[0]), "axis": "diagonal"})
    with pytest.raises(ToolError, match="missing argument 'image'"):
        remote["size"].invoke({})
    # a client cannot make the server open its own files by path
    response = post(server, "size", json={"image": str(server.root / "secret.txt")})
    assert response.status_code == 422 and "argument 'image' should be an image file" in response.json()["message"]
    assert post(server, "size", content=b"[1, 2]").status_code == 422


def test_timeout_is_504_and_the_server_keeps_answering(server, remote):
    started = time.monotonic()
    response = post(server, "sleepy", json={"seconds": 8})
    assert response.status_code == 504 and response.json()["error"] == "timeout"
    assert time.monotonic() - started < 6.0  # the 1 s call timeout, not the 8 s call
    with pytest.raises(ToolError, match="did not finish within 1 s"):
        remote["sleepy"].invoke({"seconds": 3})
    assert httpx.get(f"{server.url}/health").json()["status"] == "ok"
    assert remote["sleepy"].invoke({"seconds": 0}) == "awake"


def test_a_raising_tool_is_a_500_not_a_crash(server, remote):
    response = post(server, "broken", json={})
    assert response.status_code == 500
    assert response.json() == {"error": "tool_failed", "message": "broken failed: RuntimeError: the disk is on fire"}
    with pytest.raises(ToolError, match="the disk is on fire"):
        remote["broken"].invoke({})
    assert remote["calculator"].invoke({"expression": "2+2"}) == "4"


def test_files_refuse_path_traversal(server):
    for name in ("..%2Fsecret.txt", "%2E%2E%2Fsecret.txt", "..%5Csecret.txt", "%2E%2E", ".", "..",
                 "..%2F..%2F..%2Fetc%2Fpasswd"):
        response = httpx.get(f"{server.url}/files/{name}", headers=AUTH)
        assert response.status_code == 404, name
        assert "TOP-SECRET" not in response.text
    raw = httpx.Request("GET", f"{server.url}/files/x", headers=AUTH)
    raw.url = raw.url.copy_with(raw_path=b"/files/../secret.txt")
    with httpx.Client() as client:
        response = client.send(raw)
    assert response.status_code == 404 and "TOP-SECRET" not in response.text
    assert post(server, "size", json={"image": f"{server.url}/files/..%2Fsecret.txt"}).status_code == 422


def test_listing_and_openapi(server):
    listing = httpx.get(f"{server.url}/tools", headers=AUTH).json()["tools"]
    by_name = {t["name"]: t for t in listing}
    assert set(by_name) == {"calculator", "flip", "size", "widths", "sleepy", "broken"}
    assert by_name["flip"]["inputs"] == {"image": "image", "axis": "text"}
    assert by_name["flip"]["outputs"] == ["image"] and by_name["calculator"]["outputs"] == ["text"]
    assert by_name["flip"]["openai"]["function"]["name"] == "flip"
    assert by_name["size"]["internlm2"]["parameters"]["required"] == ["image"]
    schema = httpx.get(f"{server.url}/openapi.json").json()
    operations = [(path, method, op["operationId"]) for path, item in schema["paths"].items()
                  for method, op in item.items()]
    tool_ops = [op for op in operations if op[0].startswith("/tools/")]
    assert sorted(tool_ops) == sorted((f"/tools/{n}", "post", n) for n in by_name)
    assert len({op[2] for op in operations}) == len(operations)
    body = schema["paths"]["/tools/flip"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"]["properties"]["axis"]["enum"] == ["horizontal", "vertical"]
    assert "base64" in str(body["application/json"]["schema"]["properties"]["image"])
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"
    calc = schema["paths"]["/tools/calculator"]["post"]["requestBody"]["content"]
    assert set(calc) == {"application/json"}
    assert calc["application/json"]["schema"]["required"] == ["expression"]


def test_an_agent_calls_remote_tools(server, picture):
    path, _ = picture

    def script(messages: list[Message]):
        turn = sum(m.role == "assistant" for m in messages)
        if turn == 0:
            return Message.assistant("", [ToolCall(name="flip", arguments={"image": str(path)})])
        if turn == 1:
            return Message.assistant("", [ToolCall(name="size", arguments={"image": messages[-1].content[0].url})])
        if turn == 2:
            return Message.assistant("", [ToolCall(name="calculator", arguments={"expression": "6*4"})])
        return Message.assistant(f"The flipped image is {messages[-3].text}, {messages[-1].text} pixels.")

    tools = load_remote_tools(server.url, api_key=KEY)
    agent = create_agent("react", ScriptedModel(script), tools=tools, checkpointer="memory")
    result = agent.run("Flip my image and tell me its size.")
    env = [m for m in result.messages if m.role == "environment"]
    assert env[0].text.startswith("[image: ") and env[1].text == "6x4" and env[2].text == "24"
    assert result.answer == "The flipped image is 6x4, 24 pixels."


def test_unreachable_server_is_a_clear_error():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    with pytest.raises(ToolError, match=f"cannot reach the tool server at {url}"):
        RemoteTool(url, ToolSpec(name="calculator")).invoke({"expression": "1"})
    with pytest.raises(ConfigError, match=f"cannot reach the tool server at {url}"):
        load_remote_tools(url)


def test_cli_lists_and_searches_tools():
    runner = CliRunner()
    listed = runner.invoke(cli_app, ["tools", "list"])
    assert listed.exit_code == 0, listed.output
    lines = {line.split()[0]: line for line in listed.output.splitlines()}
    assert "calculator" in lines and "Evaluate one arithmetic expression" in lines["calculator"]
    found = runner.invoke(cli_app, ["tools", "search", "arithmetic expression"])
    assert found.exit_code == 0 and found.output.splitlines()[0].startswith("calculator")
    helped = runner.invoke(cli_app, ["tools", "serve", "--help"])
    assert helped.exit_code == 0 and "--api-key" in helped.output and "--port" in helped.output
