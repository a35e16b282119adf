"""web_search: our code plus ddgs's real request building and HTML parser, fed a recorded DuckDuckGo page at the
transport layer — no network. Unreachable and silent endpoints must give a clear error within the time limit."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from agentkit.errors import ConfigError
from agentkit.toolspec import Tool, ToolError
from agentkit.tools.web_search import WebSearch, render

FIXTURES = Path(__file__).parent / "fixtures" / "web_search"
QUERY = "python asyncio tutorial"


@dataclass
class RecordedResponse:
    """What ddgs reads from a ``primp`` response."""

    status_code: int
    text: str

    @property
    def content(self) -> bytes:
        return self.text.encode()


@dataclass
class Replay:
    """A transport answering each request with the next recorded page (the last one repeats)."""

    pages: list[tuple[int, str]]
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    cookies: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def request(self, method: str, url: str, **kwargs: Any) -> RecordedResponse:
        self.calls.append((method, url, kwargs))
        status, name = self.pages[min(len(self.calls), len(self.pages)) - 1]
        return RecordedResponse(status, (FIXTURES / name).read_text(encoding="utf-8"))

    def set_cookies(self, url: str, cookies: dict[str, str]) -> None:
        self.cookies.append((url, cookies))


def replaying(*pages: tuple[int, str]) -> tuple[WebSearch, Replay]:
    transport = Replay(list(pages))
    return WebSearch(backends="duckduckgo", transport=transport), transport


def test_recorded_page_is_parsed_by_ddgs_into_results():
    search, transport = replaying((200, "duckduckgo_results.html"))
    results = search.search(QUERY, max_results=3)
    [(method, url, kwargs)] = transport.calls
    assert (method, url) == ("POST", "https://html.duckduckgo.com/html/")
    assert kwargs["data"]["q"] == QUERY and kwargs["data"]["l"] == "us-en"
    assert results == [
        {
            "title": "asyncio — Asynchronous I/O — Python 3.13.1 documentation",
            "url": "https://docs.python.org/3/library/asyncio.html",
            "snippet": "asyncio is a library to write concurrent code using the async/await syntax. asyncio is used as "
                       "a foundation for multiple Python asynchronous frameworks that provide high-performance "
                       "network and web-servers, database connection libraries, distributed task queues, etc.",
        },
        {
            "title": "Python's asyncio: A Hands-On Walkthrough – Real Python",  # entities decoded, <b> dropped
            "url": "https://realpython.com/async-io-python/",  # DuckDuckGo's redirect link unwrapped
            "snippet": "This tutorial will give you a firm grasp of Python's approach to async IO, which is a "
                       "concurrent programming design that has received dedicated support in Python, evolving "
                       "rapidly from Python 3.4 through 3.7 and beyond.",
        },
        {
            "title": "Coroutines and Tasks — Python 3.13.1 documentation",
            "url": "https://docs.python.org/3/library/asyncio-task.html",
            "snippet": 'This section outlines high-level asyncio APIs to work with coroutines and Tasks. Coroutines '
                       'declared with the async/await syntax is the preferred way of writing asyncio applications. '
                       'For example, the following snippet of code prints "hello", waits 1 second, and then prints '
                       '"world".',
        },
    ]


def test_ads_are_dropped_and_long_snippets_shortened():
    search, _ = replaying((200, "duckduckgo_results.html"), (200, "duckduckgo_no_results.html"))
    results = search.search(QUERY, max_results=20)
    urls = [r["url"] for r in results]
    assert len(urls) == 6 and len(set(urls)) == 6
    assert not any("y.js" in u or "learnpython" in u for u in urls)
    long = next(r for r in results if "superfastpython" in r["url"])
    assert long["snippet"].endswith("…") and len(long["snippet"]) <= 301


def test_more_results_than_a_page_fetch_the_next_page():
    search, transport = replaying((200, "duckduckgo_results.html"), (200, "duckduckgo_no_results.html"))
    assert len(search.search(QUERY, max_results=10)) == 6
    assert len(transport.calls) == 2
    assert transport.calls[1][2]["data"]["s"] == "10"  # ddgs asks DuckDuckGo for the second page
    search, transport = replaying((200, "duckduckgo_results.html"))
    search.search(QUERY, max_results=5)
    assert len(transport.calls) == 1  # enough on the first page: no second request


def test_invoke_renders_compact_numbered_results():
    search, _ = replaying((200, "duckduckgo_results.html"))
    text = search.invoke({"query": QUERY, "max_results": 2})
    assert text.splitlines()[:4] == [
        "1. asyncio — Asynchronous I/O — Python 3.13.1 documentation",
        "   https://docs.python.org/3/library/asyncio.html",
        ("   asyncio is a library to write concurrent code using the async/await syntax. asyncio is used as a "
         "foundation for multiple Python asynchronous frameworks that provide high-performance network and "
         "web-servers, database connection libraries, distributed task queues, etc."),
        "2. Python's asyncio: A Hands-On Walkthrough – Real Python",
    ]
    assert len(text.splitlines()) == 6
    assert render([{"title": "T", "url": "https://t.example", "snippet": ""}]) == "1. T\n   https://t.example"


def test_empty_result_page_says_so():
    search, _ = replaying((200, "duckduckgo_no_results.html"))
    assert search.invoke({"query": "qwzxv plorb"}) == "No results for 'qwzxv plorb'. Try fewer or different keywords."


def test_rate_limited_answer_is_a_clear_error():
    search, _ = replaying((202, "duckduckgo_challenge.html"))
    with pytest.raises(ToolError) as info:
        search.invoke({"query": QUERY})
    assert str(info.value).startswith(
        "web search is unreachable from here: duckduckgo refused the request (rate limited or blocked).")


def test_a_failing_transport_is_reported_per_engine():
    class Down:
        def request(self, method: str, url: str, **kwargs: Any) -> Any:
            raise OSError("network is down")

        def set_cookies(self, url: str, cookies: dict[str, str]) -> None:
            pass

    search = WebSearch(backends=["duckduckgo", "mojeek"], transport=Down())
    with pytest.raises(ToolError) as info:
        search.invoke({"query": QUERY})
    assert str(info.value).startswith(
        "web search is unreachable from here: duckduckgo: network is down; mojeek: network is down.")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_network_fails_fast_with_the_real_http_client():
    search = WebSearch(proxy=f"http://127.0.0.1:{_free_port()}")  # nothing listens there: connection refused
    started = time.perf_counter()
    with pytest.raises(ToolError) as info:
        search.invoke({"query": QUERY})
    assert time.perf_counter() - started < 2.0
    message = str(info.value)
    assert message.startswith("web search is unreachable from here: duckduckgo: ")
    assert "brave:" in message and "mojeek:" in message and "refused" in message.lower()


def test_a_silent_server_cannot_hang_the_tool():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        search = WebSearch(proxy=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
        started = time.perf_counter()
        with pytest.raises(ToolError, match="web search is unreachable from here: duckduckgo: no answer within"):
            search.invoke({"query": QUERY})
        assert time.perf_counter() - started < 4.0  # under httpx's own 5 s default: the tool's 1 s timeout held


def test_arguments_are_checked():
    search, transport = replaying((200, "duckduckgo_results.html"))
    with pytest.raises(ToolError, match="'max_results' should be an integer: Input should be less than or equal"):
        search.invoke({"query": QUERY, "max_results": 50})
    with pytest.raises(ToolError, match="the query is empty"):
        search.invoke({"query": "   "})
    with pytest.raises(ToolError, match="too long"):
        search.invoke({"query": "word " * 200})
    assert transport.calls == []
    with pytest.raises(ConfigError, match="ddgs offers"):
        WebSearch(backends="altavista").search(QUERY)
    with pytest.raises(ConfigError, match="safesearch"):
        WebSearch(safesearch="strict")


def test_spec_and_lightness():
    search = WebSearch()
    assert isinstance(search, Tool)
    spec = search.spec
    assert spec.name == "web_search" and "Example:" in spec.description
    assert spec.parameters["properties"]["max_results"] == {
        "default": 5, "description": "how many results to return, 1 to 20 (default 5).", "maximum": 20,
        "minimum": 1, "type": "integer"}
    assert search.meta.timeout == 10.0
    code = ("import sys; from agentkit.tools.web_search import WebSearch; WebSearch().spec; "
            "print('ddgs' in sys.modules, 'primp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
