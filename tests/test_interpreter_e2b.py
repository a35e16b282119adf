"""The E2B adapter against the real SDK, its HTTP answered by recorded /execute responses (no network)."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest

pytest.importorskip("e2b_code_interpreter")

from e2b.connection_config import ConnectionConfig  # noqa: E402
from e2b_code_interpreter import Sandbox, code_interpreter_sync  # noqa: E402

from agentkit.errors import ConfigError  # noqa: E402
from agentkit.messages import ImagePart  # noqa: E402
from agentkit.tools.interpreter import PythonInterpreter  # noqa: E402
from agentkit.tools.interpreter.e2b import E2BSession  # noqa: E402
from agentkit.tools.interpreter.tool import choose_backend  # noqa: E402


def png_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (4, 3), (255, 0, 0)).save(buffer, format="PNG")
    return buffer.getvalue()


# What the sandbox's Jupyter service streams back (NDJSON), in the shapes the SDK parses.
RECORDED = {
    "x = 6\nprint('set')\nx * 7": [
        {"type": "stdout", "text": "set\n", "timestamp": 1763800000000000},
        {"type": "result", "text": "42", "is_main_result": True, "extra": {}},
        {"type": "number_of_executions", "execution_count": 1},
    ],
    "plot": [
        {"type": "result", "png": base64.b64encode(png_bytes()).decode(), "text": "<Figure size 640x480>",
         "is_main_result": False, "extra": {}},
        {"type": "number_of_executions", "execution_count": 2},
    ],
    "1/0": [
        {"type": "error", "name": "ZeroDivisionError", "value": "division by zero",
         "traceback": "---------------------------------------------------------------------------\n\n"
                      "ZeroDivisionError                         Traceback (most recent call last)\n\n"
                      "Cell In[3], line 1\n----> 1 1/0\n\nZeroDivisionError: division by zero"},
        {"type": "number_of_executions", "execution_count": 3},
    ],
}


@pytest.fixture
def transport(monkeypatch):
    requests: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/execute"
        body = json.loads(request.content)
        requests.append({"body": body, "headers": dict(request.headers)})
        if body["code"] == "while True: pass":
            raise httpx.ReadTimeout("timed out", request=request)
        lines = RECORDED[body["code"]]
        return httpx.Response(200, content="\n".join(json.dumps(line) for line in lines).encode(),
                              headers={"content-type": "application/x-ndjson"})

    monkeypatch.setattr(code_interpreter_sync, "get_transport", lambda *a, **k: httpx.MockTransport(handler))
    return requests


def recorded_sandbox() -> Sandbox:
    """A Sandbox object as ``Sandbox.create`` returns it, for a sandbox id from a recorded session."""
    return Sandbox(sandbox_id="itest0recorded", sandbox_domain="e2b.app", envd_version="0.4.0",
                   envd_access_token="envd-token", traffic_access_token=None,
                   connection_config=ConnectionConfig(api_key="e2b_test_key"))


def test_output_results_plots_and_errors_map_onto_execution_results(transport, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(tmp_path))
    session = E2BSession(timeout=5, sandbox_factory=recorded_sandbox)
    first = session.execute("x = 6\nprint('set')\nx * 7")
    assert first.ok and first.stdout == "set\n" and first.result == "42" and first.text() == "set\n42"
    plot = session.execute("plot")
    assert len(plot.images) == 1 and plot.images[0].size == (4, 3)
    assert isinstance(plot.content()[1], ImagePart)
    error = session.execute("1/0")
    assert error.error_name == "ZeroDivisionError"
    assert error.text() == "Cell In[3], line 1\n----> 1 1/0\nZeroDivisionError: division by zero"
    timed_out = session.execute("while True: pass", timeout=1)
    assert timed_out.timed_out and "timed out after 1 s" in timed_out.text()
    assert transport[0]["headers"]["e2b-sandbox-id"] == "itest0recorded"
    assert transport[0]["headers"]["x-access-token"] == "envd-token"
    assert transport[0]["body"]["code"] == "x = 6\nprint('set')\nx * 7"


def test_without_a_key_the_error_says_what_to_set(monkeypatch):
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="E2B_API_KEY"):
        E2BSession()
    with pytest.raises(ConfigError, match="E2B_API_KEY"):
        PythonInterpreter(backend="e2b")
    assert choose_backend("auto") == "local"
    monkeypatch.setenv("E2B_API_KEY", "e2b_x")
    assert choose_backend("auto") == "e2b"
    with pytest.raises(ConfigError, match="unknown interpreter backend"):
        choose_backend("docker")  # type: ignore[arg-type]
