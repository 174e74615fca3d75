"""A deterministic stand-in for an LLM ranker. It is a simulator, not a language model.

:class:`SimulatedLLM` ranks the candidate set of a session from item attributes and reacts to the
text of a hint. It exists so that the environments, the tests, CI and offline benchmarks run with
no model and no network, and so that the per-session best hint is known exactly. Its rankings are
never an LLM's behaviour and no result obtained with it should be reported as one.

What it models
--------------
Each candidate gets a score that is a weighted sum of *aspects* of the candidate given the session:

============  ==============================================================  ===========
aspect        value for a candidate (all in [0, 1])                            base weight
============  ==============================================================  ===========
genre         share of history items that carry each of its genres (summed)    1.0
last_item     likeness to the most recent item (genres, creator, year)         0.6
era           share of history items released within 5 years of it          0.4
newer         how recent its release year is (1950 -> 0, 2020 -> 1)             0.0
popularity    its popularity in the dataset (the popularity-leaning prior)      1.2
creator       share of history items by its creator (director, studio)          0.4
franchise     title-word overlap with a history title (sequels, series)        0.4
============  ==============================================================  ===========

plus seeded Gaussian noise: a per-session part (``session_noise``, the model's fixed
idiosyncrasy) and a smaller part seeded by the hint text too (``hint_noise``: any change of
wording perturbs the ranking a little, as it does for a real LLM).

A hint shifts the weights of the aspects it talks about. The hint is lower-cased and searched for
the keywords in :data:`ASPECT_KEYWORDS`, clause by clause; each aspect it mentions gets
``hint_strength`` added to its weight (divided by the square root of the number of aspects
mentioned, so a hint that talks about everything helps with nothing in particular). A negation or
contrast earlier in the same clause ("avoid", "not", "over", "rather than") subtracts instead. Keywords that point the other way
(``niche``, ``older``, ...) subtract from ``popularity`` and ``newer``. Genre names in the hint add
a bonus to candidates of that genre. Any text works, not only built-in hints: text that names no
aspect only changes the hint noise.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
from functools import lru_cache
from typing import Sequence

import numpy as np

from rec_gym.data.types import Item, title_words
from rec_gym.llm.protocol import GenerateRequest, RankRequest, Ranking

ASPECTS = ("genre", "last_item", "era", "newer", "popularity", "creator", "franchise")
BASE_WEIGHTS = {"genre": 1.0, "last_item": 0.6, "era": 0.4, "newer": 0.0, "popularity": 1.2, "creator": 0.4, "franchise": 0.4}

# (aspect, direction, keywords). Multi-word keywords are matched before single words.
ASPECT_KEYWORDS: tuple[tuple[str, float, tuple[str, ...]], ...] = (
    ("last_item", +1.0, ("most recent", "last movie", "last game", "last item", "latest one", "just watched",
                         "just played", "previous", "final item", "last one", "most recently")),
    ("newer", +1.0, ("recent release", "recent releases", "newer", "new release", "new releases", "modern", "contemporary")),
    ("newer", -1.0, ("older", "classic", "classics", "vintage", "old-school", "retro", "golden age")),
    ("popularity", -1.0, ("niche", "obscure", "lesser-known", "lesser known", "hidden gem", "hidden gems", "underrated",
                          "indie", "cult", "little-known", "art-house", "arthouse")),
    ("popularity", +1.0, ("popular", "blockbuster", "blockbusters", "mainstream", "well-known", "best-selling",
                          "bestselling", "hit", "hits", "acclaimed", "widely seen")),
    ("genre", +1.0, ("genre", "genres", "same kind", "type of")),
    ("era", +1.0, ("era", "decade", "same period", "same years", "release year", "time period")),
    ("creator", +1.0, ("director", "directors", "filmmaker", "studio", "studios", "developer", "developers",
                       "publisher", "creator", "creators", "auteur")),
    ("franchise", +1.0, ("sequel", "sequels", "franchise", "series", "saga", "trilogy", "installment", "next part")),
)
NEGATIONS = frozenset(("avoid", "not", "less", "instead", "don't", "dont", "never", "without", "no", "fewer", "over",
                       "than", "unlike"))
# purpose -> module whose ``write(llm, request) -> str`` simulates that kind of writing.
SIMULATED_WRITERS = {
    "reflect": "rec_gym.llm.simulated_reflection",
    "dedup": "rec_gym.llm.simulated_reflection",
    "preference": "rec_gym.llm.simulated_preferences",
}
_CLAUSE = re.compile(r"[.;:,!?]|\band\b|\bbut\b")
_WORD = re.compile(r"[a-z0-9'\-]+")


@lru_cache(maxsize=4096)
def hint_weights(hint: str | None, strength: float = 3.0) -> tuple[dict[str, float], frozenset[str]]:
    """The aspect weights a hint induces, and the words it contains (lower-case, for genre names)."""
    weights = dict(BASE_WEIGHTS)
    if not hint:
        return weights, frozenset()
    lowered = hint.lower()
    shifts: dict[str, float] = {}
    for clause in _CLAUSE.split(lowered):
        text = " ".join(_WORD.findall(clause))
        for aspect, direction, keywords in ASPECT_KEYWORDS:
            for keyword in keywords:
                match = re.search(rf"\b{re.escape(keyword)}\b", text)
                if match is None:
                    continue
                # A negation or a contrast ("over", "rather than") earlier in the clause flips the sense.
                flips = sum(1 for w in text[: match.start()].split() if w in NEGATIONS)
                sign = -1.0 if flips % 2 else 1.0
                shifts[aspect] = shifts.get(aspect, 0.0) + direction * sign
                break
    shifts = {a: s for a, s in shifts.items() if s != 0.0}
    if shifts:
        scale = strength / math.sqrt(len(shifts))
        for aspect, shift in shifts.items():
            weights[aspect] += scale * float(np.clip(shift, -1.0, 1.0))
    return weights, frozenset(_WORD.findall(lowered))


def _stable_seed(*parts: object) -> int:
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def aspect_features(history: Sequence[Item], candidates: Sequence[Item]) -> np.ndarray:
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


class SimulatedLLM:
    """Deterministic attribute-based ranker that reads hints; see the module docstring.

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
            feats = aspect_features(request.history, request.candidates)
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

    def write(self, requests: Sequence[GenerateRequest]) -> list[str]:
        """Simulated writing, one reply per request, chosen by ``request.purpose`` (see :data:`SIMULATED_WRITERS`).

        The writers read ``request.context`` (the session's items, the true item, ...) and are
        deterministic given the request, its ``sample`` index and this backend's ``seed``. They simulate
        a writer's behaviour for testing the pipelines; their texts are not an LLM's.
        """
        replies = []
        for request in requests:
            module = SIMULATED_WRITERS.get(request.purpose)
            if module is None:
                raise ValueError(f"the simulated backend writes only for purposes {sorted(SIMULATED_WRITERS)}, "
                                 f"not {request.purpose!r}; use an hf: or openai: model for free chat")
            replies.append(importlib.import_module(module).write(self, request))
        return replies
