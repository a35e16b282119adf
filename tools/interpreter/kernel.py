"""One stateful Jupyter kernel, confined (see :mod:`.sandbox`), and what running code in it returns.

The kernel is an ipykernel started by our launcher with a connection file on Unix sockets (so it works inside a
network namespace with nothing up), owned by us as a plain process group: we can always kill it. Code runs with
``execute``; messages on IOPub are collected until the kernel goes idle, or until the timeout, when we interrupt
(SIGINT; variables survive) and, if that does not take within a grace period, kill and restart (state is lost,
and the result says so). A kernel that died is replaced on the next call, which says so too.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentkit.messages import ContentPart, TextPart
from agentkit.tools.interpreter.sandbox import ProcessCap, SandboxLimits, can_isolate_network, scrubbed_environment
from agentkit.tools.io import ImageIO

LAUNCHER = Path(__file__).with_name("_launch.py")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
INTERRUPT_GRACE_S = 2.0


class KernelError(RuntimeError):
    """The kernel could not be started (not: the user's code failed — that is a result)."""


@dataclass
class ExecutionResult:
    """Everything one ``execute`` produced, and how it ended."""

    stdout: str = ""
    stderr: str = ""
    result: str = ""
    error: str = ""
    error_name: str = ""
    images: list[ImageIO] = field(default_factory=list)
    timed_out: bool = False
    state_lost: bool = False
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error and not self.timed_out

    def text(self, max_chars: int = 4000) -> str:
        """What the model reads: notes, output, the last value, the trimmed error."""
        parts = [f"[{note}]" for note in self.notes]
        body = "".join(s for s in (self.stdout, self.stderr) if s)
        if self.result:
            body = f"{body}{'' if not body or body.endswith(chr(10)) else chr(10)}{self.result}"
        if body:
            parts.append(truncate(body.rstrip("\n"), max_chars))
        if self.error:
            parts.append(truncate(self.error, max_chars // 2))
        if self.images:
            parts.append(f"({len(self.images)} image{'s' if len(self.images) > 1 else ''} shown below)")
        return "\n".join(parts) if parts else "(no output)"

    def content(self, max_chars: int = 4000) -> str | list[ContentPart]:
        text = self.text(max_chars)
        if not self.images:
            return text
        return [TextPart(text=text), *(image.to_part() for image in self.images)]


def truncate(text: str, max_chars: int) -> str:
    """Keep the head and the tail of long output (errors and results are usually at the end)."""
    if len(text) <= max_chars:
        return text
    head, tail = max_chars * 2 // 3, max_chars // 3
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut:,} characters cut ...]\n{text[-tail:]}"


def trim_traceback(frames: list[str], ename: str, evalue: str) -> str:
    """The user's frames and the error line; ipykernel/IPython internals and library frames in between dropped."""
    clean = [ANSI.sub("", f).rstrip() for f in frames]
    clean = [f for f in clean if f and not set(f.strip()) <= {"-"} and "Traceback (most recent call last)" not in f]
    kept: list[str] = []
    skipped = 0
    for i, frame in enumerate(clean[:-1]):
        user = frame.startswith("Cell In[") or "<ipython-input" in frame or frame.startswith("File <string>")
        internal = "/IPython/" in frame or "/ipykernel/" in frame
        if user or (i == len(clean) - 2 and not internal):
            if skipped:
                kept.append(f"... ({skipped} library frame{'s' if skipped > 1 else ''} omitted)")
                skipped = 0
            kept.append(frame)
        else:
            skipped += 1
    last = clean[-1] if clean else ""
    if not last.startswith(ename):
        last = f"{ename}: {evalue}"
    if skipped:
        kept.append(f"... ({skipped} library frame{'s' if skipped > 1 else ''} omitted)")
    return "\n".join([*kept, last]) if kept else last


class KernelSession:
    """A stateful Python kernel in its own process group and work directory."""

    def __init__(self, workdir: str | os.PathLike[str] | None = None, limits: SandboxLimits | None = None,
                 timeout: float = 30.0, max_output_chars: int = 4000, startup_timeout: float = 30.0):
        self.limits = limits or SandboxLimits()
        self.network_isolated = not self.limits.network and can_isolate_network()
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="agentkit-py-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self.max_output_chars = max_output_chars
        self.startup_timeout = startup_timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._client: Any = None
        self._cap: ProcessCap | None = None
        self._runtime = Path(tempfile.mkdtemp(prefix="agentkit-kernel-"))  # sockets + connection file
        self.starts = 0
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def isolation(self) -> dict[str, str]:
        """What confines this kernel, for logs and docs."""
        return {
            "processes": self._cap.method if self._cap else "not started",
            "network": "cut (own namespace)" if self.network_isolated else "open",
            "memory": f"{self.limits.memory_bytes} bytes address space" if self.limits.memory_bytes else "none",
        }

    def start(self) -> None:
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        if self.closed:
            raise KernelError("this interpreter session was closed; open a new one")
        self._stop_process()
        for stale in self._runtime.iterdir():
            stale.unlink(missing_ok=True)
        connection, _ = write_connection_file(fname=str(self._runtime / "kernel.json"), transport="ipc",
                                              ip=str(self._runtime / "k"))
        self._cap = ProcessCap(self.limits.max_processes)
        config = {
            "cgroup": str(self._cap.cgroup) if self._cap.cgroup else None,
            "rlimits": {**self.limits.rlimits(), **self._cap.rlimits()},
            "no_network": self.network_isolated,
        }
        command = [sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(config), "--",
                   sys.executable, "-m", "ipykernel_launcher", "-f", connection,
                   "--HistoryManager.enabled=False", "--IPKernelApp.quiet=True"]
        log = open(self._runtime / "kernel.log", "ab")
        try:
            self._proc = subprocess.Popen(command, cwd=self.workdir, env=scrubbed_environment(self.workdir),
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        client = BlockingKernelClient(connection_file=connection)
        client.load_connection_file()
        client.start_channels()
        self._client = client
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout)
        except KernelError as exc:
            detail = (self._runtime / "kernel.log").read_text(errors="replace")[-1500:]
            self._stop_process()
            raise KernelError(f"{exc}. Its log:\n{detail}") from None
        self.starts += 1

    def _wait_ready(self, deadline: float) -> None:
        """Ready = a kernel_info reply on the shell channel *and* its status on IOPub (so no output is missed).

        jupyter_client's ``wait_for_ready`` judges death by a 1 s heartbeat, which fails spuriously when several
        kernels start at once on a small machine; here death is the process exiting, and only the deadline waits.
        """
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise KernelError(f"the Python kernel exited while starting (status {self._proc.returncode})")
            if time.monotonic() > deadline:
                raise KernelError(f"the Python kernel did not start within {self.startup_timeout:g} s")
            msg_id = self._client.kernel_info()
            if not self._await(self._client.get_shell_msg, msg_id, 1.0, lambda m: True):
                continue
            if self._await(self._client.get_iopub_msg, msg_id, 0.5,
                           lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"):
                return

    @staticmethod
    def _await(get: Any, msg_id: str, seconds: float, accept: Any) -> bool:
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            try:
                message = get(timeout=left)
            except queue.Empty:
                return False
            if message.get("parent_header", {}).get("msg_id") == msg_id and accept(message):
                return True
        return False

    def _stop_process(self) -> None:
        if self._client is not None:
            try:
                self._client.stop_channels()
            except Exception:
                pass
            self._client = None
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self._proc = None
        if self._cap is not None:
            self._cap.close()
            self._cap = None

    def close(self) -> None:
        """Kill the kernel and everything it started; remove the work dir if we made it."""
        with self._lock:
            self._stop_process()
            self.closed = True
            shutil.rmtree(self._runtime, ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running code ----------------------------------------------------------------------------
    def execute(self, code: str, timeout: float | None = None) -> ExecutionResult:
        """Run ``code`` and collect what it printed, returned, raised and displayed."""
        with self._lock:
            return self._execute(code, self.timeout if timeout is None else timeout)

    def _execute(self, code: str, timeout: float) -> ExecutionResult:
        notes: list[str] = []
        if not self.alive:
            if self.starts:
                notes.append("the previous kernel had died; this ran in a fresh one: earlier variables are gone")
            self.start()
        started = time.perf_counter()
        result = ExecutionResult(notes=notes)
        msg_id = self._client.execute(code, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + timeout
        interrupted_at: float | None = None
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                self._interrupt()
                interrupted_at = now
            if interrupted_at is not None and now >= interrupted_at + INTERRUPT_GRACE_S:
                self._restart()
                result.timed_out = result.state_lost = True
                result.notes.append(f"timed out after {timeout:g} s; the kernel did not stop, so it was killed "
                                    "and restarted: all variables and imports are lost")
                break
            wait = min(0.25, max(0.001, (interrupted_at + INTERRUPT_GRACE_S if interrupted_at else deadline) - now))
            try:
                message = self._client.get_iopub_msg(timeout=wait)
            except queue.Empty:
                if self._proc is not None and self._proc.poll() is not None:
                    code_ = self._proc.returncode
                    self._restart()
                    result.state_lost = True
                    result.error = result.error or f"the kernel died (exit status {code_}) while running this code"
                    result.notes.append("a fresh kernel was started: all variables and imports are lost")
                    break
                continue
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if self._collect(message, result):
                break
        if interrupted_at is not None and not result.state_lost:
            result.timed_out = True
            result.error = ""
            result.notes.append(f"interrupted after {timeout:g} s (time limit); variables defined before are kept")
        result.duration_s = time.perf_counter() - started
        return result

    def _collect(self, message: dict[str, Any], result: ExecutionResult) -> bool:
        kind, content = message["msg_type"], message["content"]
        if kind == "stream":
            if content.get("name") == "stderr":
                result.stderr += content.get("text", "")
            else:
                result.stdout += content.get("text", "")
        elif kind in ("execute_result", "display_data"):
            data = content.get("data", {})
            if "image/png" in data:
                image = ImageIO(base64.b64decode(data["image/png"]), mime_type="image/png")
                image.to_path()
                result.images.append(image)
            elif kind == "execute_result" and "text/plain" in data:
                result.result = ANSI.sub("", data["text/plain"])
            elif "text/plain" in data:
                result.stdout += ANSI.sub("", data["text/plain"]) + "\n"
        elif kind == "error":
            result.error_name = content.get("ename", "Error")
            result.error = trim_traceback(content.get("traceback", []), result.error_name, content.get("evalue", ""))
        elif kind == "status" and content.get("execution_state") == "idle":
            return True
        return False

    def _interrupt(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.kill(self._proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def _restart(self) -> None:
        self.start()

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            try:
                self._stop_process()
            except Exception:
                pass
