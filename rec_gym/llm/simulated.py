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

plus seeded noise (mean 0, variance 1 before scaling; the sum of four uniforms, close to Gaussian): a per-session part (``session_noise``, the model's fixed
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


def _normals(keys: np.ndarray) -> np.ndarray:
    """float64 draws of mean 0 and variance 1, one per uint64 key: the sum of the key hash's four 16-bit
    quarters, centred and scaled (an Irwin-Hall sum of four uniforms, close to a normal within +-3.46).

    A counter-based stream: the draw for a key depends on nothing else, so scores do not depend on
    how requests are batched or ordered.
    """
    bits = _mix(keys)
    quarter = np.uint64(0xFFFF)
    total = (bits & quarter) + ((bits >> np.uint64(16)) & quarter) + ((bits >> np.uint64(32)) & quarter) + (bits >> np.uint64(48))
    return (total.astype(np.float64) + 2.0) * (math.sqrt(3.0) / 65536.0) - 2.0 * math.sqrt(3.0)


class ItemArrays:
    """The attributes of a list of items as arrays, in list order (what the vectorised scorer reads).

    Attributes:
        genres: float64 ``(n, g)``: how often each genre of ``genre_names`` is listed for each item.
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
        self.genre_names = tuple(g.lower() for g in genre_ids)
        self.n_words = np.array([len(w) for w in words], dtype=np.int64)
        self.words = np.full((n, max(1, int(self.n_words.max(initial=0)))), -1, dtype=np.int64)
        for i, w in enumerate(words):
            self.words[i, :len(w)] = w
        self.n_word_ids = len(word_ids)


def _title_overlaps(arrays: ItemArrays, hist: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """int64 ``(b, c, h)``: title words candidate ``c`` shares with history item ``h`` (-1 entries share none).

    A join on (session, word) rather than a dense comparison, so the cost grows with the number of
    title words, not with their square.
    """
    b, c = cand.shape
    h = hist.shape[1]
    counts = np.zeros(b * c * h, dtype=np.int64)
    hw = np.where(hist[..., None] >= 0, arrays.words[np.maximum(hist, 0)], -1)  # (b, h, w)
    cw = np.where(cand[..., None] >= 0, arrays.words[np.maximum(cand, 0)], -1)  # (b, c, w)
    hs, hh, hwi = np.nonzero(hw >= 0)
    cs, cc, cwi = np.nonzero(cw >= 0)
    if hs.size == 0 or cs.size == 0:
        return counts.reshape(b, c, h)
    vocab = np.int64(arrays.n_word_ids + 1)
    h_keys = hs * vocab + hw[hs, hh, hwi]
    order = np.argsort(h_keys, kind="stable")
    h_keys, h_item = h_keys[order], hh[order]
    c_keys = cs * vocab + cw[cs, cc, cwi]
    lo = np.searchsorted(h_keys, c_keys, side="left")
    hi = np.searchsorted(h_keys, c_keys, side="right")
    n_match = hi - lo
    if n_match.sum() == 0:
        return counts.reshape(b, c, h)
    entry = np.repeat(np.arange(c_keys.size), n_match)
    offsets = np.arange(entry.size) - np.repeat(np.cumsum(n_match) - n_match, n_match)
    matched_h = h_item[lo[entry] + offsets]
    flat = (cs[entry] * c + cc[entry]) * h + matched_h
    return np.bincount(flat, minlength=b * c * h).reshape(b, c, h)


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
    feats = np.zeros((b, c, len(ASPECTS)))
    h_ok, c_ok = hist >= 0, cand >= 0
    hi, ci = np.maximum(hist, 0), np.maximum(cand, 0)
    n_hist = h_ok.sum(axis=1)
    per_item = 1.0 / np.maximum(n_hist, 1)[:, None]

    # genre: the summed history share of the candidate's genres
    c_genres = (arrays.genres[ci] > 0) & c_ok[..., None]  # (b, c, g)
    genre_share = np.einsum("bhg,bh->bg", arrays.genres[hi], h_ok * per_item)
    feats[..., 0] = np.minimum(1.0, np.einsum("bcg,bg->bc", c_genres.astype(np.float64), genre_share))

    # last_item: mean of the comparable parts (genres, creator, year, title words) with the newest item
    has_last = n_hist > 0
    last = hi[np.arange(b), np.maximum(n_hist - 1, 0)]
    l_genres = arrays.genres[last] > 0  # (b, g)
    inter = np.einsum("bcg,bg->bc", c_genres.astype(np.float64), l_genres.astype(np.float64))
    union = c_genres.sum(axis=2) + l_genres.sum(axis=1)[:, None] - inter
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
    overlaps = _title_overlaps(arrays, hist, cand)  # (b, c, h)
    c_words = np.where(c_ok, arrays.n_words[ci], 0)
    h_words = np.where(h_ok, arrays.n_words[hi], 0)
    jaccard = overlaps / np.maximum(c_words[..., None] + h_words[:, None, :] - overlaps, 1)
    l_words = arrays.n_words[last][:, None]
    both_words = (c_words > 0) & (l_words > 0)
    parts_sum += np.where(both_words, jaccard[np.arange(b), :, np.maximum(n_hist - 1, 0)], 0.0)
    parts_n += both_words
    feats[..., 1] = np.where(has_last[:, None] & (parts_n > 0), parts_sum / np.maximum(parts_n, 1), 0.0)

    # era and newer: history share released within 5 years; release year scaled to [0, 1]
    h_year = np.where(h_ok, arrays.year[hi], np.nan)
    known = ~np.isnan(h_year)
    close = (np.abs(c_year[..., None] - h_year[:, None, :]) <= 5) & known[:, None, :]
    n_years = known.sum(axis=1)[:, None]
    has_year = ~np.isnan(c_year) & c_ok
    feats[..., 2] = np.where(has_year & (n_years > 0), close.sum(axis=2) / np.maximum(n_years, 1), 0.0)
    feats[..., 3] = np.where(has_year, np.clip((np.nan_to_num(c_year) - 1950) / 70.0, 0.0, 1.0), 0.0)

    feats[..., 4] = np.where(c_ok, arrays.popularity[ci], 0.0)

    # creator: history share of the candidate's creator
    h_creator = np.where(h_ok, arrays.creator[hi], -1)
    same = (c_creator[..., None] == h_creator[:, None, :]) & (c_creator >= 0)[..., None]
    feats[..., 5] = np.where(c_ok, np.minimum(1.0, same.sum(axis=2) * per_item), 0.0)

    # franchise: the best title-word overlap with any history title
    franchise = np.where((h_words > 0)[:, None, :], jaccard, 0.0).max(axis=2, initial=0.0)
    feats[..., 6] = np.where(c_words > 0, franchise, 0.0)
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

    Attributes:
        cheap_and_deterministic: ``True``: recomputing an answer costs less than storing it, so
            ``rec-gym precompute`` writes no per-request response cache for it (the table is the record).
    """

    cheap_and_deterministic = True
    VERSION = "simulated-v2"

    def __init__(self, session_noise: float = 0.35, hint_noise: float = 0.08, hint_strength: float = 3.0,
                 genre_bonus: float = 0.8, seed: int = 0) -> None:
        self.session_noise = float(session_noise)
        self.hint_noise = float(hint_noise)
        self.hint_strength = float(hint_strength)
        self.genre_bonus = float(genre_bonus)
        self.seed = int(seed)
        self.name = (f"{self.VERSION}(session_noise={self.session_noise},hint_noise={self.hint_noise},"
                     f"hint_strength={self.hint_strength},genre_bonus={self.genre_bonus},seed={self.seed})")
        self._catalog_arrays: tuple[object, ItemArrays] | None = None

    def _scores(self, arrays: ItemArrays, hist: np.ndarray, cand: np.ndarray, hints: Sequence[str | None]) -> np.ndarray:
        """float64 ``(b, len(hints), c)``: every candidate's score under every hint; -inf for padded candidates."""
        feats = batch_features(arrays, hist, cand)  # (b, c, a)
        keys = session_keys(arrays.hashes, hist, cand, self.seed)
        positions = np.arange(cand.shape[1], dtype=np.uint64)
        with np.errstate(over="ignore"):
            base_keys = _mix(keys[:, None] ^ _SESSION_STREAM) + positions * _GOLDEN
        noise = self.session_noise * _normals(base_keys)  # (b, c)
        terms = [_hint_terms(h, self.hint_strength, arrays.genre_names) for h in hints]
        weights = np.stack([t[0] for t in terms], axis=1)  # (a, k)
        score = np.einsum("bca,ak->bkc", feats, weights) + noise[:, None, :]
        named = np.stack([t[1] for t in terms], axis=0).astype(np.float64)  # (k, g)
        if named.any():
            c_genres = (arrays.genres[np.maximum(cand, 0)] > 0).astype(np.float64)  # (b, c, g)
            score += self.genre_bonus * (np.einsum("bcg,kg->bkc", c_genres, named) > 0)
        for k, (_, _, stream) in enumerate(terms):
            if stream:
                with np.errstate(over="ignore"):
                    hint_keys = _mix(keys[:, None] ^ np.uint64(stream)) + positions * _GOLDEN
                score[:, k, :] += self.hint_noise * _normals(hint_keys)
        return np.where((cand >= 0)[:, None, :], score, -np.inf)

    def _arrays_of(self, catalog: object) -> ItemArrays:
        if self._catalog_arrays is None or self._catalog_arrays[0] is not catalog:
            self._catalog_arrays = (catalog, ItemArrays(catalog.items))  # type: ignore[attr-defined]
        return self._catalog_arrays[1]

    def target_ranks(self, dataset: "SessionDataset", rows: np.ndarray, hints: Sequence[str | None],
                     chunk: int = 2048) -> np.ndarray:
        """int16 ``(len(rows), len(hints))``: the 1-based rank of each session's target under each hint.

        The same ranks :meth:`rank` gives for the same requests (ties broken by prompt order), computed
        from the dataset's arrays ``chunk`` sessions at a time.
        """
        arrays = self._arrays_of(dataset.catalog)
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((rows.size, len(hints)), dtype=np.int16)
        for start in range(0, rows.size, chunk):
            part = rows[start:start + chunk]
            cand = dataset.candidates[part]
            score = self._scores(arrays, dataset.history[part], cand, hints)
            tpos = dataset.target_pos[part].astype(np.int64)
            target = np.take_along_axis(score, tpos[:, None, None], axis=2)
            before = np.arange(cand.shape[1])[None, None, :] < tpos[:, None, None]
            out[start:start + chunk] = 1 + np.sum((score > target) | ((score == target) & before), axis=2)
        return out

    def scores(self, request: RankRequest) -> np.ndarray:
        """float64 ``(len(request.candidates),)``: the score of each candidate, higher is better."""
        arrays = ItemArrays(list(request.history) + list(request.candidates))
        n = len(request.history)
        return self._scores(arrays, np.arange(n)[None, :], np.arange(n, n + len(request.candidates))[None, :],
                            [request.hint])[0, 0]

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
                rankings[i] = np.argsort(-score[k], kind="stable").tolist()
        return rankings

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
