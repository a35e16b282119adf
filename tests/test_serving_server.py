"""The OpenAI-compatible server on a real uvicorn on loopback, talked to by our client and the openai SDK."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from agentkit.errors import ConfigError
from agentkit.llm import GenerationConfig
from agentkit.messages import Message
from agentkit.models.openai_compat import ModelHTTPError, OpenAIChatModel
from agentkit.models.scripted import ScriptedModel
from agentkit.models.serving.engine import Engine, EngineConfig, EngineModel, SamplingParams
from agentkit.models.serving.metrics import Counter, Histogram, Registry
from agentkit.models.serving.server import create_app
from agentkit.protocols.internlm2 import InternLM2Protocol
from agentkit.toolspec import ToolSpec

NAME = "tiny"
KEY = "sk-test-key"
WEATHER = ToolSpec(name="get_weather", description="Weather for a city",
                   parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


def load_tokenizer():
    from agentkit.models import embedded

    try:
        gguf = embedded.embedded_gguf_path()
    except ConfigError as exc:
        pytest.skip(str(exc))
    cached = embedded.embedded_cache_dir()
    if (cached / "tokenizer.json").is_file():
        return transformers.AutoTokenizer.from_pretrained(cached)
    return transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def tiny_llama(tokenizer):
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True, initializer_range=0.5,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config).eval()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(app):
    """uvicorn on a free loopback port in a thread; stopped and joined on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from a second thread, and lose badly when another process holds the other core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def engine(tokenizer):
    """An fp32 engine whose loop runs in a thread (the main thread belongs to pytest here)."""
    engine = Engine(tiny_llama(tokenizer), tokenizer, EngineConfig(dtype="float32", max_new_tokens=16),
                    protocol=InternLM2Protocol(), model_name="tiny-llama")
    loop = threading.Thread(target=engine.run_forever, kwargs={"idle_wait_s": 0.05}, daemon=True)
    loop.start()
    yield engine
    engine.shutdown()
    loop.join(10)


@pytest.fixture(scope="module")
def url(engine):
    with running(create_app(engine, NAME)) as base:
        yield base


@pytest.fixture(scope="module")
def keyed_url(engine):
    with running(create_app(engine, NAME, api_key=KEY)) as base:
        yield base


def sdk(base: str, **kw):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{base}/v1", api_key=kw.pop("api_key", "unused"), max_retries=0, **kw)


def expected(engine: Engine, messages: list[Message], n: int, tools=None) -> str:
    """The raw greedy continuation the engine gives for this conversation (what the server must return)."""
    protocol = InternLM2Protocol()
    prompt = protocol.prompt(messages, tools)
    return engine.submit(prompt, SamplingParams(max_tokens=n, stop=protocol.stop_words)).result(timeout=30).text


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- chat through both clients --------------------------------------------------------------------------

def test_chat_non_stream_with_our_client_and_the_sdk(url, engine):
    messages = [Message.system("Be brief."), Message.user("What is the capital of France?")]
    raw = expected(engine, messages, 12)
    want = InternLM2Protocol().parse(raw).text
    ours = OpenAIChatModel(f"{url}/v1", NAME, max_retries=0)
    reply = ours.generate(messages, config=GenerationConfig(max_new_tokens=12))
    assert reply.text == want
    assert reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 10
    assert reply.meta["finish_reason"] in ("stop", "length")

    result = sdk(url).chat.completions.create(
        model=NAME, messages=[m.to_openai() for m in messages], max_tokens=12, temperature=0)
    assert result.choices[0].message.content == want
    assert result.choices[0].finish_reason == reply.meta["finish_reason"]
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_chat_stream_with_our_client_and_the_sdk(url, engine):
    messages = [Message.user("Tell me a story.")]
    raw = expected(engine, messages, 16)
    chunks = list(OpenAIChatModel(f"{url}/v1", NAME, max_retries=0).stream(
        messages, config=GenerationConfig(max_new_tokens=16)))
    assert "".join(c.delta for c in chunks) == raw
    final = chunks[-1].message
    assert final.usage.completion_tokens >= 1 and not final.meta.get("usage_estimated")

    stream = sdk(url).chat.completions.create(model=NAME, messages=[m.to_openai() for m in messages],
                                              max_tokens=16, temperature=0, stream=True,
                                              stream_options={"include_usage": True})
    events = list(stream)
    text = "".join(e.choices[0].delta.content or "" for e in events if e.choices)
    assert text == raw
    assert [e.choices[0].finish_reason for e in events if e.choices][-1] in ("stop", "length")
    assert events[-1].usage.completion_tokens == final.usage.completion_tokens


def test_usage_reports_prefix_cache_hits_as_cached_tokens(url, engine):
    system = Message.system("You answer questions about the weather in the city of Lisbon, briefly and politely. "
                            "Never mention other cities, and say when you do not know.")
    client = sdk(url)
    counts = []
    for question in ("Is it raining?", "Is it windy?"):
        messages = [system.to_openai(), Message.user(question).to_openai()]
        reply = client.chat.completions.create(model=NAME, messages=messages, max_tokens=4, temperature=0)
        counts.append(reply.usage.prompt_tokens_details.cached_tokens)
    assert counts[1] >= 16 and counts[1] % engine.config.prefix_block == 0  # the shared system prompt, in blocks
    assert counts[1] < reply.usage.prompt_tokens

    stream = client.chat.completions.create(model=NAME, messages=messages, max_tokens=4, temperature=0,
                                            stream=True, stream_options={"include_usage": True})
    assert list(stream)[-1].usage.prompt_tokens_details.cached_tokens >= counts[1]
    text = client.completions.create(model=NAME, prompt=InternLM2Protocol().prompt(
        [system, Message.user("Is it sunny?")], None), max_tokens=4, temperature=0)
    assert text.usage.prompt_tokens_details.cached_tokens >= 16


def test_concurrent_requests_share_the_engine(url, engine):
    messages = [[Message.user(f"Count to {i}.")] for i in range(6)]
    wants = [InternLM2Protocol().parse(expected(engine, m, 10)).text for m in messages]
    client = OpenAIChatModel(f"{url}/v1", NAME, max_retries=0, max_concurrency=6)
    before = engine.metrics.steps.value()
    replies = client.batch(messages, config=GenerationConfig(max_new_tokens=10))
    assert [r.text for r in replies] == wants
    assert engine.metrics.steps.value() - before < 6 * 10  # they were decoded together


def test_tools_round_trip_through_the_protocol():
    """A scripted InternLM2 action becomes OpenAI tool_calls, for our client and the SDK, stream or not."""
    action = ('Let me check.<|action_start|><|plugin|>\n{"name": "get_weather", "parameters": {"city": "Paris"}}'
              '<|action_end|>')
    seen_prompts: list[str] = []

    def script(messages):
        seen_prompts.append(InternLM2Protocol().prompt(messages, [WEATHER]))
        return action if messages[-1].role == "user" else "It is sunny in Paris."

    model = ScriptedModel(script, protocol=InternLM2Protocol())
    with running(create_app(model, "scripted")) as base:
        ours = OpenAIChatModel(f"{base}/v1", "scripted", max_retries=0)
        for reply in (ours.generate([Message.user("Weather in Paris?")], tools=[WEATHER]),
                      list(ours.stream([Message.user("Weather in Paris?")], tools=[WEATHER]))[-1].message):
            assert reply.text == "Let me check."
            assert [(c.name, c.arguments) for c in reply.tool_calls] == [("get_weather", {"city": "Paris"})]
            assert reply.meta["finish_reason"] == "tool_calls"

        client = sdk(base)
        first = client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER.to_openai()])
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
        follow_up = [
            {"role": "user", "content": "Weather in Paris?"},
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny"}'},
        ]
        second = client.chat.completions.create(model="scripted", messages=follow_up, tools=[WEATHER.to_openai()])
        assert second.choices[0].message.content == "It is sunny in Paris."
        assert second.choices[0].message.tool_calls is None

        events = list(client.chat.completions.create(
            model="scripted", messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER.to_openai()], stream=True))
        parts = [tc for e in events if e.choices for tc in e.choices[0].delta.tool_calls or []]
        assert parts[0].function.name == "get_weather" and json.loads(parts[0].function.arguments) == {"city": "Paris"}
    assert '"get_weather"' in seen_prompts[0] and "<|plugin|>" in seen_prompts[0]  # tools reached the prompt
    assert any('environment name=<|plugin|>\n{"sky": "sunny"}' in p for p in seen_prompts)  # the result came back


def test_tools_with_the_engine_render_and_parse(url, engine):
    """The engine path renders tools into the prompt (more prompt tokens) and answers a well-formed reply."""
    client = sdk(url)
    bare = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                          temperature=0)
    tooled = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=4,
                                            temperature=0, tools=[WEATHER.to_openai()])
    assert tooled.usage.prompt_tokens > bare.usage.prompt_tokens + 20
    assert tooled.choices[0].finish_reason in ("stop", "length", "tool_calls")
    streamed = list(client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}],
                                                   max_tokens=4, temperature=0, tools=[WEATHER.to_openai()],
                                                   stream=True))
    assert "".join(e.choices[0].delta.content or "" for e in streamed if e.choices) == tooled.choices[0].message.content


def test_a_client_that_goes_away_frees_its_row(url, engine):
    cancelled = engine.metrics.requests.value(finish_reason="cancelled")
    body = {"model": NAME, "messages": [{"role": "user", "content": "Go on forever."}], "max_tokens": 900,
            "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                break  # text is flowing: the request is in the batch
    deadline = time.monotonic() + 10
    while (engine.num_running or engine.metrics.requests.value(finish_reason="cancelled") == cancelled) \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.metrics.requests.value(finish_reason="cancelled") == cancelled + 1
    assert engine.num_running == 0


# -- the other routes -------------------------------------------------------------------------------------

def test_completions_models_and_health(url, engine):
    prompt = "Once upon a time"
    raw = engine.submit(prompt, SamplingParams(max_tokens=8)).result(timeout=30).text
    client = sdk(url)
    result = client.completions.create(model=NAME, prompt=prompt, max_tokens=8, temperature=0)
    assert result.choices[0].text == raw and result.choices[0].finish_reason == "length"
    two = client.completions.create(model=NAME, prompt=[prompt, "Hi"], max_tokens=8, temperature=0)
    assert len(two.choices) == 2 and two.choices[0].text == raw
    streamed = list(client.completions.create(model=NAME, prompt=prompt, max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == raw
    assert [m.id for m in client.models.list()] == [NAME]
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and {"running", "queued"} <= set(health)


def test_seeded_sampling_over_http(url):
    client = sdk(url)

    def ask(seed):
        return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=10,
                                              temperature=1.3, seed=seed).choices[0].message.content

    assert ask(3) == ask(3)


def test_metrics_move(url):
    before = httpx.get(f"{url}/metrics").text
    sdk(url).chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                     temperature=0)
    after = httpx.get(f"{url}/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    text = after.text
    for name in ("agentkit_engine_requests_total", "agentkit_engine_generation_tokens_total",
                 "agentkit_engine_time_to_first_token_seconds_count",
                 "agentkit_engine_time_per_output_token_seconds_count"):
        assert metric(text, name) > metric(before, name), name
    assert metric(text, "agentkit_engine_generation_tokens_total") - metric(
        before, "agentkit_engine_generation_tokens_total") >= 5
    assert re.search(r'^agentkit_http_requests_total\{route="/v1/chat/completions",code="200"\} \d+$', text, re.MULTILINE)
    assert "# TYPE agentkit_engine_requests_running gauge" in text
    assert re.search(r'^agentkit_engine_time_to_first_token_seconds_bucket\{le="\+Inf"\} \d+$', text, re.MULTILINE)


def test_metric_types_render_prometheus_text():
    count = Counter("x_total", "Things.", ["kind"])
    count.inc(kind='a"b')
    hist = Histogram("lat_seconds", "Latency.", [0.1, 1])
    for value in (0.05, 0.5, 5):
        hist.observe(value)
    text = Registry([count, hist]).render()
    assert 'x_total{kind="a\\"b"} 1\n' in text
    assert 'lat_seconds_bucket{le="0.1"} 1\nlat_seconds_bucket{le="1"} 2\nlat_seconds_bucket{le="+Inf"} 3\n' in text
    assert "lat_seconds_sum 5.55\nlat_seconds_count 3\n" in text


# -- errors -----------------------------------------------------------------------------------------------

def test_api_key_is_required_when_set(keyed_url):
    body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    assert httpx.post(f"{keyed_url}/v1/chat/completions", json=body).status_code == 401
    wrong = httpx.post(f"{keyed_url}/v1/chat/completions", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{keyed_url}/v1/models").status_code == 401
    assert httpx.get(f"{keyed_url}/health").status_code == 200  # probes need no key
    with pytest.raises(ModelHTTPError) as info:
        OpenAIChatModel(f"{keyed_url}/v1", NAME, api_key="nope", max_retries=0).generate([Message.user("Hi")])
    assert info.value.status == 401
    openai = pytest.importorskip("openai")
    with pytest.raises(openai.AuthenticationError):
        sdk(keyed_url).models.list()
    reply = OpenAIChatModel(f"{keyed_url}/v1", NAME, api_key=KEY, max_retries=0).generate(
        [Message.user("Hi")], config=GenerationConfig(max_new_tokens=2))
    assert reply.usage.completion_tokens >= 1
    assert [m.id for m in sdk(keyed_url, api_key=KEY).models.list()] == [NAME]


def test_full_queue_is_503_with_retry_after(tokenizer):
    """An engine nobody drives, its one queue slot taken: the next request is turned away at once."""
    idle = Engine(tiny_llama(tokenizer), tokenizer, EngineConfig(dtype="float32", max_queue=1))
    waiting = idle.submit("a")
    try:
        with running(create_app(idle, NAME)) as base:
            body = {"model": NAME, "messages": [{"role": "user", "content": "Hi"}]}
            for stream in (False, True):
                response = httpx.post(f"{base}/v1/chat/completions", json={**body, "stream": stream})
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert response.json()["error"]["code"] == "queue_full"
            with pytest.raises(ModelHTTPError) as info:
                OpenAIChatModel(f"{base}/v1", NAME, max_retries=0).generate([Message.user("Hi")])
            assert info.value.status == 503
            openai = pytest.importorskip("openai")
            with pytest.raises(openai.APIStatusError) as err:
                sdk(base).chat.completions.create(model=NAME, messages=body["messages"])
            assert err.value.status_code == 503
            metrics = httpx.get(f"{base}/metrics").text
            assert metric(metrics, "agentkit_engine_requests_queued") == 1
    finally:
        idle.shutdown()
    assert waiting.done


@pytest.mark.parametrize("body, status, words", [
    ("{not json", 400, "not valid JSON"),
    ('["a list"]', 400, "object"),
    ({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "temprature": 0}, 400, "unknown field 'temprature'"),
    ({"model": NAME, "messages": []}, 400, "messages"),
    ({"model": NAME}, 400, "missing field 'messages'"),
    ({"model": NAME, "messages": [{"role": "wizard", "content": "Hi"}]}, 400, "messages[0]: unknown role"),
    ({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "n": 2}, 400, "n=1"),
    ({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "temperature": 3}, 400, "temperature"),
    ({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 0}, 400, "max_tokens"),
    ({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "tools": [{"type": "function", "function": {}}]},
     400, "tools[0]"),
    ({"model": NAME, "messages": [{"role": "user", "content": "Hi"}], "tool_choice": "required"}, 400, "tool_choice"),
    ({"model": NAME, "messages": [{"role": "user", "content": "x" * 6000}]}, 400, "reads at most 1024"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "Hi"}]}, 404, "not served here"),
])
def test_bad_requests_are_4xx_with_a_message(url, body, status, words):
    content = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(f"{url}/v1/chat/completions", content=content,
                          headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert words in response.json()["error"]["message"]


def test_completions_reject_chat_only_models_and_unsupported_fields(url):
    with running(create_app(ScriptedModel(["hi"]), "scripted")) as base:
        response = httpx.post(f"{base}/v1/completions", json={"model": "scripted", "prompt": "x"})
        assert response.status_code == 400 and "prompts" in response.json()["error"]["message"]
    response = httpx.post(f"{url}/v1/completions", json={"model": NAME, "prompt": "x", "echo": True})
    assert response.status_code == 400 and "echo" in response.json()["error"]["message"]


def test_engine_model_app_without_a_driver_steps_on_the_event_loop(tokenizer):
    """Nobody runs the engine's loop: the request handlers step it themselves and still answer."""
    engine = Engine(tiny_llama(tokenizer), tokenizer, EngineConfig(dtype="float32", max_new_tokens=4))
    with running(create_app(EngineModel(engine, InternLM2Protocol()), NAME)) as base:
        client = OpenAIChatModel(f"{base}/v1", NAME, max_retries=0, max_concurrency=3)
        config = GenerationConfig(max_new_tokens=4)
        replies = client.batch([[Message.user(str(i))] for i in range(3)], config=config)
        assert all(1 <= r.usage.completion_tokens <= 4 for r in replies)
        assert list(client.stream([Message.user("x")], config=config))[-1].message.usage.completion_tokens <= 4


def test_agentkit_serve_command(tmp_path, tokenizer):
    """The real command: engine loop on the main thread of its own process, uvicorn in a thread; Ctrl-C stops it."""
    tiny_llama(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentkit", "serve", "--model", f"hf:{tmp_path}", "--port", str(port),
         "--dtype", "float32", "--threads", "1", "--max-batch-size", "4", "--api-key", KEY],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=Path(__file__).parent.parent,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        client = OpenAIChatModel(f"http://127.0.0.1:{port}/v1", tmp_path.name, api_key=KEY, max_retries=0)
        reply = client.generate([Message.user("Hi")], config=GenerationConfig(max_new_tokens=3))
        assert reply.usage.completion_tokens >= 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert f"serving hf:{tmp_path} at http://127.0.0.1:{port}/v1" in output


def test_serve_on_a_port_in_use_says_so(tmp_path, tokenizer):
    from agentkit.models.serving.server import serve

    tiny_llama(tokenizer).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="port in use"):
            serve(f"hf:{tmp_path}", port=port, config=EngineConfig(dtype="float32", threads=1), log_level="critical")


def test_serve_help_lists_the_options():
    from typer.testing import CliRunner

    from agentkit.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--port", "--host", "--api-key", "--max-batch-size", "--join-window-ms"):
        assert option in result.output
