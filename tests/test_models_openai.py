"""OpenAIChatModel against a real OpenAI-compatible HTTP server on loopback (stdlib, canned replies)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from agentkit.errors import ConfigError
from agentkit.llm import GenerationConfig
from agentkit.messages import Message
from agentkit.models import load_model
from agentkit.models.openai_compat import ModelHTTPError, OpenAIChatModel, message_from_openai_response
from agentkit.toolspec import ToolSpec

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = ToolSpec(name="get_time", description="Local time in a city.",
                parameters={"type": "object", "properties": {"city": {"type": "string"}}})


# -- the server -------------------------------------------------------------------------------------
def _reply_for(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """What the canned model answers: (text, tool calls) chosen from the conversation."""
    messages = body["messages"]
    last = messages[-1]
    model = body["model"]
    if model == "bad-args":
        return "", [{"id": "call_bad", "type": "function",
                     "function": {"name": "get_weather", "arguments": "{'city': Paris"}}]
    if model == "two-tools" and last["role"] == "user":
        return "Checking both.", [
            {"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_t", "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Paris"}'}},
        ]
    if body.get("tools") and last["role"] == "user":
        return "", [{"id": "call_1", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]
    if last["role"] == "tool":
        return f"The tool said {last['content']}, so it is mild in Paris.", []
    return f"You said: {last['content']} — héllo 日本!", []


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    completion = len(text.split()) + 3
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse_chunks(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Deltas as OpenAI sends them: text in pieces, tool-call deltas interleaved by index, then usage."""
    text, calls = _reply_for(body)
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"]}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    for i in range(0, len(text), 4):
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": text[i:i + 4]}}]})
    for index, call in enumerate(calls):  # headers first: id, type, name, empty arguments
        chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": index, "id": call["id"], "type": "function",
             "function": {"name": call["function"]["name"], "arguments": ""}}]}}]})
    pieces = [[call["function"]["arguments"][i:i + 5] for i in range(0, len(call["function"]["arguments"]), 5)]
              for call in calls]
    for step in range(max((len(p) for p in pieces), default=0)):  # argument pieces alternate between calls
        for index, parts in enumerate(pieces):
            if step < len(parts):
                chunks.append({**base, "choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": index, "function": {"arguments": parts[step]}}]}}]})
    finish = "tool_calls" if calls else "stop"
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": _usage(body, text)})
    return chunks


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            seen = sum(1 for r in self.server.requests if r["body"]["model"] == body["model"])
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        model = body["model"]
        if model == "locked":
            error = {"message": "Incorrect API key provided", "type": "invalid_request_error"}
            return self._json(401, {"error": error})
        if model.startswith("flaky-") and seen <= int(model.split("-")[1]):
            return self._json(500, {"error": {"message": "engine overloaded"}})
        if model == "limited" and seen == 1:
            return self._json(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
        if body.get("stream") and model != "no-stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.write(b": keep-alive\n\n")
            for chunk in _sse_chunks(body):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            return None
        text, calls = _reply_for(body)
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            message["tool_calls"] = calls
        return self._json(200, {
            "id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": _usage(body, text),
        })


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def bodies(self, model: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["body"]["model"] == model]


@pytest.fixture(scope="module")
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def make(server: _Server, model: str = "m", **kw: Any) -> OpenAIChatModel:
    kw.setdefault("retry_backoff_s", 0.01)
    return OpenAIChatModel(server.base_url, model, **kw)


# -- generate ---------------------------------------------------------------------------------------
def test_generate_text_usage_and_request(server):
    model = make(server, "plain", api_key="sk-test")
    config = GenerationConfig(max_new_tokens=32, temperature=0.5, top_p=0.9, stop=["END"], seed=7)
    reply = model.generate([Message.system("Be brief."), Message.user("hello there")], config=config)
    assert reply.role == "assistant"
    assert reply.text == "You said: hello there — héllo 日本!"
    assert reply.usage.prompt_tokens == 4 and reply.usage.completion_tokens == len(reply.text.split()) + 3
    assert reply.usage.latency_s > 0
    assert reply.meta["finish_reason"] == "stop"
    request = [r for r in server.requests if r["body"]["model"] == "plain"][-1]
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    sampling = (body["max_tokens"], body["temperature"], body["top_p"], body["stop"], body["seed"])
    assert sampling == (32, 0.5, 0.9, ["END"], 7)
    assert "tools" not in body and "stream" not in body


def test_api_key_from_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    make(server, "env-key").generate([Message.user("hi")])
    sent = [r for r in server.requests if r["body"]["model"] == "env-key"][-1]
    assert sent["headers"]["Authorization"] == "Bearer sk-env"
    monkeypatch.delenv("OPENAI_API_KEY")
    make(server, "no-key").generate([Message.user("hi")])
    assert "Authorization" not in [r for r in server.requests if r["body"]["model"] == "no-key"][-1]["headers"]


def test_tools_round_trip(server):
    model = make(server, "tools")
    conversation = [Message.user("Weather in Paris?")]
    first = model.generate(conversation, tools=[WEATHER])
    assert len(first.tool_calls) == 1
    call = first.tool_calls[0]
    assert (call.id, call.name, call.arguments, call.kind) == ("call_1", "get_weather", {"city": "Paris"}, "plugin")
    assert first.meta["finish_reason"] == "tool_calls" and first.parse_error is None
    conversation += [first, Message.tool_result(call, '{"temperature": 22}')]
    second = model.generate(conversation, tools=[WEATHER])
    assert second.text == 'The tool said {"temperature": 22}, so it is mild in Paris.'
    assert not second.tool_calls
    sent = server.bodies("tools")[-1]
    assert sent["tools"] == [WEATHER.to_openai()]
    assistant, result = sent["messages"][1], sent["messages"][2]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert result == {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 22}'}


def test_interpreter_tool_calls_get_interpreter_kind(server):
    interpreter = ToolSpec(name="get_weather", kind="interpreter")  # any name declared as the interpreter
    reply = make(server, "tools").generate([Message.user("run it")], tools=[interpreter])
    assert reply.tool_calls[0].kind == "interpreter"


def test_invalid_tool_arguments_become_a_parse_error(server):
    reply = make(server, "bad-args").generate([Message.user("weather?")], tools=[WEATHER])
    assert reply.tool_calls == []  # nothing runs on arguments nobody can read
    assert "get_weather" in reply.parse_error and "JSON" in reply.parse_error
    assert reply.usage.completion_tokens > 0


def test_message_from_openai_response_repairs_and_rekinds():
    message = message_from_openai_response({"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "function": {"name": "run_code", "arguments": "{'code': 'print(1)',}"}},
    ]}, interpreter_names=("run_code",))
    assert message.parse_error is None
    assert [(c.id, c.kind, c.code) for c in message.tool_calls] == [("a", "interpreter", "print(1)")]
    bad = message_from_openai_response({"role": "assistant", "tool_calls": [
        {"id": "b", "function": {"name": "f", "arguments": "[1, 2]"}}]})
    assert bad.tool_calls == [] and "'f'" in bad.parse_error


# -- streaming --------------------------------------------------------------------------------------
def test_stream_text_then_final_message(server):
    chunks = list(make(server, "plain").stream([Message.user("stream please")]))
    *deltas, final = chunks
    assert len(deltas) > 3 and all(c.message is None and c.delta for c in deltas)
    assert final.done and final.message.text == "".join(c.delta for c in deltas)
    assert final.message.text == "You said: stream please — héllo 日本!"
    assert final.message.usage.completion_tokens == len(final.message.text.split()) + 3
    assert final.message.usage.prompt_tokens == 2
    body = server.bodies("plain")[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_assembles_interleaved_tool_call_deltas(server):
    chunks = list(make(server, "two-tools").stream([Message.user("weather and time")], tools=[WEATHER, TIME]))
    final = chunks[-1].message
    assert "".join(c.delta for c in chunks[:-1]) == "Checking both." == final.text
    assert [(c.id, c.name, c.arguments) for c in final.tool_calls] == [
        ("call_w", "get_weather", {"city": "Paris"}), ("call_t", "get_time", {"city": "Paris"})]
    assert final.meta["finish_reason"] == "tool_calls"
    assert final.usage.completion_tokens == 5


def test_stream_without_usage_estimates_it(server):
    model = make(server, "plain", extra_body={"stream_options": {"include_usage": False}})
    final = list(model.stream([Message.user("hi")]))[-1].message
    assert final.meta["usage_estimated"] is True and final.usage.completion_tokens > 0


def test_stream_from_a_server_that_ignores_stream_true(server):
    chunks = list(make(server, "no-stream").stream([Message.user("whole")], tools=[WEATHER]))
    assert [c.done for c in chunks] == [True]  # no text, one tool call: only the final message
    assert chunks[-1].message.tool_calls[0].name == "get_weather"
    assert chunks[-1].message.usage.prompt_tokens == 1


async def test_astream_from_a_server_that_ignores_stream_true(server):
    chunks = [c async for c in make(server, "no-stream").astream([Message.user("whole")])]
    assert chunks[0].delta == chunks[-1].message.text == "You said: whole — héllo 日本!"


# -- async ------------------------------------------------------------------------------------------
async def test_agenerate_and_astream_match_sync(server):
    model = make(server, "two-tools")
    conversation = [Message.user("weather and time")]
    sync = model.generate(conversation, tools=[WEATHER, TIME])
    reply = await model.agenerate(conversation, tools=[WEATHER, TIME])
    assert reply.model_dump(exclude={"usage"}) == sync.model_dump(exclude={"usage"})
    chunks = [c async for c in model.astream(conversation, tools=[WEATHER, TIME])]
    final = chunks[-1].message
    assert "".join(c.delta for c in chunks[:-1]) == final.text == sync.text
    assert [c.model_dump() for c in final.tool_calls] == [c.model_dump() for c in sync.tool_calls]
    assert final.usage.prompt_tokens == sync.usage.prompt_tokens


async def test_abatch_keeps_order(server):
    replies = await make(server, "plain").abatch([[Message.user(f"q{i}")] for i in range(5)])
    assert [r.text.split(" — ")[0] for r in replies] == [f"You said: q{i}" for i in range(5)]


def test_batch_keeps_order(server):
    replies = make(server, "plain", max_concurrency=3).batch([[Message.user(f"n{i}")] for i in range(6)])
    assert [r.text.split(" — ")[0] for r in replies] == [f"You said: n{i}" for i in range(6)]


# -- retries and errors -----------------------------------------------------------------------------
def test_500_is_retried_then_succeeds(server):
    reply = make(server, "flaky-2", max_retries=2).generate([Message.user("again")])
    assert reply.text.startswith("You said: again")
    assert len(server.bodies("flaky-2")) == 3


def test_500_after_retries_is_a_clear_error(server):
    with pytest.raises(ModelHTTPError) as info:
        make(server, "flaky-9", max_retries=1).generate([Message.user("x")])
    assert info.value.status == 500
    assert "HTTP 500" in str(info.value) and "engine overloaded" in str(info.value)
    assert len(server.bodies("flaky-9")) == 2


async def test_async_stream_retries_500(server):
    chunks = [c async for c in make(server, "flaky-1").astream([Message.user("async")])]
    assert chunks[-1].message.text.startswith("You said: async")
    assert len(server.bodies("flaky-1")) == 2


def test_429_honours_retry_after(server):
    assert make(server, "limited").generate([Message.user("x")]).text.startswith("You said")
    assert len(server.bodies("limited")) == 2


def test_401_is_not_retried_and_says_what_to_do(server):
    with pytest.raises(ModelHTTPError) as info:
        make(server, "locked").generate([Message.user("x")])
    message = str(info.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message and "OPENAI_API_KEY" in message
    assert info.value.status == 401 and len(server.bodies("locked")) == 1


async def test_async_401(server):
    with pytest.raises(ModelHTTPError, match="HTTP 401"):
        await make(server, "locked").agenerate([Message.user("x")])


def test_wrong_path_says_check_base_url(server):
    model = OpenAIChatModel(server.base_url.removesuffix("/v1"), "m", retry_backoff_s=0.01)
    with pytest.raises(ModelHTTPError, match="HTTP 404.*base URL"):
        model.generate([Message.user("x")])


def test_unreachable_server_is_retried_then_reported():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", "m", retry_backoff_s=0.01, max_retries=1)
    with pytest.raises(ModelHTTPError, match="could not reach .*is the server running") as info:
        model.generate([Message.user("x")])
    assert info.value.status is None


def test_mock_transport_serves_sync_and_async():
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": "mocked"}}]})

    model = OpenAIChatModel("http://model.test/v1", "m", transport=httpx.MockTransport(handle))
    assert model.generate([Message.user("x")]).text == "mocked"
    import asyncio

    assert asyncio.run(model.agenerate([Message.user("x")])).text == "mocked"


def test_not_a_chat_completion_is_reported():
    model = OpenAIChatModel("http://model.test/v1", "m",
                            transport=httpx.MockTransport(lambda r: httpx.Response(200, text="<html>hi</html>")))
    with pytest.raises(ModelHTTPError, match="not a chat completion"):
        model.generate([Message.user("x")])


# -- specs ------------------------------------------------------------------------------------------
def test_load_model_openai_spec(server):
    model = load_model(f"openai:{server.base_url}#spec-model", retry_backoff_s=0.01)
    assert isinstance(model, OpenAIChatModel)
    assert (model.base_url, model.model) == (server.base_url, "spec-model")
    assert model.model_name == f"openai:{server.base_url}#spec-model"
    assert model.with_protocol(object()) is model  # native tools: text protocols do not apply
    assert model.generate([Message.user("via spec")]).text.startswith("You said: via spec")


@pytest.mark.parametrize("spec, needle", [
    ("openai:http://localhost:8000/v1", "BASE_URL#MODEL"),
    ("openai:localhost:8000/v1#m", "http://"),
    ("openai:http://localhost:8000/v1#", "BASE_URL#MODEL"),
    ("nonsense", "unknown model spec"),
    ("gpt:foo", "unknown model spec"),
])
def test_bad_specs_are_config_errors(spec, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_model(spec)


def test_importing_models_does_not_import_torch():
    code = ("import sys, agentkit.models, agentkit.models.openai_compat, agentkit.models.embedded; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
