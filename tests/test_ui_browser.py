"""The chat UI end to end in headless Chromium (Debian ``chromium`` driven by Playwright): the real page, the real
server (uvicorn on a free port), a real SQLite thread store; the scripted model streams slowly so the page can be
seen filling in. ``AGENTKIT_SCREENSHOTS=1`` also writes docs/img/ui-chat.png and docs/img/ui-approval.png."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api",
                                     reason="Playwright is not installed: pip install playwright")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'agentkit[serve]'")

from agentkit.apps.ui import create_app  # noqa: E402
from test_ui_api import GREETING, make_chat_agent  # noqa: E402

DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
WORD_DELAY_S = 0.08


def chromium_path() -> str | None:
    """$AGENTKIT_CHROMIUM, else Debian's chromium on PATH."""
    found = os.environ.get("AGENTKIT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    return found if found and Path(found).exists() else None


pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="no Chromium: install Debian's with 'apt-get install -y chromium' (or set AGENTKIT_CHROMIUM)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[dict]:
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path))
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    refunds: list = []
    work = tmp_path / "work"
    app = create_app(make_chat_agent(tmp_path / "threads.sqlite", refunds, delay_s=WORD_DELAY_S), workdir=work)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the UI server did not start"
        time.sleep(0.05)
    yield {"url": f"http://127.0.0.1:{port}/", "refunds": refunds, "work": work}
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def page() -> Iterator:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 720})
        page.set_default_timeout(20_000)
        yield page
        browser.close()


def screenshot(page, name: str) -> None:
    if os.environ.get("AGENTKIT_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / name))


def send(page, text: str) -> None:
    page.wait_for_selector("#send:not([disabled])")  # the previous answer has finished
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_chat_stream_upload_image_approve_and_resume_a_thread(server, page):
    expect = playwright_api.expect
    page.goto(server["url"])
    page.wait_for_selector("body[data-ready='1']")
    expect(page.locator("#agent-info")).to_contain_text("react")
    expect(page.locator("#tool-info")).to_contain_text("refund (asks first)")

    # 1. the answer streams in: a partial answer is on screen before the whole one
    send(page, "hi there")
    partial = page.wait_for_function(
        """full => { const a = document.querySelector('.msg.assistant.streaming');
                     return a && a.textContent.length > 0 && a.textContent.length < full.length && a.textContent; }""",
        arg=GREETING).json_value()
    assert GREETING.startswith(partial) and partial != GREETING
    expect(page.locator(".msg.assistant:not(.streaming)").first).to_have_text(GREETING)
    expect(page.locator(".msg.user").first).to_have_text("hi there")

    # 2. a file goes into the interpreter's work dir and the next message names it
    page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"a,b\n"}])
    expect(page.locator(".upload-chip")).to_contain_text("notes.txt (4 bytes)")
    assert (server["work"] / "notes.txt").read_bytes() == b"a,b\n"

    # 3. an image a tool returned is shown; the steps are collapsed
    send(page, "draw a square")
    image = page.locator("img.tool-image").first
    expect(image).to_be_visible()
    page.wait_for_function("() => { const i = document.querySelector('img.tool-image'); "
                           "return i && i.complete && i.naturalWidth === 48; }")
    expect(page.locator(".msg.user").nth(1)).to_contain_text("[uploaded to the working directory: notes.txt]")
    steps = page.locator("details.steps:not(.hidden)").first
    expect(steps.locator("summary")).to_have_text("Steps (2)")
    assert steps.evaluate("d => d.open") is False
    expect(page.locator("#thread-list li")).to_have_count(1)
    expect(page.locator(".msg.assistant").last).to_have_text("Here is a red square, 48 pixels wide.")
    if os.environ.get("AGENTKIT_SCREENSHOTS") == "1":
        steps.locator("summary").click()  # opened for the picture only
        expect(steps.locator(".step")).to_have_count(2)
    screenshot(page, "ui-chat.png")

    # 4. a tool that asks first waits for the button, runs once approved
    send(page, "please refund order 7")
    card = page.locator(".approval")
    expect(card).to_contain_text("refund")
    expect(card).to_contain_text('"order": 7')
    expect(page.locator("#thread-list li .badge")).to_have_text("waiting")
    assert server["refunds"] == []
    screenshot(page, "ui-approval.png")
    page.click("button.approve")
    expect(page.locator(".msg.assistant").last).to_contain_text("refunded order 7")
    expect(page.locator(".approval.decided")).to_contain_text("Approved")  # the card stays, its buttons go
    expect(page.locator(".approval button")).to_have_count(0)
    assert server["refunds"] == [7]

    # 5. after a reload the thread is listed and opens with everything in it
    thread_id = page.evaluate("() => location.hash.slice('#thread='.length)")
    assert thread_id
    page.goto(server["url"])
    page.wait_for_selector("body[data-ready='1']")
    item = page.locator(f"#thread-list li[data-thread='{thread_id}']")
    expect(item).to_have_text("hi there")
    expect(page.locator(".msg")).to_have_count(0)
    item.click()
    expect(page.locator(".msg.user")).to_have_count(3)
    expect(page.locator(".msg.assistant").first).to_have_text(GREETING)
    expect(page.locator(".msg.assistant").last).to_contain_text("refunded order 7")
    expect(page.locator("img.tool-image")).to_have_count(1)
    page.reload()
    expect(page.locator(".msg.user")).to_have_count(3)  # the hash keeps the open thread across a reload
    expect(page.locator("#thread-list li.active")).to_have_text("hi there")
    assert server["refunds"] == [7]
