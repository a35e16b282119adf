"""The local interpreter on real Jupyter kernels: state, plots, timeouts, limits, crashes, many sessions."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytest.importorskip("ipykernel")

from agentkit.messages import ImagePart  # noqa: E402
from agentkit.toolspec import ToolError  # noqa: E402
from agentkit.tools import load_tool  # noqa: E402
from agentkit.tools.interpreter import InterpreterPool, KernelSession, PythonInterpreter, SandboxLimits  # noqa: E402
from agentkit.tools.interpreter.kernel import trim_traceback, truncate  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(autouse=True)
def artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path / "artifacts"))


@pytest.fixture(scope="module")
def session():
    with KernelSession(timeout=10) as s:
        yield s


def test_state_persists_and_the_last_value_is_shown(session):
    first = session.execute("x = 6\nprint('set')")
    assert first.ok and first.stdout == "set\n" and first.result == ""
    second = session.execute("y = x * 7\ny")
    assert second.result == "42" and second.text() == "42"
    assert session.execute("import math\nmath.comb(10, 3)").text() == "120"


def test_errors_show_the_users_frames_not_the_kernels(session):
    result = session.execute("def f(v):\n    return 1 / v\n\nf(0)")
    assert not result.ok and result.error_name == "ZeroDivisionError"
    text = result.text()
    assert "----> 4 f(0)" in text and "return 1 / v" in text
    assert text.rstrip().endswith("ZeroDivisionError: division by zero")
    assert "ipykernel" not in text and "\x1b[" not in text and "Traceback (most recent" not in text
    assert session.execute("x").text() == "6"  # an error loses nothing


def test_a_plot_comes_back_as_an_image(session, tmp_path):
    result = session.execute("import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]); plt.title('t'); plt.show()")
    assert result.ok and len(result.images) == 1
    image = result.images[0]
    assert image.path.suffix == ".png" and image.path.is_file() and image.size[0] > 100
    content = result.content()
    assert isinstance(content, list) and isinstance(content[1], ImagePart) and content[1].url == str(image.path)


def test_long_output_is_truncated_with_a_note(session):
    text = session.execute("print('x' * 50000)").text(max_chars=1000)
    assert len(text) < 1200 and "characters cut" in text
    assert truncate("abc", 10) == "abc"


def test_an_infinite_loop_is_interrupted_within_the_timeout_and_state_survives(session):
    started = time.monotonic()
    result = session.execute("while True:\n    pass", timeout=2)
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 2, elapsed
    assert result.timed_out and not result.state_lost
    assert "interrupted after 2 s" in result.text()
    assert session.execute("x").text() == "6"


def test_code_that_ignores_interrupts_is_killed_and_the_result_says_state_was_lost():
    with KernelSession(timeout=10) as s:
        s.execute("z = 1")
        code = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.05)"
        started = time.monotonic()
        result = s.execute(code, timeout=1)
        assert time.monotonic() - started < 1 + 2 + 3  # timeout, grace, restart
        assert result.timed_out and result.state_lost and "all variables and imports are lost" in result.text()
        assert "NameError" in s.execute("z").text()
        assert s.execute("1 + 1").text() == "2"


def test_a_memory_bomb_hits_the_address_space_limit(session):
    result = session.execute("try:\n    block = bytearray(4 << 30)\nexcept MemoryError:\n    print('refused')")
    assert result.stdout == "refused\n"
    assert session.execute("x").text() == "6"


def test_a_fork_bomb_is_capped_and_the_session_stays_usable():
    with KernelSession(limits=SandboxLimits(max_processes=48), timeout=30) as s:
        code = (
            "import subprocess\n"
            "children, error = [], None\n"
            "try:\n"
            "    for _ in range(300):\n"
            "        children.append(subprocess.Popen(['sleep', '30']))\n"
            "except OSError as exc:\n"
            "    error = type(exc).__name__\n"
            "for c in children:\n"
            "    c.kill(); c.wait()\n"
            "print(len(children), error)"
        )
        started, error = s.execute(code).stdout.split()
        assert int(started) < 48 and error in ("BlockingIOError", "OSError"), (started, error)
        assert s.isolation["processes"] in ("cgroup", "rlimit")
        assert s.execute("sum(range(10))").text() == "45"


def test_file_size_limit(tmp_path):
    with KernelSession(limits=SandboxLimits(max_file_bytes=1 << 20), timeout=10) as s:
        result = s.execute("open('big.bin', 'wb').write(b'0' * (2 << 20))")
        assert not result.ok and ("File too large" in result.text() or "OSError" in result.text())
        assert s.execute("1").text() == "1"


def test_kernel_death_is_reported_and_the_next_call_gets_a_fresh_kernel():
    with KernelSession(timeout=10) as s:
        s.execute("kept = 1")
        died = s.execute("import os\nos._exit(3)")
        assert died.state_lost and "died" in died.text() and "fresh kernel" in died.text()
        assert s.execute("1 + 1").text() == "2" and "NameError" in s.execute("kept").text()
        os.killpg(s._proc.pid, 9)  # killed from outside between calls
        s._proc.wait()
        again = s.execute("2 + 2")
        assert again.text().endswith("4") and "previous kernel had died" in again.text()


def test_secrets_are_not_visible_and_the_network_is_cut_when_possible(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "t0k3n")
    monkeypatch.setenv("HARMLESS_SETTING", "kept")
    with KernelSession(timeout=10) as s:
        out = s.execute("import os\nprint(sorted(k for k in os.environ if 'API_KEY' in k or 'TOKEN' in k), "
                        "os.environ.get('HARMLESS_SETTING'))").stdout
        assert out.strip() == "[] kept"
        if s.network_isolated:
            net = s.execute("import socket\ntry:\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n"
                            "    print('open')\nexcept OSError as e:\n    print('cut')").stdout
            assert net.strip() == "cut"


def test_eight_sessions_in_parallel_keep_their_own_state():
    pool = InterpreterPool(max_sessions=8)
    results: dict[int, str] = {}

    def work(i: int) -> None:
        with pool.session(f"s{i}") as s:
            s.execute(f"mine = {i} * 11")
        time.sleep(0.05)
        with pool.session(f"s{i}") as s:
            results[i] = s.execute("mine").text()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=90)
        assert results == {i: str(i * 11) for i in range(8)}
        assert len(pool) == 8
    finally:
        pool.close()
    assert len(pool) == 0


def test_a_full_pool_closes_the_longest_idle_session():
    pool = InterpreterPool(max_sessions=1)
    try:
        with pool.session("a") as s:
            s.execute("v = 1")
        with pool.session("b") as s:
            assert "NameError" in s.execute("v").text()
        assert len(pool) == 1
    finally:
        pool.close()


def test_the_tool_is_registered_stateful_and_closable():
    tool = load_tool("python_interpreter")
    assert isinstance(tool, PythonInterpreter)
    assert tool.spec.kind == "interpreter" and tool.spec.parameters["required"] == ["code"]
    assert tool.invoke({"code": "```python\nanswer = 40 + 2\nprint(answer)\n```"}) == "42"
    assert tool.invoke({"code": "answer"}) == "42"
    tool.close()
    with pytest.raises(ToolError, match="NameError"):
        tool.invoke({"code": "answer"})
    tool.close()


def test_trim_traceback_keeps_the_raising_library_frame():
    frames = [
        "\x1b[31m---------\x1b[0m",
        "ValueError    Traceback (most recent call last)",
        "Cell In[2], line 1\n----> 1 f()",
        "File /site-packages/lib/a.py:3, in g()",
        "File /site-packages/lib/b.py:9, in h()\n----> 9 raise ValueError('bad')",
        "ValueError: bad",
    ]
    text = trim_traceback(frames, "ValueError", "bad")
    assert text.splitlines()[0] == "Cell In[2], line 1"
    assert "1 library frame omitted" in text and "b.py:9" in text and text.endswith("ValueError: bad")
