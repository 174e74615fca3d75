"""The two objects every dataset loader produces: a catalog of items and a set of sessions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Mapping, Sequence

import numpy as np

DOMAINS = ("movie", "game")
_STRUCTURED = frozenset({"year", "genres", "popularity", "creator"})
_TITLE_WORD = re.compile(r"[a-z0-9'\-]+")
_TITLE_STOPWORDS = frozenset("the a an of and in on to for with la le les el il das die der".split())


@lru_cache(maxsize=65536)
def title_words(title: str) -> frozenset[str]:
    """The words of a title that can link two items (sequels, series): lower-case, without a
    ``(year)``, stop words, numbers and one-letter words. ``"Toy Story 2 (1999)"`` -> ``{"toy", "story"}``."""
    title = re.sub(r"\(\d{4}\)", " ", title.lower())
    return frozenset(w for w in _TITLE_WORD.findall(title) if w not in _TITLE_STOPWORDS and not w.isdigit() and len(w) > 1)


@dataclass(frozen=True)
class Item:
    """One catalog item as a backend sees it.

    ``attributes`` holds what the dataset knows besides the title, e.g.
    ``{"year": 1995, "genres": ("Comedy",), "popularity": 0.73, "creator": "Pixar"}``.
    ``popularity`` is in [0, 1] (share of the most-seen item's interaction count, log-scaled).
    """

    item_id: str
    title: str
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @property
    def genres(self) -> tuple[str, ...]:
        return tuple(self.attributes.get("genres") or ())

    @property
    def year(self) -> int | None:
        year = self.attributes.get("year")
        return int(year) if year is not None else None

    @property
    def popularity(self) -> float:
        return float(self.attributes.get("popularity", 0.0))

    @property
    def creator(self) -> str | None:
        return self.attributes.get("creator")

    def text(self) -> str:
        """Title plus the metadata the dataset has; what the observation encoder reads."""
        parts = [self.title]
        if self.year is not None and f"({self.year})" not in self.title:
            parts.append(f"year: {self.year}")
        if self.genres:
            parts.append("genres: " + ", ".join(self.genres))
        if self.creator:
            parts.append(f"creator: {self.creator}")
        for key, value in self.attributes.items():
            # Other descriptive attributes a dataset supplies (e.g. "era", "tier") are text too.
            if key not in _STRUCTURED and isinstance(value, str) and value:
                parts.append(f"{key}: {value}")
        return "; ".join(parts)


@dataclass
class Catalog:
    """All items of a dataset; sessions refer to items by their position in ``items``."""

    items: list[Item]
    domain: str = "movie"

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")
        self._index = {item.item_id: i for i, item in enumerate(self.items)}
        if len(self._index) != len(self.items):
            raise ValueError("catalog has duplicate item ids")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]

    def index_of(self, item_id: str) -> int:
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise KeyError(f"item id {item_id!r} is not in the catalog") from None

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._index

    def texts(self) -> list[str]:
        return [item.text() for item in self.items]


@dataclass
class SessionDataset:
    """Sessions of one dataset, with fixed candidate sets and a split label per session.

    Shapes (``n`` sessions, ``c`` = largest candidate set, ``h`` = longest kept history, at most 20):

    - ``history``: int32 ``(n, h)``, catalog indices oldest first, right-padded with -1
    - ``target``: int32 ``(n,)``, catalog index of the true next item
    - ``candidates``: int32 ``(n, c)``, catalog indices in prompt order, right-padded with -1 where a
      session has fewer candidates (sessions given with their own candidates may differ in size);
      contains the target once. :meth:`candidates_of` gives one session's real candidates.
    - ``candidate_counts``: int32 ``(n,)``, the number of real candidates of each session
    - ``target_pos``: int16 ``(n,)``, position of the target inside ``candidates``
    - ``split``: ``(n,)`` strings among ``"train"``, ``"val"``, ``"test"``
    - ``session_ids``: ``(n,)`` strings
    """

    name: str
    catalog: Catalog
    history: np.ndarray
    target: np.ndarray
    candidates: np.ndarray
    split: np.ndarray
    session_ids: np.ndarray
    fingerprint: str = ""

    def __post_init__(self) -> None:
        real = self.candidates >= 0
        self.candidate_counts = real.sum(axis=1).astype(np.int32)
        # Padding only at the end, so a session's candidates are the first candidate_counts of its row.
        misplaced = np.any(real != (np.arange(self.candidates.shape[1]) < self.candidate_counts[:, None]), axis=1)
        if misplaced.any():
            row = int(np.argmax(misplaced))
            raise ValueError(f"dataset {self.name!r} session row {row}: candidates {self.candidates[row].tolist()} "
                             f"have a -1 pad before a real candidate; pads go at the end")
        self.target_pos = np.argmax(self.candidates == self.target[:, None], axis=1).astype(np.int16)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def domain(self) -> str:
        return self.catalog.domain

    def indices(self, split: str | None) -> np.ndarray:
        """Row indices of the sessions in ``split`` (all sessions for ``None``)."""
        if split is None or split == "all":
            return np.arange(len(self))
        rows = np.flatnonzero(self.split == split)
        if rows.size == 0:
            present = sorted(set(self.split.tolist()))
            raise ValueError(f"dataset {self.name!r} has no sessions in split {split!r}; splits present: {present}")
        return rows

    def history_of(self, row: int) -> np.ndarray:
        h = self.history[row]
        return h[h >= 0]

    def candidates_of(self, row: int) -> np.ndarray:
        """int32 ``(candidate_counts[row],)``: the real candidates of session ``row``, in prompt order."""
        return self.candidates[row, : self.candidate_counts[row]]

    def session_items(self, row: int) -> tuple[list[Item], list[Item]]:
        """(history items oldest first, candidate items in prompt order) of session ``row``."""
        items = self.catalog.items
        return [items[i] for i in self.history_of(row)], [items[i] for i in self.candidates_of(row)]

    def subset(self, rows: Sequence[int]) -> "SessionDataset":
        rows = np.asarray(rows)
        return SessionDataset(self.name, self.catalog, self.history[rows], self.target[rows],
                              self.candidates[rows], self.split[rows], self.session_ids[rows], self.fingerprint)
