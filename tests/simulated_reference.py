"""The simulated ranker written item by item: its first version, ``simulated-v1``.

The package computes the aspect features for whole batches of sessions as arrays;
:func:`reference_features` is the plain definition its tests compare against. :class:`ReferenceSimulatedLLM`
is the whole v1 ranker (per-candidate Python, a generator seeded per (session, hint)), kept so that
``benchmarks/scaling.py`` can measure the vectorised one side by side with it.
"""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from rec_gym.data.types import Item, title_words
from rec_gym.llm.protocol import RankRequest, Ranking
from rec_gym.llm.simulated import ASPECTS, hint_weights


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


def _stable_seed(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class ReferenceSimulatedLLM:
    """The v1 simulated ranker, one request at a time.

    Args:
        session_noise: standard deviation of the per-session score noise.
        hint_noise: standard deviation of the noise that also depends on the hint text.
        hint_strength: how much a hint that names one aspect adds to that aspect's weight.
        genre_bonus: score added to candidates of a genre the hint names.
        seed: changes every noise draw; part of ``name`` so that tables never mix seeds.
    """

    def __init__(self, session_noise: float = 0.35, hint_noise: float = 0.08, hint_strength: float = 3.0,
                 genre_bonus: float = 0.8, seed: int = 0) -> None:
        self.session_noise = float(session_noise)
        self.hint_noise = float(hint_noise)
        self.hint_strength = float(hint_strength)
        self.genre_bonus = float(genre_bonus)
        self.seed = int(seed)
        self.name = (f"simulated-v1(session_noise={self.session_noise},hint_noise={self.hint_noise},"
                     f"hint_strength={self.hint_strength},genre_bonus={self.genre_bonus},seed={self.seed})")
        self._features_key: tuple | None = None
        self._features: np.ndarray | None = None

    def _session_features(self, request: RankRequest) -> tuple[np.ndarray, np.ndarray]:
        key = (tuple(i.item_id for i in request.history), tuple(i.item_id for i in request.candidates))
        if key != self._features_key:
            # Consecutive requests are usually the K+1 hints of one session: compute its features once.
            feats = reference_features(request.history, request.candidates)
            noise = np.random.default_rng(_stable_seed(self.seed, key)).normal(0.0, self.session_noise, len(key[1]))
            genres: dict[str, np.ndarray] = {}
            for pos, c in enumerate(request.candidates):
                for g in c.genres:
                    genres.setdefault(g.lower(), np.zeros(len(key[1])))[pos] = 1.0
            self._features_key, self._features, self._noise, self._genres = key, feats, noise, genres
        return self._features, self._noise  # type: ignore[return-value]

    def scores(self, request: RankRequest) -> np.ndarray:
        """float64 ``(len(request.candidates),)``: the score of each candidate, higher is better."""
        feats, noise = self._session_features(request)
        weights, words = hint_weights(request.hint, self.hint_strength)
        score = feats @ np.array([weights[a] for a in ASPECTS]) + noise
        if request.hint:
            named = [self._genres[w] for w in words if w in self._genres]
            if named:
                score = score + self.genre_bonus * np.minimum(np.sum(named, axis=0), 1.0)
            rng = np.random.default_rng(_stable_seed(self.seed, self._features_key, request.hint))
            score = score + rng.normal(0.0, self.hint_noise, len(score))
        return score

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        return [np.argsort(-self.scores(r), kind="stable").tolist() for r in requests]


def make_v1() -> ReferenceSimulatedLLM:
    """For ``rec-gym precompute --backend-factory simulated_reference:make_v1``."""
    return ReferenceSimulatedLLM()
