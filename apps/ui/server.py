"""The chat UI's HTTP side: one static page plus a small JSON / server-sent-events API over an :class:`Agent`.

Routes:

* ``GET /`` — the page; ``GET /static/…`` its script and styles.
* ``GET /api/info`` — the agent, model and tools (which need approval), and whether uploads are possible.
* ``GET /api/threads`` — threads in the checkpointer, newest first; ``GET /api/threads/{id}`` — one thread's
  messages and the calls waiting for a decision.
* ``POST /api/chat`` ``{"message", "thread_id"?}`` — runs the agent and streams server-sent events: ``thread``
  (the id, first), ``token`` (model text as it is generated), ``step`` (a finished graph step and its messages),
  ``result`` (outcome, answer, pending calls) or ``error``.
* ``POST /api/threads/{id}/decision`` ``{"action": "approve" | "reject" | "edit", "reason"?, "arguments"?}`` —
  decides every pending call of the thread and streams the continued run with the same events as ``/api/chat``
  (409 when nothing waits).
* ``POST /api/upload`` (multipart, field ``file``) — stores a file in the code interpreter's work dir.
* ``GET /api/artifacts/{name}`` — an image a tool saved in the artifact store, by its content-hash name.

Runs are synchronous LangGraph runs in a worker thread each (a local model's forward blocks whatever the API);
their events reach the page through a queue. One run per thread at a time: a second gets 409.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException

from agentkit.apps.ui.views import ARTIFACT_ROUTE, call_view, messages_view, thread_ids, thread_title
from agentkit.errors import AgentkitError, ConfigError
from agentkit.runtime import Agent, AgentEvent, RunResult

log = logging.getLogger("agentkit.apps.ui")

STATIC_DIR = Path(__file__).with_name("static")
THREAD_ID = r"^[A-Za-z0-9_.:-]{1,128}$"
ARTIFACT_NAME = re.compile(r"^[0-9a-f]{16}\.[A-Za-z0-9]{1,8}$")
UPLOAD_NAME = re.compile(r"^[\w][\w .()+-]{0,254}$")
MAX_MESSAGE_CHARS = 20_000
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
_DONE = object()


class ChatRequest(BaseModel):
    message: str = Field(..., min_length=1, max_length=MAX_MESSAGE_CHARS, description="what the user says")
    thread_id: str | None = Field(None, pattern=THREAD_ID, description="continue this thread; omit to start one")

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is blank: type something to send")
        return value


class DecisionRequest(BaseModel):
    action: Literal["approve", "reject", "edit"]
    reason: str | None = Field(None, max_length=2000, description="why, for 'reject' (the model reads it)")
    arguments: dict[str, Any] | None = Field(None, description="the arguments to run with, for 'edit'")


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


class ChatService:
    """The agent behind the page, the directories it may serve or write, and which threads are running."""

    def __init__(self, agent: Agent, *, workdir: str | Path | None = None,
                 artifact_dirs: Sequence[str | Path] | None = None,
                 max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES):
        if agent.checkpointer is None:
            raise ConfigError("the chat UI keeps threads in a checkpointer: create the agent with "
                              "checkpointer='sqlite' (or a path, or 'memory' for tests)")
        self.agent = agent
        self.workdir = Path(workdir).resolve() if workdir is not None else None
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifact_dirs = [Path(d).resolve() for d in (artifact_dirs or _default_artifact_dirs(agent))]
        self.max_upload_bytes = max_upload_bytes
        self._running: set[str] = set()
        self._lock = threading.Lock()

    # -- views ---------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        parts = self.agent.parts
        return {
            "agent": parts.pattern,
            "model": getattr(parts.model, "model_name", type(parts.model).__name__),
            "tools": [{"name": s.name, "description": s.description, "requires_approval": s.requires_approval}
                      for s in parts.specs],
            "upload": self.workdir is not None,
        }

    def threads(self) -> list[dict[str, Any]]:
        listed = []
        for thread_id in thread_ids(self.agent.checkpointer):
            history = self.agent.history(thread_id)
            listed.append({"id": thread_id, "title": thread_title(history) or thread_id,
                           "messages": len(history), "pending": bool(self.agent.pending(thread_id)),
                           "running": thread_id in self._running})
        return listed

    def thread(self, thread_id: str) -> dict[str, Any]:
        history = self.agent.history(thread_id)
        if not history:
            raise HTTPException(404, f"no thread {thread_id!r}: pick one from GET /api/threads or start one")
        return {"id": thread_id, "title": thread_title(history), "messages": messages_view(history, self.artifact_dirs),
                "pending": [call_view(c) for c in self.agent.pending(thread_id)],
                "running": thread_id in self._running}

    def result_view(self, result: RunResult) -> dict[str, Any]:
        return {"thread_id": result.thread_id, "outcome": result.outcome, "answer": result.answer,
                "pending": [call_view(c) for c in result.pending], "steps": result.steps,
                "tokens": result.usage.total_tokens, "duration_s": round(result.duration_s, 3)}

    def event_view(self, event: AgentEvent) -> tuple[str, dict[str, Any]]:
        if event.type == "token":
            return "token", {"delta": event.delta}
        if event.type == "step":
            return "step", {"node": event.node, "messages": messages_view(event.messages, self.artifact_dirs)}
        assert event.result is not None
        return "result", self.result_view(event.result)

    # -- running -------------------------------------------------------------------------------
    def claim(self, thread_id: str) -> None:
        with self._lock:
            if thread_id in self._running:
                raise HTTPException(409, f"thread {thread_id!r} is still running: wait for its answer, then send again")
            self._running.add(thread_id)

    def release(self, thread_id: str) -> None:
        with self._lock:
            self._running.discard(thread_id)

    def chat_events(self, message: str, thread_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        yield "thread", {"thread_id": thread_id}
        for event in self.agent.stream(message, thread_id=thread_id):
            yield self.event_view(event)

    def start(self, thread_id: str, produce: Callable[[], Iterator[tuple[str, dict[str, Any]]]]) -> AsyncIterator[str]:
        """Run ``produce`` in a worker thread now (it holds the thread's claim) and return its events as SSE text.

        The run starts before the response does and finishes even if the page goes away, so the claim is always
        released and the checkpoint is left whole."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                for item in produce():
                    put(item)
            except AgentkitError as exc:
                put(("error", {"message": str(exc)}))
            except Exception as exc:  # the page shows it; the server keeps serving
                log.exception("run of thread %s failed", thread_id)
                put(("error", {"message": f"{type(exc).__name__}: {exc}"}))
            finally:
                self.release(thread_id)
                put(_DONE)

        threading.Thread(target=work, name=f"agentkit-ui-{thread_id[:8]}", daemon=True).start()

        async def relay() -> AsyncIterator[str]:
            while (item := await queue.get()) is not _DONE:
                yield _sse(*item)

        return relay()

    def decision_events(self, thread_id: str, decision: DecisionRequest) -> Iterator[tuple[str, dict[str, Any]]]:
        """The run continued past the pending calls, streamed like a chat turn."""
        yield "thread", {"thread_id": thread_id}
        for event in self.agent.stream(None, thread_id=thread_id, decision=decision.model_dump(exclude_none=True)):
            yield self.event_view(event)

    # -- files ---------------------------------------------------------------------------------
    async def save_upload(self, upload: UploadFile) -> dict[str, Any]:
        if self.workdir is None:
            raise HTTPException(409, "uploads go to the code interpreter's work dir, and this agent has no "
                                     "interpreter: start the UI with --tools python_interpreter")
        name = Path(upload.filename or "").name
        if not UPLOAD_NAME.match(name):
            raise HTTPException(400, f"cannot store a file named {upload.filename!r}: use letters, digits, "
                                     "spaces and . _ - ( ) +, not starting with a dot")
        data = await upload.read(self.max_upload_bytes + 1)
        if len(data) > self.max_upload_bytes:
            raise HTTPException(413, f"{name} is over {self.max_upload_bytes // (1024 * 1024)} MiB: upload a "
                                     "smaller file")
        from agentkit.tools.io import save_artifact

        stored = save_artifact(data, Path(name).suffix, self.workdir)  # atomic write, then its real name
        target = self.workdir / name
        stored.replace(target)
        return {"name": name, "size": len(data)}

    def artifact(self, name: str) -> Path:
        if ARTIFACT_NAME.match(name):
            for root in self.artifact_dirs:
                path = root / name
                if path.is_file():
                    return path
        raise HTTPException(404, f"no artifact {name!r}: artifacts are named by content hash, e.g. "
                                 "3fa2c9b1e0d4a7f2.png, as tool results show them")


def _default_artifact_dirs(agent: Agent) -> list[Path]:
    """The shared artifact store, plus any directory a tool of this agent was given for its files."""
    from agentkit.tools.io import default_artifact_dir

    dirs = [default_artifact_dir()]
    for tool in agent.parts.tools.values():
        own = getattr(tool, "artifact_dir", None)
        if own:
            dirs.append(Path(own))
    return dirs


def create_app(agent: Agent, *, workdir: str | Path | None = None, artifact_dirs: Sequence[str | Path] | None = None,
               max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    """The chat UI for ``agent`` (which needs a checkpointer). ``workdir``, when given, receives uploads: pass the
    code interpreter's work dir so the model's code can open them."""
    service = ChatService(agent, workdir=workdir, artifact_dirs=artifact_dirs, max_upload_bytes=max_upload_bytes)
    app = FastAPI(title="agentkit chat", docs_url="/api/docs", openapi_url="/api/openapi.json")
    app.state.chat = service

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"error": "; ".join(problems), "detail": jsonable(exc.errors())}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        return service.info()

    @app.get("/api/threads")
    async def threads() -> dict[str, Any]:
        return {"threads": await asyncio.to_thread(service.threads)}

    @app.get("/api/threads/{thread_id}")
    async def thread(thread_id: str) -> dict[str, Any]:
        _check_thread_id(thread_id)
        return await asyncio.to_thread(service.thread, thread_id)

    @app.post("/api/chat")
    async def chat(body: ChatRequest) -> StreamingResponse:
        thread_id = body.thread_id or uuid.uuid4().hex
        service.claim(thread_id)
        events = service.start(thread_id, lambda: service.chat_events(body.message, thread_id))
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/threads/{thread_id}/decision")
    async def decision(thread_id: str, body: DecisionRequest) -> StreamingResponse:
        _check_thread_id(thread_id)
        service.claim(thread_id)
        try:
            waiting = await asyncio.to_thread(service.agent.pending, thread_id)
        except BaseException:
            service.release(thread_id)
            raise
        if not waiting:
            service.release(thread_id)
            raise HTTPException(409, f"nothing in thread {thread_id!r} waits for a decision")
        events = service.start(thread_id, lambda: service.decision_events(thread_id, body))
        return StreamingResponse(events, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/upload")
    async def upload(file: UploadFile) -> dict[str, Any]:
        return await service.save_upload(file)

    @app.get(ARTIFACT_ROUTE + "{name}")
    async def artifact(name: str) -> FileResponse:
        return FileResponse(service.artifact(name), headers={"Cache-Control": "max-age=86400, immutable"})

    return app


def _check_thread_id(thread_id: str) -> None:
    if not re.match(THREAD_ID, thread_id):
        raise HTTPException(400, f"bad thread id {thread_id!r}: ids are 1-128 letters, digits and . _ : -")


def jsonable(value: Any) -> Any:
    """Validation details as plain JSON (pydantic puts exceptions in ``ctx``)."""
    return json.loads(json.dumps(value, default=str))
