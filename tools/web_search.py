"""The ``web_search`` tool: a few web results (title, url, snippet) for a query, through the ``ddgs`` library.

``ddgs`` knows how to ask each search engine and parse its result page; this module picks the engines, bounds the
time, and turns every way of failing into a sentence the model can act on. It drives ddgs's engines directly
(``ddgs.engines.ENGINES``) rather than its ``DDGS`` aggregator so that the engines are tried in a fixed order (the
first that answers wins), pages are fetched only as needed, and the HTTP client can be replaced: each engine sends
its requests through ``engine.http_client.client`` (a ``primp.Client``), and ``transport=`` puts any object with
the same methods in its place (see :class:`Transport`) — a recorded response in tests, a caching or auditing
client in production.

Offline, blocked or slow, a search fails with "web search is unreachable from here: …" within ``timeout`` seconds
(10 by default): the HTTP budget is a little less than the tool's own limit, so the clear error comes first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from pydantic import Field

from agentkit.errors import ConfigError
from agentkit.toolspec import ToolError
from agentkit.tools.base import BaseTool

DEFAULT_BACKENDS = ("duckduckgo", "brave", "mojeek")
MAX_QUERY = 400
MAX_PAGES = 3
SNIPPET_CHARS = 300


class Transport(Protocol):
    """The part of ``primp.Client`` ddgs's engines use: ``request`` (whose response has ``status_code``, ``text``
    and ``content``) and, for engines that set region cookies (brave, mojeek), ``set_cookies``."""

    def request(self, method: str, url: str, **kwargs: Any) -> Any: ...

    def set_cookies(self, url: str, cookies: dict[str, str]) -> None: ...


class WebSearch(BaseTool):
    """Web search for agents: compact results, a fixed order of engines, and a hard time limit.

    Example: ``WebSearch().search("python asyncio tutorial", max_results=3)`` returns
    ``[{"title": ..., "url": ..., "snippet": ...}, ...]``; ``invoke`` renders the same as numbered lines.
    """

    name = "web_search"
    timeout = 10.0

    def __init__(self, *, backends: str | Sequence[str] = DEFAULT_BACKENDS, region: str = "us-en",
                 safesearch: str = "moderate", proxy: str | None = None, transport: Transport | None = None,
                 timeout: float | None = 10.0, **options: Any):
        """Configure the search.

        Args:
            backends: ddgs text engines to try in order ("duckduckgo", "brave", "mojeek", "yahoo", "wikipedia"...),
                as a list or a comma-separated string.
            region: ddgs region code, e.g. "us-en", "uk-en", "de-de".
            safesearch: "on", "moderate" or "off".
            proxy: an HTTP or SOCKS proxy URL for every request.
            transport: used instead of the real HTTP client: an object with ``primp.Client``'s ``request`` and
                ``set_cookies`` (see :class:`Transport`).
            timeout: seconds for the whole search, HTTP included (None: 10 s for HTTP, no overall limit).
        """
        super().__init__(timeout=timeout, **options)
        names = backends.split(",") if isinstance(backends, str) else list(backends)
        self.backends = [n.strip().lower() for n in names if n and n.strip()]
        if not self.backends:
            raise ConfigError("web_search needs at least one backend, e.g. backends=['duckduckgo']")
        if safesearch not in ("on", "moderate", "off"):
            raise ConfigError(f"safesearch must be 'on', 'moderate' or 'off', not {safesearch!r}")
        self.region = region
        self.safesearch = safesearch
        self.proxy = proxy
        self.transport = transport
        self._engines: dict[str, type] = {}

    def setup(self) -> None:
        try:
            from ddgs.engines import ENGINES
        except ImportError as exc:
            raise ToolError(f"web search needs the ddgs package ({exc}): pip install 'agentkit[tools]'") from exc
        available = ENGINES.get("text", {})
        unknown = [n for n in self.backends if n not in available]
        if unknown:
            raise ConfigError(f"unknown web_search backend(s) {unknown}; ddgs offers {sorted(available)}")
        self._engines = {n: available[n] for n in self.backends}

    def apply(self, query: str, max_results: Annotated[int, Field(ge=1, le=20)] = 5) -> str:
        """Search the web and return the top results, each with title, url and a short snippet.
        Use short keyword queries. Example: {"query": "python asyncio tutorial", "max_results": 3}.

        Args:
            query: what to look for, in a few keywords, e.g. "population of France 2024".
            max_results: how many results to return, 1 to 20 (default 5).
        """
        results = self.search(query, max_results)
        if not results:
            return f"No results for {query.strip()!r}. Try fewer or different keywords."
        return render(results)

    # -- searching ---------------------------------------------------------------------------------
    def _budget(self) -> float:
        """Seconds for HTTP: the tool's limit less a margin, so our error is reported, not the timeout's."""
        limit = self.meta.timeout
        return 10.0 if limit is None else max(0.5, limit - min(1.0, limit * 0.1))

    def _engine(self, backend: str, seconds: float) -> Any:
        engine = self._engines[backend](proxy=self.proxy, timeout=seconds)
        if self.transport is not None:
            engine.http_client.client = self.transport
        return engine

    def search(self, query: str, max_results: int = 5) -> list[dict[str, str]]:
        """Results as ``{"title", "url", "snippet"}`` dicts; a ToolError when no engine could be reached."""
        query = " ".join(query.split())
        if not query:
            raise ToolError("the query is empty: write a few keywords, e.g. {\"query\": \"capital of Australia\"}")
        if len(query) > MAX_QUERY:
            raise ToolError(f"the query is too long ({len(query)} characters; at most {MAX_QUERY}): use keywords")
        self._ensure_setup()
        from ddgs.exceptions import DDGSException, TimeoutException

        deadline = time.monotonic() + self._budget()
        results: list[dict[str, str]] = []
        seen: set[str] = set()
        failures: list[str] = []
        refused: list[str] = []
        for tried, backend in enumerate(self.backends):
            for page in range(1, MAX_PAGES + 1):
                remaining = deadline - time.monotonic()
                if remaining < 0.2:
                    failures.append(f"{backend}: out of time")
                    break
                # a silent engine must not eat the time of the ones after it
                seconds = min(remaining, max(3.0, remaining / (len(self.backends) - tried)))
                try:
                    found = self._engine(backend, seconds).search(
                        query, region=self.region, safesearch=self.safesearch, page=page)
                except TimeoutException:
                    failures.append(f"{backend}: no answer within {seconds:.1f} s")
                    break
                except DDGSException as exc:
                    failures.append(f"{backend}: {_reason(exc)}")
                    break
                except Exception as exc:  # a page the engine's parser could not read
                    failures.append(f"{backend}: unreadable answer ({type(exc).__name__})")
                    break
                if found is None:
                    refused.append(backend)
                    break
                fresh = [r for r in map(_result, found) if r is not None and r["url"] not in seen]
                for item in fresh:
                    seen.add(item["url"])
                results.extend(fresh)
                if not fresh or len(results) >= max_results:
                    break
            if results:
                break
        if results or (not failures and not refused):
            return results[:max_results]
        if refused:
            raise ToolError(
                f"web search is unreachable from here: {', '.join(refused)} refused the request (rate limited or "
                f"blocked){'; ' + '; '.join(failures) if failures else ''}. Try again later, or answer without it."
            )
        raise ToolError(f"web search is unreachable from here: {'; '.join(failures)}. "
                        "Answer from what you know and say that you could not search.")


def _result(raw: Any) -> dict[str, str] | None:
    """ddgs's ``TextResult`` as the fields we show; results without a title or a web address are dropped."""
    title = (getattr(raw, "title", "") or "").strip()
    url = _unwrap(getattr(raw, "href", "") or "")
    snippet = (getattr(raw, "body", "") or "").strip()
    if not title or not url.startswith(("http://", "https://")):
        return None
    if len(snippet) > SNIPPET_CHARS:
        snippet = snippet[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "…"
    return {"title": title, "url": url, "snippet": snippet}


_REDIRECT = re.compile(r"^(?:https?:)?//(?:html\.)?duckduckgo\.com/l/\?(?:.*?&)?uddg=(?P<target>.+?)(?:&rut=.*)?$")


def _unwrap(url: str) -> str:
    """DuckDuckGo's click-tracking link (``//duckduckgo.com/l/?uddg=<target>&rut=…``) as its target."""
    url = url.strip()
    match = _REDIRECT.match(url)
    return match.group("target") if match else url


def _reason(exc: Exception) -> str:
    """The useful end of an HTTP error ("Connection refused (os error 111)"), not the client's wrapping."""
    text = str(exc).strip()
    wrapped = re.match(r"""^(\w+): \1\((['"])(.*)\2\)$""", text, re.DOTALL)  # "ConnectError: ConnectError('…')"
    if wrapped:
        text = wrapped.group(3)
    if text.startswith("error sending request"):  # primp: "error sending request for url (…) > cause > cause"
        text = text.split(" > ")[-1].strip()
    text = re.sub(r"\s+for Query \{.*$", "", text)
    return text if len(text) <= 160 else text[:157] + "..."


def render(results: list[dict[str, str]]) -> str:
    """Numbered results, three short lines each: the compact form a small model reads best."""
    blocks = []
    for number, item in enumerate(results, start=1):
        lines = [f"{number}. {item['title']}", f"   {item['url']}"]
        if item["snippet"]:
            lines.append(f"   {item['snippet']}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
