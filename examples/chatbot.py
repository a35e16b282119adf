"""A chatbot with per-thread memory and a bounded history.

Each conversation is a thread saved in a SQLite file, so it survives restarts: start the script again with the
same ``--thread`` and the bot remembers. The model only ever sees the latest turns that fit ``--history-tokens``
(``--summarize`` replaces the older ones with a summary the same model writes); the thread keeps everything.

    .venv/bin/python examples/chatbot.py                          # the embedded model, a new thread
    .venv/bin/python examples/chatbot.py --thread ada             # continue (or start) the thread "ada"
    .venv/bin/python examples/chatbot.py --model scripted:replies.jsonl --history-tokens 256 --summarize

Type a message per line. ``/history`` shows the thread and what the model sees of it, ``/threads`` lists the
threads in the file; an empty line or Ctrl-D quits.
"""

from __future__ import annotations

import argparse
import sys
import uuid

from agentkit.agents import create_agent
from agentkit.memory import History, model_summarizer
from agentkit.messages import Message
from agentkit.models import load_model

SYSTEM_PROMPT = "You are a friendly assistant. Answer in one or two sentences and remember what the user told you."


def threads(agent) -> list[str]:
    """Thread ids saved in the checkpoint file, oldest first."""
    seen: dict[str, None] = {}
    for checkpoint in agent.checkpointer.list(None):
        seen.setdefault(checkpoint.config["configurable"]["thread_id"], None)
    return list(reversed(seen))


def show_history(agent, thread_id: str, history: History) -> None:
    messages = agent.history(thread_id)
    seen = history([Message.system(SYSTEM_PROMPT), *messages])  # the prompt the next turn starts from
    kept = len([m for m in seen if m.role != "system"])
    print(f"thread {thread_id}: {len(messages)} messages; the model sees the last {kept} "
          f"({history.tokens(seen)} of at most {history.max_tokens} tokens)")
    for message in messages:
        print(f"  {message.role}: {message.text}")


def lines():
    """The user's lines: piped input as is, or a prompt per line until Ctrl-D."""
    if not sys.stdin.isatty():
        yield from sys.stdin
        return
    while True:
        try:
            yield input("you> ")
        except EOFError:
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="embedded", help="model spec: embedded, hf:PATH, openai:URL#MODEL, "
                                                             "scripted:FILE.jsonl")
    parser.add_argument("--db", default="chatbot-threads.sqlite", help="the SQLite file threads are saved in")
    parser.add_argument("--thread", default=None, help="the conversation to continue (default: a new one)")
    parser.add_argument("--history-tokens", type=int, default=1024, help="most tokens of conversation the model sees")
    parser.add_argument("--summarize", action="store_true", help="summarise the turns that no longer fit")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="longest reply, in tokens")
    args = parser.parse_args(argv)

    model = load_model(args.model)
    history = History(max_tokens=args.history_tokens,
                      summarize=model_summarizer(model) if args.summarize else None)
    agent = create_agent("react", model, system_prompt=SYSTEM_PROMPT, checkpointer=args.db, history=history,
                         generation={"max_new_tokens": args.max_new_tokens})
    thread_id = args.thread or uuid.uuid4().hex[:8]
    print(f"thread {thread_id} in {args.db} ({len(agent.history(thread_id))} messages so far)", file=sys.stderr)

    for line in lines():
        text = line.strip()
        if not text:
            break
        if text == "/history":
            show_history(agent, thread_id, history)
            continue
        if text == "/threads":
            print("threads: " + ", ".join(threads(agent)))
            continue
        print("bot> ", end="", flush=True)
        for event in agent.stream(text, thread_id=thread_id):
            if event.type == "token":
                print(event.delta, end="", flush=True)
            elif event.type == "result" and event.result.outcome != "answer":
                print(f" (stopped: {event.result.outcome})", end="")
        print()


if __name__ == "__main__":
    main()
