"""The simulated ranker's aspect features written item by item, as the module docstring defines them.

The package computes them for whole batches of sessions as arrays; this plain version is the
specification its tests compare against.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from rec_gym.data.types import Item, title_words
from rec_gym.llm.simulated import ASPECTS


def reference_features(history: Sequence[Item], candidates: Sequence[Item]) -> np.ndarray:
    """float64 ``(len(candidates), len(ASPECTS))``: each candidate's aspect values given the history."""
    n_hist = max(len(history), 1)
    genre_share: dict[str, float] = {}
    creator_share: dict[str, float] = {}
    for item in history:
        for g in item.genres:
            genre_share[g] = genre_share.get(g, 0.0) + 1.0 / n_hist
        if item.creator:
            creator_share[item.creator] = creator_share.get(item.creator, 0.0) + 1.0 / n_hist
    years = [item.year for item in history if item.year is not None]
    last = history[-1] if history else None
    last_genres = set(last.genres) if last else set()
    history_words = [title_words(item.title) for item in history]

    feats = np.zeros((len(candidates), len(ASPECTS)))
    for i, c in enumerate(candidates):
        genres = set(c.genres)
        feats[i, 0] = min(1.0, sum(genre_share.get(g, 0.0) for g in genres))
        if last is not None:
            parts = []
            if genres or last_genres:
                parts.append(len(genres & last_genres) / max(len(genres | last_genres), 1))
            if c.creator and last.creator:
                parts.append(float(c.creator == last.creator))
            if c.year is not None and last.year is not None:
                parts.append(math.exp(-abs(c.year - last.year) / 5.0))
            words = title_words(c.title)
            if words and history_words[-1]:
                parts.append(len(words & history_words[-1]) / len(words | history_words[-1]))
            feats[i, 1] = sum(parts) / len(parts) if parts else 0.0
        if c.year is not None:
            if years:
                feats[i, 2] = sum(1 for y in years if abs(y - c.year) <= 5) / len(years)
            feats[i, 3] = min(1.0, max(0.0, (c.year - 1950) / 70.0))
        feats[i, 4] = c.popularity
        if c.creator:
            feats[i, 5] = min(1.0, creator_share.get(c.creator, 0.0))
        words = title_words(c.title)
        if words:
            feats[i, 6] = max((len(words & hw) / len(words | hw) for hw in history_words if hw), default=0.0)
    return feats

