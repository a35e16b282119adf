"""The chat UI's API through FastAPI's TestClient: a real SQLite checkpointer, a real Jupyter kernel for uploads,
real image artifacts; the scripted model stands in for the LLM because these tests are about the server.

``make_chat_agent`` is shared with tests/test_ui_browser.py."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from agentkit.agents import create_agent  # noqa: E402
from agentkit.apps.ui import create_app  # noqa: E402
from agentkit.apps.ui.launch import build_chat_app  # noqa: E402
from agentkit.checkpoint import sqlite_checkpointer  # noqa: E402
from agentkit.errors import ConfigError  # noqa: E402
from agentkit.messages import Message, ToolCall  # noqa: E402
from agentkit.models.scripted import ScriptedModel  # noqa: E402
from agentkit.tools.base import tool  # noqa: E402
from agentkit.tools.io import ImageIO  # noqa: E402

GREETING = "Hello! I am the scripted assistant, answering word by word."


class SlowScriptedModel(ScriptedModel):
    """Streams each word after a pause, so a page can be seen filling in before the answer is complete."""

    def __init__(self, script, delay_s: float = 0.0, **kw):
        super().__init__(script, **kw)
        self.delay_s = delay_s

    def stream(self, messages, *, tools=None, config=None):
        for chunk in super().stream(messages, tools=tools, config=config):
            if self.delay_s and chunk.delta:
                time.sleep(self.delay_s)
            yield chunk


def script(messages: list[Message]) -> Message | str:
    """Answers from what was asked: a refund (needs approval), a drawing (an image), a CSV (the interpreter)."""
    question = [m for m in messages if m.role == "user"][-1].text.lower()
    last = messages[-1]
    if last.role == "environment" and last.meta.get("tool_name") == "draw_square":
        return Message.assistant("Here is a red square, 48 pixels wide.")
    if last.role == "environment":
        return Message.assistant(f"Done. The tool said: {last.text.strip()}")
    if "refund" in question:
        return Message.assistant("I will refund order 7.", [ToolCall(name="refund", arguments={"order": 7})])
    if "draw" in question:
        return Message.assistant("", [ToolCall(name="draw_square", arguments={"size": 48})])
    if "csv" in question:
        code = "print(open('data.csv').read().strip())"
        call = ToolCall(name="python_interpreter", kind="interpreter", arguments={"code": code})
        return Message.assistant("", [call])
    return GREETING


def make_chat_agent(db: Path, refunds: list, *, delay_s: float = 0.0, interpreter_dir: Path | None = None):
    """A react agent with a refund tool that asks first, an image tool, and optionally the interpreter."""

    @tool(requires_approval=True)
    def refund(order: int) -> str:
        """Refund an order in full."""
        refunds.append(order)
        return f"refunded order {order}"

    @tool
    def draw_square(size: int) -> ImageIO:
        """Draw a red square of the given size."""
        from PIL import Image

        return ImageIO(Image.new("RGB", (size, size), (220, 30, 30)))

    tools = [refund, draw_square]
    if interpreter_dir is not None:
        from agentkit.tools import load_tool

        tools.append(load_tool("python_interpreter", workdir=str(interpreter_dir)))
    model = SlowScriptedModel(script, delay_s=delay_s)
    return create_agent("react", model, tools=tools, checkpointer=sqlite_checkpointer(db))


def sse(response) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent-events body."""
    events = []
    for frame in response.text.split("\n\n"):
        if not frame.strip():
            continue
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path))
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    return tmp_path


@pytest.fixture
def refunds() -> list:
    return []


@pytest.fixture
def client(home, refunds) -> Iterator[TestClient]:
    agent = make_chat_agent(home / "threads.sqlite", refunds)
    with TestClient(create_app(agent, workdir=home / "work")) as test_client:
        yield test_client


def test_page_and_info(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/static/app.js"' in page.text
    assert client.get("/static/app.js").status_code == 200
    info = client.get("/api/info").json()
    assert info["agent"] == "react" and info["upload"] is True
    assert {t["name"]: t["requires_approval"] for t in info["tools"]} == {"refund": True, "draw_square": False}


def test_chat_streams_tokens_then_the_result_and_the_thread_is_listed(client):
    response = client.post("/api/chat", json={"message": "hi there"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(response)
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "thread" and kinds[-1] == "result"
    tokens = [data["delta"] for kind, data in events if kind == "token"]
    assert len(tokens) > 5 and "".join(tokens) == GREETING
    assert kinds.index("token") < kinds.index("step")  # tokens arrive before the step that holds them
    thread_id = events[0][1]["thread_id"]
    result = events[-1][1]
    assert result == {**result, "thread_id": thread_id, "outcome": "answer", "answer": GREETING, "pending": []}

    listed = client.get("/api/threads").json()["threads"]
    assert [(t["id"], t["title"], t["messages"], t["pending"]) for t in listed] == [(thread_id, "hi there", 2, False)]
    thread = client.get(f"/api/threads/{thread_id}").json()
    assert [(m["role"], m["text"]) for m in thread["messages"]] == [("user", "hi there"), ("assistant", GREETING)]

    again = sse(client.post("/api/chat", json={"message": "and again", "thread_id": thread_id}))
    assert again[0][1]["thread_id"] == thread_id
    assert len(client.get(f"/api/threads/{thread_id}").json()["messages"]) == 4


def test_threads_newest_first(client):
    first = sse(client.post("/api/chat", json={"message": "first"}))[0][1]["thread_id"]
    second = sse(client.post("/api/chat", json={"message": "second"}))[0][1]["thread_id"]
    assert [t["id"] for t in client.get("/api/threads").json()["threads"]] == [second, first]
    sse(client.post("/api/chat", json={"message": "first again", "thread_id": first}))
    assert [t["id"] for t in client.get("/api/threads").json()["threads"]] == [first, second]


def test_approval_runs_the_tool_once_and_rejection_never(client, refunds):
    events = sse(client.post("/api/chat", json={"message": "please refund my order"}))
    thread_id = events[0][1]["thread_id"]
    result = events[-1][1]
    assert result["outcome"] == "interrupted" and [c["name"] for c in result["pending"]] == ["refund"]
    assert result["pending"][0]["arguments"] == {"order": 7} and refunds == []
    assert client.get("/api/threads").json()["threads"][0]["pending"] is True
    assert client.get(f"/api/threads/{thread_id}").json()["pending"][0]["name"] == "refund"

    done = sse(client.post(f"/api/threads/{thread_id}/decision", json={"action": "approve"}))
    kinds = [kind for kind, _ in done]  # the continued run streams like a chat turn
    assert kinds[0] == "thread" and kinds[-1] == "result" and "step" in kinds and "token" in kinds
    assert done[-1][1]["outcome"] == "answer" and "refunded order 7" in done[-1][1]["answer"]
    assert refunds == [7]
    again = client.post(f"/api/threads/{thread_id}/decision", json={"action": "approve"})
    assert again.status_code == 409 and "waits for a decision" in again.json()["error"] and refunds == [7]

    other = sse(client.post("/api/chat", json={"message": "refund it"}))[0][1]["thread_id"]
    rejected = sse(client.post(f"/api/threads/{other}/decision", json={"action": "reject", "reason": "too late"}))
    assert rejected[-1][1]["outcome"] == "answer" and "rejected" in rejected[-1][1]["answer"]
    assert refunds == [7]
    steps = client.get(f"/api/threads/{other}").json()["messages"]
    assert any(m["role"] == "environment" and m["error"] and "too late" in m["text"] for m in steps)


def test_tool_images_are_served_by_hash_and_nothing_else_is(client, home):
    events = sse(client.post("/api/chat", json={"message": "draw a square"}))
    results = [m for kind, data in events if kind == "step" for m in data["messages"] if m["role"] == "environment"]
    [url] = results[0]["images"]
    assert url.startswith("/api/artifacts/") and str(home) not in json.dumps(results)
    image = client.get(url)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert ImageIO(image.content).size == (48, 48)
    thread = client.get(f"/api/threads/{events[0][1]['thread_id']}").json()
    assert any(m["images"] == [url] for m in thread["messages"])

    (home / "secret.png").write_bytes(b"not yours")
    for name in ("secret.png", "0123456789abcdef.png", "..%2Fsecret.png", "%2E%2E%2Fsecret.png"):
        missing = client.get(f"/api/artifacts/{name}")
        assert missing.status_code == 404 and missing.content != b"not yours"
    assert "content hash" in client.get("/api/artifacts/secret.png").json()["error"]


@pytest.mark.parametrize("body, field", [
    ({}, "message"),
    ({"message": ""}, "message"),
    ({"message": "   "}, "blank"),
    ({"message": "hi", "thread_id": "../etc"}, "thread_id"),
    ({"message": "x" * 20_001}, "message"),
])
def test_bad_chat_requests_say_what_is_wrong(client, body, field):
    response = client.post("/api/chat", json=body)
    assert response.status_code == 422 and field in response.json()["error"]


def test_bad_requests_elsewhere(client):
    assert client.get("/api/threads/nope").status_code == 404
    assert "no thread 'nope'" in client.get("/api/threads/nope").json()["error"]
    assert client.get("/api/threads/bad%20id!").status_code == 400
    nothing = client.post("/api/threads/nope/decision", json={"action": "approve"})
    assert nothing.status_code == 409 and "waits for a decision" in nothing.json()["error"]
    bad = client.post("/api/threads/nope/decision", json={"action": "maybe"})
    assert bad.status_code == 422 and "action" in bad.json()["error"]
    no_file = client.post("/api/upload")
    assert no_file.status_code == 422 and "file" in no_file.json()["error"]
    hidden = client.post("/api/upload", files={"file": (".bashrc", b"x")})
    assert hidden.status_code == 400 and "not starting with a dot" in hidden.json()["error"]


def test_a_thread_runs_one_request_at_a_time(client):
    service = client.app.state.chat
    service.claim("busy")
    try:
        response = client.post("/api/chat", json={"message": "hi", "thread_id": "busy"})
        assert response.status_code == 409 and "still running" in response.json()["error"]
    finally:
        service.release("busy")
    assert sse(client.post("/api/chat", json={"message": "hi", "thread_id": "busy"}))[-1][1]["outcome"] == "answer"


async def test_a_run_finishes_and_frees_its_thread_even_if_nobody_reads_it(home, refunds):
    import asyncio

    from agentkit.apps.ui import ChatService

    service = ChatService(make_chat_agent(home / "threads.sqlite", refunds))
    service.claim("t")
    service.start("t", lambda: service.chat_events("hi", "t"))  # the page went away before the first event
    deadline = time.monotonic() + 20
    while service._running and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert service._running == set()
    assert [m.text for m in service.agent.history("t")] == ["hi", GREETING]


def test_a_failing_run_ends_with_an_error_event(home):
    agent = create_agent("react", ScriptedModel([]), checkpointer=sqlite_checkpointer(home / "t.sqlite"))
    with TestClient(create_app(agent)) as client:
        events = sse(client.post("/api/chat", json={"message": "hi"}))
        assert events[-1][0] == "error" and "script has 0 outputs" in events[-1][1]["message"]
        assert client.app.state.chat._running == set()  # the thread is free again
        refused = client.post("/api/upload", files={"file": ("a.txt", b"x")})
        assert refused.status_code == 409 and "--tools python_interpreter" in refused.json()["error"]


def test_upload_lands_in_the_interpreter_work_dir_and_the_code_reads_it(home, refunds):
    work = home / "work"
    agent = make_chat_agent(home / "threads.sqlite", refunds, interpreter_dir=work)
    with TestClient(create_app(agent, workdir=work, max_upload_bytes=1000)) as client:
        stored = client.post("/api/upload", files={"file": ("data.csv", b"a,b\n1,2\n", "text/csv")})
        assert stored.json() == {"name": "data.csv", "size": 8} and (work / "data.csv").read_bytes() == b"a,b\n1,2\n"
        assert not [p for p in work.iterdir() if p.name.startswith(".tmp")]
        events = sse(client.post("/api/chat", json={"message": "read the csv"}))
        assert events[-1][1]["outcome"] == "answer" and "a,b\n1,2" in events[-1][1]["answer"]
        big = client.post("/api/upload", files={"file": ("big.bin", b"x" * 1001)})
        assert big.status_code == 413 and "smaller file" in big.json()["error"] and not (work / "big.bin").exists()
        agent.parts.tools["python_interpreter"].close()


def test_threads_persist_in_the_sqlite_file(home, refunds):
    db = home / "threads.sqlite"
    with TestClient(create_app(make_chat_agent(db, refunds))) as client:
        thread_id = sse(client.post("/api/chat", json={"message": "remember me"}))[0][1]["thread_id"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT thread_id) FROM checkpoints").fetchone() == (1,)
    with TestClient(create_app(make_chat_agent(db, refunds))) as client:  # a new server on the same file
        assert client.get("/api/threads").json()["threads"][0]["id"] == thread_id
        assert client.get(f"/api/threads/{thread_id}").json()["messages"][0]["text"] == "remember me"


def test_build_chat_app_from_command_line_choices(home, tmp_path):
    script_file = tmp_path / "script.jsonl"
    script_file.write_text(json.dumps({"text": "Final Answer: 42"}) + "\n")
    app = build_chat_app(f"scripted:{script_file}", "react", "calculator,python_interpreter",
                         db=tmp_path / "ui.sqlite")
    with TestClient(app) as client:
        info = client.get("/api/info").json()
        assert [t["name"] for t in info["tools"]] == ["calculator", "python_interpreter"] and info["upload"]
        assert client.post("/api/upload", files={"file": ("n.txt", b"1")}).status_code == 200
        assert (tmp_path / "ui-files" / "n.txt").read_text() == "1"
        assert sse(client.post("/api/chat", json={"message": "?"}))[-1][1]["answer"] == "42"
    assert not build_chat_app(f"scripted:{script_file}", "rewoo", "", db=tmp_path / "ui.sqlite") \
        .state.chat.info()["upload"]
    with pytest.raises(ConfigError, match="unknown agent 'chatty'"):
        build_chat_app(f"scripted:{script_file}", "chatty", "", db=tmp_path / "ui.sqlite")
    with pytest.raises(ConfigError, match="checkpointer"):
        create_app(create_agent("react", ScriptedModel(["x"]), checkpointer=None))


def test_cli_ui_rejects_a_bad_agent_before_serving(home):
    from agentkit.cli import main

    assert main(["ui", "--agent", "chatty", "--model", "scripted:nowhere.jsonl"]) == 2


def test_the_ui_command_serves_the_page(tmp_path):
    """``agentkit ui`` in its own process, as a user starts it: the page and the API answer on the port."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    script_file = tmp_path / "script.jsonl"
    script_file.write_text(json.dumps({"text": "Final Answer: 42"}) + "\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "agentkit", "ui", "--model", f"scripted:{script_file}", "--tools", "calculator",
               "--port", str(port), "--db", str(tmp_path / "ui.sqlite")]
    env = {**os.environ, "AGENTKIT_HOME": str(tmp_path)}
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2) as response:
                    info = json.loads(response.read())
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "agentkit ui did not answer within 60 s"
                time.sleep(0.2)
        assert info["model"] == f"scripted:{script_file}" and [t["name"] for t in info["tools"]] == ["calculator"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
            assert b"agentkit chat" in response.read()
    finally:
        server.terminate()
        server.wait(10)
    assert (tmp_path / "ui.sqlite").exists()


@pytest.mark.slow
def test_the_embedded_model_streams_through_the_ui(home):
    """The real default model behind the page: its tokens arrive as events and the parsed answer is made of them."""
    from agentkit.budgets import Budget
    from agentkit.models import load_model

    agent = create_agent("react", load_model("embedded"), tools=["calculator"], budget=Budget(max_steps=2),
                         checkpointer=sqlite_checkpointer(home / "threads.sqlite"),
                         generation={"max_new_tokens": 48})
    with TestClient(create_app(agent)) as client:
        events = sse(client.post("/api/chat", json={"message": "What is 2+3?"}))
        streamed = "".join(data["delta"] for kind, data in events if kind == "token")
        kind, result = events[-1]
        assert kind == "result" and result["outcome"] not in ("error", "interrupted"), result  # a weak model may
        # run out of steps or write something unparseable; the page must still get a clean end
        assert streamed.strip() and result["tokens"] > 0
        if result["outcome"] == "answer":
            assert result["answer"] and result["answer"] in streamed
        assert client.get("/api/threads").json()["threads"][0]["id"] == result["thread_id"]
