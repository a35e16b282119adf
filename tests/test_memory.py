"""Bounded history: the prompt keeps the system message and the latest whole turns within a token budget, the
thread keeps everything, and what was cut can be summarised once per cut."""

from __future__ import annotations

import pytest

from agentkit.agents import create_agent
from agentkit.errors import ConfigError
from agentkit.memory import History, as_history, message_tokens
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel


def turn(i: int, words: int = 30) -> list[Message]:
    """A user question, a tool call, its result and an answer: one whole turn."""
    call = ToolCall(id=f"c{i}", name="lookup", arguments={"q": i})
    return [Message.user(f"question {i} " + "word " * words), Message.assistant("", [call]),
            Message.tool_result(call, f"result {i}"), Message.assistant(f"answer {i}")]


def conversation(turns: int) -> list[Message]:
    return [Message.system("You are helpful."), *[m for i in range(turns) for m in turn(i)]]


def test_trimming_keeps_the_system_message_and_the_latest_whole_turns_within_budget():
    messages = conversation(10)
    history = History(max_tokens=200)
    prompt = history(messages)
    assert prompt[0] == messages[0]
    assert history.tokens(prompt) <= 200
    assert prompt[1].role == "user", "a cut starts at a user message: no orphaned tool call or result"
    assert prompt[-4:] == messages[-4:]
    kept_turns = [m.text.split()[1] for m in prompt if m.role == "user"]
    assert kept_turns == [str(i) for i in range(10 - len(kept_turns), 10)]
    one_more = history.tokens([prompt[0], *turn(0), *prompt[1:]])
    assert one_more > 200, "the earliest turn that fits is kept: one more would go over"


def test_a_short_thread_is_untouched_and_the_current_turn_is_kept_even_over_budget():
    short = conversation(2)
    assert History(max_tokens=2000)(short) == short
    long_question = [Message.system("s"), *turn(0), Message.user("x " * 400)]
    prompt = History(max_tokens=50)(long_question)
    assert prompt == [long_question[0], long_question[-1]]


def test_the_agent_shows_the_model_a_bounded_prompt_while_the_thread_keeps_everything():
    seen: list[list[Message]] = []

    def model(messages):
        seen.append(messages)
        return Message.assistant(f"reply to {messages[-1].text.split()[1]}")

    history = History(max_tokens=120)
    agent = create_agent("react", ScriptedModel(model), system_prompt="Be brief.", checkpointer="memory",
                         history=history)
    for i in range(12):
        result = agent.run(f"message {i} " + "filler " * 20, thread_id="long")
        assert result.answer == f"reply to {i}"
    assert len(agent.history("long")) == 24
    assert all(history.tokens(prompt) <= 120 for prompt in seen)
    assert seen[-1][0].text == "Be brief." and seen[-1][-1].text.startswith("message 11 ")
    assert len(seen[-1]) < len(seen[0]) + 2 * 11, "older turns were cut from the prompt"


def test_cut_turns_are_summarised_once_each_and_the_summary_is_shown_in_the_system_message():
    summarised: list[list[Message]] = []

    def summarize(messages: list[Message]) -> str:
        summarised.append(messages)
        users = [m.text.split()[1] for m in messages if m.role == "user"]
        earlier = messages[0].text.removeprefix("Summary so far: ") + "; " if messages[0].role == "system" else ""
        return earlier + "asked " + ",".join(users)

    history = History(max_tokens=150, summarize=summarize)
    growing = conversation(3)
    for i in range(3, 9):
        growing += turn(i)
        prompt = history(growing)
        assert prompt[0].role == "system" and prompt[0].text.startswith("You are helpful.")
        assert sum(1 for m in prompt if m.role == "system") == 1
    note = prompt[0].text.split("Summary of the earlier conversation: ")[1]
    first_kept = int(prompt[1].text.split()[1])
    assert note.replace("; asked ", ",").removeprefix("asked ").split(",") == [str(i) for i in range(first_kept)]
    for call in summarised[1:]:  # each later call reads the previous summary plus only the newly cut turns
        assert call[0].role == "system" and call[0].text.startswith("Summary so far: ")
    users_read = [m.text.split()[1] for call in summarised for m in call if m.role == "user"]
    assert sorted(users_read, key=int) == [str(i) for i in range(first_kept)], "every cut turn is read exactly once"
    calls = len(summarised)
    assert history(growing) == prompt and len(summarised) == calls, "the same cut reuses its summary"


def test_history_uses_the_models_tokenizer_when_it_has_one_and_rejects_bad_specs():
    class Counting(ScriptedModel):
        def count_tokens(self, text: str) -> int:
            return len(text)  # one token per character: much stricter than the default estimate

    made = as_history(500, Counting(["x"]))
    assert made.max_tokens == 500 and made.count("abcd") == 4
    assert message_tokens(Message.user("abcd"), made.count) < message_tokens(Message.user("abcd" * 10), made.count)
    with pytest.raises(ConfigError, match="token budget"):
        as_history("lots", None)
    with pytest.raises(ConfigError, match="at least 16"):
        History(max_tokens=3)
    with pytest.raises(ConfigError, match="token budget"):
        create_agent("react", ScriptedModel(["x"]), checkpointer="memory", history=1.5)


def test_the_embedded_model_reads_a_bounded_prompt_in_its_own_tokens():
    """The real model reports the prompt tokens it read: with a budget they stop growing with the thread."""
    from agentkit.models import load_model

    model = load_model("embedded")
    question = "Please remember this detail about my order and my delivery preferences for later. "

    def prompts(history) -> list[int]:
        agent = create_agent("react", model, checkpointer="memory", history=history,
                             generation={"max_new_tokens": 1}, budget={"max_steps": 1})
        sizes = []
        for i in range(5):
            result = agent.run(f"Note {i}: {question}", thread_id="t")
            sizes.append(next(m for m in result.messages if m.role == "assistant").usage.prompt_tokens)
        return sizes

    unbounded, bounded = prompts(None), prompts(60)
    assert unbounded[-1] > unbounded[0] + 4 * 15, "without a budget the prompt grows with every turn"
    assert max(bounded) <= bounded[0] + 60, "with a budget of 60 tokens it stays within the first prompt + 60"
    assert bounded[-1] < unbounded[-1]
