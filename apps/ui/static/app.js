// agentkit chat page: talks to the JSON / server-sent-events API in agentkit/apps/ui/server.py.
// Every piece of model or tool text goes into the page with textContent, never as HTML.
"use strict";

const state = { thread: null, uploads: [], busy: false };
const $ = (selector) => document.querySelector(selector);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function scrollDown() {
  const box = $("#messages");
  box.scrollTop = box.scrollHeight;
}

// -- one exchange: the question's answer, its steps (collapsed) and the images tools returned ----------
class Turn {
  constructor() {
    this.root = el("div", "turn");
    this.details = el("details", "steps hidden");
    this.summary = el("summary", null, "Steps");
    this.details.append(this.summary);
    this.images = el("div", "images");
    this.answer = el("div", "msg assistant hidden");
    this.root.append(this.details, this.images, this.answer);
    this.count = 0;
    $("#messages").append(this.root);
  }

  stream(delta) {
    this.answer.classList.remove("hidden");
    this.answer.classList.add("streaming");
    this.answer.textContent += delta;
    scrollDown();
  }

  setAnswer(text) {
    this.answer.classList.remove("hidden", "streaming");
    this.answer.textContent = text;
    scrollDown();
  }

  clearLive() {
    // The streamed text was a thought or an action: it now lives in the steps.
    this.answer.textContent = "";
    this.answer.classList.add("hidden");
    this.answer.classList.remove("streaming");
  }

  addStep(message) {
    const step = renderStep(message);
    if (!step) return;
    this.count += 1;
    this.details.classList.remove("hidden");
    this.summary.textContent = `Steps (${this.count})`;
    this.details.append(step);
    for (const url of message.images || []) {
      const img = el("img", "tool-image");
      img.src = url;
      img.alt = `image from ${message.tool_name || "a tool"}`;
      this.images.append(img);
    }
  }

  add(message) {
    if (message.role === "assistant" && !message.tool_calls.length && !message.parse_error) {
      this.setAnswer(message.text);
    } else {
      this.addStep(message);
    }
  }

  note(text, className = "msg note") {
    const box = el("div", className, text);
    this.root.append(box);
    scrollDown();
    return box;
  }
}

// A small grey label before the text: the page needs no icon font.
function labelled(label, text) {
  const line = el("div");
  line.append(el("span", "label", label), document.createTextNode(" " + text));
  return line;
}

function renderStep(message) {
  if (message.role === "assistant") {
    const step = el("div", "step call");
    if (message.parse_error) {
      step.className = "step failed";
      step.append(labelled("unparseable reply", message.parse_error));
      if (message.text) step.append(el("pre", null, message.text));
      return step;
    }
    if (message.text.trim()) step.append(labelled("thought", message.text.trim()));
    for (const call of message.tool_calls) {
      if (call.kind === "interpreter" && call.arguments.code !== undefined) {
        step.append(labelled("code", call.name), el("pre", null, call.arguments.code));
      } else {
        step.append(labelled("call", call.name), el("pre", null, JSON.stringify(call.arguments, null, 1)));
      }
    }
    return step;
  }
  if (message.role === "environment") {
    const step = el("div", message.error ? "step failed" : "step result");
    step.append(labelled(message.error ? "failed" : "result", message.tool_name || ""));
    if (message.text) step.append(el("pre", null, message.text));
    for (const name of message.files || []) step.append(labelled("file", name));
    return step;
  }
  return null;
}

// -- threads -----------------------------------------------------------------------------------------
async function loadThreads() {
  const { threads } = await api("/api/threads");
  const list = $("#thread-list");
  list.replaceChildren();
  for (const thread of threads) {
    const item = el("li", thread.id === state.thread ? "active" : "", thread.title);
    item.dataset.thread = thread.id;
    item.title = thread.id;
    if (thread.pending) item.append(el("span", "badge", "waiting"));
    item.addEventListener("click", () => openThread(thread.id));
    list.append(item);
  }
}

function setThread(id) {
  state.thread = id;
  const hash = id ? `#thread=${encodeURIComponent(id)}` : "";
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname);
  for (const item of document.querySelectorAll("#thread-list li")) {
    item.classList.toggle("active", item.dataset.thread === id);
  }
}

async function openThread(id) {
  let thread;
  try {
    thread = await api(`/api/threads/${encodeURIComponent(id)}`);
  } catch (error) {
    newChat();
    new Turn().note(error.message, "msg error");
    return;
  }
  setThread(id);
  $("#messages").replaceChildren();
  let turn = null;
  for (const message of thread.messages) {
    if (message.role === "user") {
      $("#messages").append(el("div", "msg user", message.text));
      turn = new Turn();
    } else {
      (turn = turn || new Turn()).add(message);
    }
  }
  if (thread.pending.length) showApproval(thread.pending, turn || new Turn());
  scrollDown();
}

function newChat() {
  setThread(null);
  $("#messages").replaceChildren();
  $("#input").focus();
}

// -- sending and streaming ------------------------------------------------------------------------------
async function* serverEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      yield { event, data: JSON.parse(data.join("\n") || "{}") };
    }
  }
}

function setBusy(busy) {
  state.busy = busy;
  $("#send").disabled = busy;
}

async function send(text) {
  if (state.busy || !text.trim()) return;
  if (state.uploads.length) {
    text += `\n\n[uploaded to the working directory: ${state.uploads.join(", ")}]`;
    state.uploads = [];
    $("#uploads").replaceChildren();
  }
  setBusy(true);
  $("#messages").append(el("div", "msg user", text));
  const turn = new Turn();
  scrollDown();
  try {
    const response = await fetch("/api/chat", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ message: text, thread_id: state.thread }),
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `${response.status} ${response.statusText}`);
    }
    for await (const { event, data } of serverEvents(response)) handleEvent(turn, event, data);
  } catch (error) {
    turn.note(error.message, "msg error");
  } finally {
    setBusy(false);
    loadThreads().catch(() => {});
  }
}

function handleEvent(turn, event, data) {
  if (event === "thread") {
    setThread(data.thread_id);
  } else if (event === "token") {
    turn.stream(data.delta);
  } else if (event === "step") {
    for (const message of data.messages) {
      if (message.role === "assistant" && (message.tool_calls.length || message.parse_error)) turn.clearLive();
      turn.add(message);
    }
  } else if (event === "result") {
    finish(turn, data);
  } else if (event === "error") {
    turn.clearLive();
    turn.note(data.message, "msg error");
  }
}

function finish(turn, result) {
  turn.answer.classList.remove("streaming");
  if (result.outcome === "interrupted" && result.pending.length) {
    turn.clearLive();
    showApproval(result.pending, turn);
  } else if (result.outcome !== "answer") {
    turn.note(`stopped: ${result.outcome}`);
  } else if (!turn.answer.textContent && result.answer) {
    turn.setAnswer(result.answer);
  }
}

// -- approvals ---------------------------------------------------------------------------------------
function showApproval(pending, turn) {
  const card = el("div", "approval");
  card.append(el("h3", null, pending.length === 1 ? "The agent asks to run a tool" : "The agent asks to run tools"));
  for (const call of pending) {
    card.append(labelled("call", call.name), el("pre", null, JSON.stringify(call.arguments, null, 1)));
  }
  const buttons = el("div", "buttons");
  const approve = el("button", "approve", "Approve");
  const reject = el("button", "reject", "Reject");
  const reason = el("input");
  reason.placeholder = "reason (optional, the model reads it)";
  approve.type = reject.type = "button";
  buttons.append(approve, reject, reason);
  card.append(buttons);
  turn.root.append(card);
  scrollDown();
  const thread = state.thread;
  const decide = async (action) => {
    approve.disabled = reject.disabled = true;
    setBusy(true);
    const body = { action };
    if (action === "reject" && reason.value.trim()) body.reason = reason.value.trim();
    try {
      const response = await fetch(`/api/threads/${encodeURIComponent(thread)}/decision`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      if (!response.ok) {
        const failed = await response.json().catch(() => ({}));
        throw new Error(failed.error || `${response.status} ${response.statusText}`);
      }
      card.classList.add("decided");
      buttons.replaceChildren(el("span", "decided", action === "approve" ? "Approved" : "Rejected"));
      const next = new Turn();  // the continued run streams below the card, token by token
      scrollDown();
      for await (const { event, data } of serverEvents(response)) {
        if (state.thread === thread) handleEvent(next, event, data);
      }
    } catch (error) {
      approve.disabled = reject.disabled = false;
      turn.note(error.message, "msg error");
    } finally {
      setBusy(false);
      loadThreads().catch(() => {});
    }
  };
  approve.addEventListener("click", () => decide("approve"));
  reject.addEventListener("click", () => decide("reject"));
}

// -- uploads -----------------------------------------------------------------------------------------
async function upload(files) {
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    try {
      const stored = await api("/api/upload", { method: "POST", body: form });
      state.uploads.push(stored.name);
      $("#uploads").append(el("span", "upload-chip", `${stored.name} (${stored.size} bytes)`));
    } catch (error) {
      $("#uploads").append(el("span", "upload-chip msg error", `${file.name}: ${error.message}`));
    }
  }
}

// -- start -------------------------------------------------------------------------------------------
async function start() {
  const info = await api("/api/info");
  $("#agent-info").textContent = `${info.agent} · ${info.model}`;
  $("#tool-info").textContent = info.tools.length
    ? "tools: " + info.tools.map((t) => t.name + (t.requires_approval ? " (asks first)" : "")).join(", ")
    : "no tools";
  $("#upload-label").classList.toggle("hidden", !info.upload);
  $("#composer").addEventListener("submit", (event) => {
    event.preventDefault();
    if (state.busy) return;
    const text = $("#input").value;
    $("#input").value = "";
    send(text);
  });
  $("#input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("#composer").requestSubmit();
    }
  });
  $("#file-input").addEventListener("change", (event) => {
    upload([...event.target.files]).finally(() => { event.target.value = ""; });
  });
  $("#new-chat").addEventListener("click", newChat);
  await loadThreads();
  const match = location.hash.match(/^#thread=(.+)$/);
  if (match) await openThread(decodeURIComponent(match[1]));
  document.body.dataset.ready = "1";
}

start().catch((error) => new Turn().note(`cannot reach the server: ${error.message}`, "msg error"));
