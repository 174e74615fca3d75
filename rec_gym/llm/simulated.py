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
era           share of history items released within 5 years of it             0.4
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
from typing import TYPE_CHECKING, Sequence

import numpy as np

from rec_gym.data.types import Item, title_words
from rec_gym.llm.protocol import GenerateRequest, RankRequest, Ranking

if TYPE_CHECKING:
    from rec_gym.data.types import SessionDataset

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
# The simulated preference writer's default chance of naming a session's latent preference (synthetic world).
DEFAULT_PREFERENCE_FIDELITY = 0.5
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


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEPARATOR = np.uint64(0x5DEECE66D2B1F7A3)  # between a session's history and its candidates
_SESSION_STREAM = np.uint64(0x6A09E667F3BCC909)  # the per-session noise; hint noise uses the hint's hash


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser on uint64 arrays (wrapping arithmetic): a bijective, well-mixed hash."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        return x ^ (x >> np.uint64(31))


def text_hash(text: str) -> int:
    """A 64-bit hash of ``text`` that is the same on every machine and run."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


@lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    """float64 ``(65536,)``: the standard normal's quantiles at ``(i + 0.5) / 65536``."""
    from statistics import NormalDist

    normal = NormalDist()
    return np.array([normal.inv_cdf((i + 0.5) / 65536) for i in range(65536)])


@lru_cache(maxsize=8)
def _position_keys(n: int) -> np.ndarray:
    """uint64 ``(n,)``: one random-looking key per candidate position."""
    with np.errstate(over="ignore"):
        return _mix(np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)


def _normals(stream_keys: np.ndarray, n_positions: int) -> np.ndarray:
    """float64 ``stream_keys.shape + (n_positions,)``: standard normal draws, one per (stream key, position).

    A counter-based stream: a draw depends only on its stream key (already well mixed) and its position,
    so scores do not depend on how requests are batched or ordered. Each draw is a quantile of the
    normal distribution picked by the top 16 bits of a multiplicative hash of key and position.
    """
    with np.errstate(over="ignore"):
        bits = (stream_keys[..., None] ^ _position_keys(n_positions)) * _M2
        bits = (bits ^ (bits >> np.uint64(32))) * _M1
    return _normal_quantiles()[(bits >> np.uint64(48)).astype(np.intp)]


class ItemArrays:
    """The attributes of a list of items as arrays, in list order (what the vectorised scorer reads).

    Attributes:
        genres: float64 ``(n, g)``: how often each genre of ``genre_names`` is listed for each item;
            has_genre: the same as 0/1; n_genres ``(n,)``: how many distinct genres each item has.
        genre_names: the ``g`` genre names, lower-case.
        year: float64 ``(n,)``, NaN where unknown. creator: int64 ``(n,)`` creator ids, -1 where none.
        popularity: float64 ``(n,)``. words: int64 ``(n, w)`` title-word ids, -1 padded; n_words ``(n,)``.
        hashes: uint64 ``(n,)``: :func:`text_hash` of each item id.
    """

    def __init__(self, items: Sequence[Item]) -> None:
        n = len(items)
        genre_ids: dict[str, int] = {}
        creator_ids: dict[str, int] = {}
        word_ids: dict[str, int] = {}
        pairs, words = [], []
        self.year = np.full(n, np.nan)
        self.creator = np.full(n, -1, dtype=np.int64)
        self.popularity = np.zeros(n)
        self.hashes = np.zeros(n, dtype=np.uint64)
        for i, item in enumerate(items):
            pairs.extend((i, genre_ids.setdefault(g, len(genre_ids))) for g in item.genres)
            if item.year is not None:
                self.year[i] = item.year
            if item.creator:
                self.creator[i] = creator_ids.setdefault(item.creator, len(creator_ids))
            self.popularity[i] = item.popularity
            self.hashes[i] = text_hash(item.item_id)
            words.append(sorted(word_ids.setdefault(w, len(word_ids)) for w in title_words(item.title)))
        self.genres = np.zeros((n, len(genre_ids)))
        if pairs:
            np.add.at(self.genres, tuple(np.array(pairs).T), 1.0)
        self.has_genre = (self.genres > 0).astype(np.float64)
        self.n_genres = self.has_genre.sum(axis=1)
        self.genre_names = tuple(g.lower() for g in genre_ids)
        self.n_words = np.array([len(w) for w in words], dtype=np.int64)
        self.words = np.full((n, max(1, int(self.n_words.max(initial=0)))), -1, dtype=np.int64)
        for i, w in enumerate(words):
            self.words[i, :len(w)] = w
        self.n_word_ids = len(word_ids)


def _title_matches(arrays: ItemArrays, hist: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (candidate, history item) pairs of each session that share title words, and how many words.

    Returns ``(flat, shared)``: ``flat`` indexes ``(b, c, h)`` in C order, ``shared`` is the number of
    title words the pair has in common (at least 1); pairs sharing none are left out. A join on
    (session, word): the cost grows with the number of title words, not with candidates x history.
    """
    b, c = cand.shape
    h = hist.shape[1]
    hw = np.where(hist[..., None] >= 0, arrays.words[np.maximum(hist, 0)], -1)  # (b, h, w)
    cw = np.where(cand[..., None] >= 0, arrays.words[np.maximum(cand, 0)], -1)  # (b, c, w)
    hs, hh, hwi = np.nonzero(hw >= 0)
    cs, cc, cwi = np.nonzero(cw >= 0)
    empty = np.zeros(0, dtype=np.int64)
    if hs.size == 0 or cs.size == 0:
        return empty, empty
    vocab = np.int64(arrays.n_word_ids + 1)
    h_keys = hs * vocab + hw[hs, hh, hwi]
    order = np.argsort(h_keys, kind="stable")
    h_keys, h_item = h_keys[order], hh[order]
    keys, first, count = np.unique(h_keys, return_index=True, return_counts=True)
    c_keys = cs * vocab + cw[cs, cc, cwi]
    at = np.minimum(np.searchsorted(keys, c_keys), keys.size - 1)
    hit = np.flatnonzero(keys[at] == c_keys)
    if hit.size == 0:
        return empty, empty
    n_match = count[at[hit]]
    entry = np.repeat(hit, n_match)
    offsets = np.arange(entry.size) - np.repeat(np.cumsum(n_match) - n_match, n_match)
    matched_h = h_item[first[at[entry]] + offsets]
    flat, shared = np.unique((cs[entry] * c + cc[entry]) * h + matched_h, return_counts=True)
    return flat, shared


def batch_features(arrays: ItemArrays, hist: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """float64 ``(b, c, len(ASPECTS))``: the aspect values of each candidate given its session's history.

    ``hist`` (``(b, h)``, oldest first) and ``cand`` (``(b, c)``) hold indices into ``arrays``, right-padded
    with -1; padded candidates get zeros. The values are those the module docstring defines, computed
    for a whole batch of sessions at once.
    """
    hist, cand = np.asarray(hist, dtype=np.int64), np.asarray(cand, dtype=np.int64)
    b, c = cand.shape
    if hist.shape[1] == 0:
        hist = np.full((b, 1), -1, dtype=np.int64)
    h = hist.shape[1]
    feats = np.zeros((b, c, len(ASPECTS)))
    h_ok, c_ok = hist >= 0, cand >= 0
    hi, ci = np.maximum(hist, 0), np.maximum(cand, 0)
    n_hist = h_ok.sum(axis=1)
    per_item = 1.0 / np.maximum(n_hist, 1)[:, None]
    last_pos = np.maximum(n_hist - 1, 0)
    last = hi[np.arange(b), last_pos]

    # genre: the summed history share of the candidate's genres
    c_genres = arrays.has_genre[ci]  # (b, c, g)
    if not c_ok.all():
        c_genres = c_genres * c_ok[..., None]
    genre_share = np.einsum("bhg,bh->bg", arrays.genres[hi], h_ok * per_item)
    feats[..., 0] = np.minimum(1.0, np.einsum("bcg,bg->bc", c_genres, genre_share))

    # last_item: mean of the comparable parts (genres, creator, year, title words) with the newest item
    l_genres = arrays.has_genre[last]  # (b, g)
    inter = np.einsum("bcg,bg->bc", c_genres, l_genres)
    union = np.where(c_ok, arrays.n_genres[ci], 0) + arrays.n_genres[last][:, None] - inter
    parts_sum = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    parts_n = (union > 0).astype(np.float64)
    c_creator, c_year = arrays.creator[ci], arrays.year[ci]
    both_creator = (c_creator >= 0) & (arrays.creator[last] >= 0)[:, None]
    parts_sum += np.where(both_creator, c_creator == arrays.creator[last][:, None], 0.0)
    parts_n += both_creator
    l_year = arrays.year[last][:, None]
    both_year = ~np.isnan(c_year) & ~np.isnan(l_year)
    parts_sum += np.where(both_year, np.exp(-np.abs(np.nan_to_num(c_year - l_year)) / 5.0), 0.0)
    parts_n += both_year
    c_words = np.where(c_ok, arrays.n_words[ci], 0)
    h_words = np.where(h_ok, arrays.n_words[hi], 0)
    flat, shared = _title_matches(arrays, hist, cand)
    pair, ph = flat // h, flat % h  # (session * c + candidate), history position
    jaccard = shared / (c_words.ravel()[pair] + h_words.ravel()[pair // c * h + ph] - shared)
    last_title = np.zeros(b * c)
    with_last = ph == last_pos[pair // c]
    last_title[pair[with_last]] = jaccard[with_last]
    both_words = (c_words > 0) & (arrays.n_words[last][:, None] > 0)
    parts_sum += np.where(both_words, last_title.reshape(b, c), 0.0)
    parts_n += both_words
    feats[..., 1] = np.where((n_hist > 0)[:, None] & (parts_n > 0), parts_sum / np.maximum(parts_n, 1), 0.0)

    # era: history share released within 5 years, from each session's histogram of (integer) years
    h_year = np.where(h_ok, arrays.year[hi], np.nan)
    known = ~np.isnan(h_year)
    n_years = known.sum(axis=1)[:, None]
    has_year = ~np.isnan(c_year) & c_ok
    if known.any():
        low = int(np.nanmin(h_year))
        span = int(np.nanmax(h_year)) - low + 1
        sessions, slots = np.nonzero(known)
        counts = np.bincount(sessions * span + (h_year[sessions, slots].astype(np.int64) - low), minlength=b * span)
        cumulative = np.concatenate([np.zeros((b, 1), dtype=np.int64), np.cumsum(counts.reshape(b, span), axis=1)], axis=1)
        year_index = np.nan_to_num(c_year, nan=low).astype(np.int64) - low
        above = np.take_along_axis(cumulative, np.clip(year_index + 6, 0, span), axis=1)
        below = np.take_along_axis(cumulative, np.clip(year_index - 5, 0, span), axis=1)
        feats[..., 2] = np.where(has_year & (n_years > 0), (above - below) / np.maximum(n_years, 1), 0.0)
    feats[..., 3] = np.where(has_year, np.clip((np.nan_to_num(c_year) - 1950) / 70.0, 0.0, 1.0), 0.0)

    feats[..., 4] = np.where(c_ok, arrays.popularity[ci], 0.0)

    # creator: history share of the candidate's creator
    h_creator = np.where(h_ok, arrays.creator[hi], -1).astype(np.int32)
    same = (c_creator.astype(np.int32)[..., None] == h_creator[:, None, :]).sum(axis=2)
    feats[..., 5] = np.where(c_ok & (c_creator >= 0), np.minimum(1.0, same * per_item), 0.0)

    # franchise: the best title-word overlap with any history title
    franchise = np.zeros(b * c)
    np.maximum.at(franchise, pair, jaccard)
    feats[..., 6] = np.where(c_words > 0, franchise.reshape(b, c), 0.0)
    return feats


def aspect_features(history: Sequence[Item], candidates: Sequence[Item]) -> np.ndarray:
    """float64 ``(len(candidates), len(ASPECTS))``: each candidate's aspect values given the history."""
    arrays = ItemArrays(list(history) + list(candidates))
    hist = np.arange(len(history))[None, :]
    cand = np.arange(len(history), len(history) + len(candidates))[None, :]
    return batch_features(arrays, hist, cand)[0]


def session_keys(hashes: np.ndarray, hist: np.ndarray, cand: np.ndarray, seed: int) -> np.ndarray:
    """uint64 ``(b,)``: a key per session from its item ids in order (history, then candidates) and the seed."""
    hist, cand = np.asarray(hist), np.asarray(cand)
    key = _mix(np.full(cand.shape[0], np.uint64(seed & 0xFFFFFFFFFFFFFFFF)) ^ _GOLDEN)
    for columns, after in ((hist, _SEPARATOR), (cand, np.uint64(0))):
        for j in range(columns.shape[1]):
            ok = columns[:, j] >= 0
            key = np.where(ok, _mix(key ^ hashes[np.maximum(columns[:, j], 0)]), key)
        key = _mix(key ^ after)
    return key


@lru_cache(maxsize=4096)
def _hint_terms(hint: str | None, strength: float, genre_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """(aspect weights ``(len(ASPECTS),)``, genres the hint names ``(g,)`` bool, noise stream key) of a hint."""
    weights, words = hint_weights(hint, strength)
    named = np.array([g in words for g in genre_names], dtype=bool) if hint else np.zeros(len(genre_names), bool)
    return np.array([weights[a] for a in ASPECTS]), named, (text_hash(hint) if hint else 0)


class SimulatedLLM:
    """Deterministic attribute-based ranker that reads hints; see the module docstring.

    It scores whole batches of (session, hint) pairs as arrays: :meth:`target_ranks` fills a feedback
    table straight from a dataset's arrays, and :meth:`rank` answers the backend protocol with the
    same numbers. Its noise is a counter-based stream keyed by (seed, session, hint, candidate
    position), so a pair's ranking does not depend on what else is in the batch or in what order.

    Args:
        session_noise: standard deviation of the per-session score noise.
        hint_noise: standard deviation of the noise that also depends on the hint text.
        hint_strength: how much a hint that names one aspect adds to that aspect's weight.
        genre_bonus: score added to candidates of a genre the hint names.
        seed: changes every noise draw; part of ``name`` so that tables never mix seeds.
        preference_fidelity: the preference writer's chance that a faithful text also names the session's
            latent preference where the dataset knows it (the synthetic world); see
            :mod:`rec_gym.llm.simulated_preferences`. Part of ``name`` only when not the default, so the
            rankings' names (and feedback tables) stay as they were.

    Attributes:
        cheap_and_deterministic: ``True``: recomputing an answer costs less than storing it, so
            ``rec-gym precompute`` writes no per-request response cache for it (the table is the record).
    """

    cheap_and_deterministic = True
    VERSION = "simulated-v2"

    def __init__(self, session_noise: float = 0.35, hint_noise: float = 0.08, hint_strength: float = 3.0,
                 genre_bonus: float = 0.8, seed: int = 0, preference_fidelity: float = DEFAULT_PREFERENCE_FIDELITY) -> None:
        self.session_noise = float(session_noise)
        self.hint_noise = float(hint_noise)
        self.hint_strength = float(hint_strength)
        self.genre_bonus = float(genre_bonus)
        self.seed = int(seed)
        self.name = (f"{self.VERSION}(session_noise={self.session_noise},hint_noise={self.hint_noise},"
                     f"hint_strength={self.hint_strength},genre_bonus={self.genre_bonus},seed={self.seed})")
        if not 0.0 <= float(preference_fidelity) <= 1.0:
            raise ValueError(f"preference_fidelity must be in [0, 1], got {preference_fidelity}")
        self.preference_fidelity = float(preference_fidelity)
        if self.preference_fidelity != DEFAULT_PREFERENCE_FIDELITY:
            self.name = f"{self.name[:-1]},preference_fidelity={self.preference_fidelity})"
        self._catalog_arrays: tuple[object, ItemArrays] | None = None

    def __getstate__(self) -> dict[str, object]:
        # The arrays of the last catalog are a cache, rebuilt on first use.
        return {**self.__dict__, "_catalog_arrays": None}

    def _scores(self, arrays: ItemArrays, hist: np.ndarray, cand: np.ndarray, hints: Sequence[str | None]) -> np.ndarray:
        """float64 ``(b, c, len(hints))``: every candidate's score under every hint; -inf for padded candidates."""
        feats = batch_features(arrays, hist, cand)  # (b, c, a)
        keys = session_keys(arrays.hashes, hist, cand, self.seed)
        terms = [_hint_terms(h, self.hint_strength, arrays.genre_names) for h in hints]
        weights = np.stack([t[0] for t in terms], axis=1)  # (a, k)
        streams = np.array([t[2] for t in terms], dtype=np.uint64)
        n = cand.shape[1]
        score = feats @ weights  # (b, c, k)
        score += self.session_noise * _normals(_mix(keys ^ _SESSION_STREAM), n)[:, :, None]
        # Every prompt draws its own noise; the prompt without a hint (stream 0) gets none.
        noise = _normals(_mix(keys[:, None] ^ streams[None, :]), n)  # (b, k, c)
        score += np.swapaxes(noise, 1, 2) * (self.hint_noise * (streams != 0))
        named = np.stack([t[1] for t in terms], axis=1)  # (g, k)
        if named.any():
            c_genres = arrays.has_genre[np.maximum(cand, 0)]  # (b, c, g)
            score += self.genre_bonus * ((c_genres @ named) > 0)
        score[cand < 0] = -np.inf
        return score

    def _target_ranks(self, score: np.ndarray, tpos: np.ndarray) -> np.ndarray:
        """int16 ``(b, k)``: 1-based rank of the candidate at ``tpos`` in each ``score[:, :, k]`` (ties: prompt order)."""
        target = np.take_along_axis(score, tpos[:, None, None], axis=1)  # (b, 1, k)
        before = (np.arange(score.shape[1])[None, :] < tpos[:, None])[:, :, None]
        return (1 + np.count_nonzero((score > target) | ((score == target) & before), axis=1)).astype(np.int16)

    def _arrays_of(self, catalog: object) -> ItemArrays:
        if self._catalog_arrays is None or self._catalog_arrays[0] is not catalog:
            self._catalog_arrays = (catalog, ItemArrays(catalog.items))  # type: ignore[attr-defined]
        return self._catalog_arrays[1]

    def target_ranks(self, dataset: "SessionDataset", rows: np.ndarray, hints: Sequence[str | None],
                     chunk: int = 256) -> np.ndarray:
        """int16 ``(len(rows), len(hints))``: the 1-based rank of each session's target under each hint.

        The same ranks :meth:`rank` gives for the same requests (ties broken by prompt order), computed
        from the dataset's arrays ``chunk`` sessions at a time.
        """
        arrays = self._arrays_of(dataset.catalog)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, len(hints)), dtype=np.int16)
        for start in range(0, rows.size, chunk):
            part = rows[start:start + chunk]
            score = self._scores(arrays, dataset.history[part], dataset.candidates[part], hints)
            out[start:start + chunk] = self._target_ranks(score, dataset.target_pos[part].astype(np.int64))
        return out

    def scores(self, request: RankRequest) -> np.ndarray:
        """float64 ``(len(request.candidates),)``: the score of each candidate, higher is better."""
        arrays = ItemArrays(list(request.history) + list(request.candidates))
        n = len(request.history)
        return self._scores(arrays, np.arange(n)[None, :], np.arange(n, n + len(request.candidates))[None, :],
                            [request.hint])[0, :, 0]

    def rank(self, requests: Sequence[RankRequest]) -> list[Ranking]:
        rankings: list[Ranking] = [None] * len(requests)
        sessions: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            sessions.setdefault((tuple(x.item_id for x in r.history), tuple(x.item_id for x in r.candidates)), []).append(i)
        for members in sessions.values():
            first = requests[members[0]]
            arrays = ItemArrays(list(first.history) + list(first.candidates))
            n = len(first.history)
            score = self._scores(arrays, np.arange(n)[None, :], np.arange(n, n + len(first.candidates))[None, :],
                                 [requests[i].hint for i in members])[0]
            for k, i in enumerate(members):
                rankings[i] = np.argsort(-score[:, k], kind="stable").tolist()
        return rankings

    def writer_version(self, purpose: str) -> str:
        """The ``VERSION`` of the module that writes for ``purpose`` ("" where it has none); it keys cached replies."""
        module = SIMULATED_WRITERS.get(purpose)
        return str(getattr(importlib.import_module(module), "VERSION", "")) if module else ""

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
