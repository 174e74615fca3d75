"""Session profiles: a few statistics of a session's history that say which aspect it is about.

A hint helps when it names what drives the session: one genre, one decade, one creator, obscure or
popular items, a franchise, or the most recent item. The mean item embedding shows *which* genre
or decade a history holds but only weakly *how concentrated* it is; the profile states that
directly. Each feature is in [0, 1] and computed from the history alone (never the target):

=======================  =====================================================================
feature                  value
=======================  =====================================================================
genre_top_share          largest share of the genre-tagged items that carry one genre
genre_last_share         share of the earlier items sharing a genre with the last item
era_top_share            largest share of the dated items released in one decade
year_last_share          share of the earlier dated items released within 5 years of the last
creator_top_share        largest share of the items with a creator that have the same one
creator_last_share       share of the earlier items by the last item's creator
popularity_mean          mean popularity (``Item.popularity``)
popularity_low_share     share of items below the catalog's median popularity
popularity_top_share     share of items in the catalog's most popular tenth
title_top_overlap        largest title-word overlap (Jaccard) of two items
title_linked_share       share of items that share a title word with another item
title_last_overlap       largest title-word overlap of the last item with an earlier one
year_mean                mean release year, 0 = the catalog's oldest, 1 = its newest
year_spread              standard deviation of the release years / 20, at most 1
length                   number of history items / 20, at most 1
=======================  =====================================================================

A feature whose attribute the dataset lacks (Steam games have no genres or years) is 0 for every
session. Profiles are cached under ``$REC_GYM_CACHE/observations``.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rec_gym.data.types import Catalog, SessionDataset, title_words
from rec_gym.storage import atomic_path, cache_dir, stable_hash

PROFILE_FEATURES = ("genre_top_share", "genre_last_share", "era_top_share", "year_last_share", "creator_top_share",
                    "creator_last_share", "popularity_mean", "popularity_low_share", "popularity_top_share",
                    "title_top_overlap", "title_linked_share", "title_last_overlap", "year_mean", "year_spread",
                    "length")
# Bump when a feature's definition changes, so cached profiles are recomputed.
PROFILE_VERSION = 1
_FULL_LENGTH = 20


def _codes(values: list) -> np.ndarray:
    """int64 codes of hashable values, -1 for ``None``."""
    index: dict = {}
    return np.array([-1 if v is None else index.setdefault(v, len(index)) for v in values], dtype=np.int64)


def _share(hits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per row: ``hits`` among ``valid`` entries over the count of ``valid`` ones, 0 where none is valid."""
    count = valid.sum(axis=1)
    return np.where(count > 0, (hits & valid).sum(axis=1) / np.maximum(count, 1), 0.0)


def _top_share(codes: np.ndarray) -> np.ndarray:
    """Per row of ``codes`` (-1 = missing): the count of the commonest code over the count of present ones."""
    valid = codes >= 0
    same = (codes[:, :, None] == codes[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    count = valid.sum(axis=1)
    return np.where(count > 0, same.sum(axis=2).max(axis=1) / np.maximum(count, 1), 0.0)


class _CatalogArrays:
    """The item attributes the profile reads, as arrays over the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        items = catalog.items
        genres = sorted({g for item in items for g in item.genres})
        column = {g: k for k, g in enumerate(genres)}
        self.genres = np.zeros((len(items), max(len(genres), 1)), dtype=bool)
        for i, item in enumerate(items):
            self.genres[i, [column[g] for g in item.genres]] = True
        self.has_genres = self.genres.any(axis=1)
        years = [item.year for item in items]
        self.year = np.array([np.nan if y is None else float(y) for y in years])
        self.decade = np.array([-1 if y is None else y // 10 for y in years], dtype=np.int64)
        self.creator = _codes([item.creator or None for item in items])
        self.popularity = np.array([item.popularity for item in items])
        self.low = self.popularity < np.median(self.popularity)
        self.top = self.popularity >= np.quantile(self.popularity, 0.9)
        dated = self.year[~np.isnan(self.year)]
        self.year_range = (float(dated.min()), float(dated.max())) if dated.size else (0.0, 0.0)
        self.words = [title_words(item.title) for item in items]


def _title_features(rows: np.ndarray, words: list[frozenset[str]]) -> np.ndarray:
    """(n, 3): title_top_overlap, title_linked_share, title_last_overlap of each history row."""
    out = np.zeros((len(rows), 3))
    for r, row in enumerate(rows):
        titles = [words[i] for i in row[row >= 0]]
        n = len(titles)
        best = np.zeros(n)
        for a in range(n):
            for b in range(a + 1, n):
                if titles[a] and titles[b]:
                    overlap = len(titles[a] & titles[b])
                    if overlap:
                        jaccard = overlap / len(titles[a] | titles[b])
                        best[a], best[b] = max(best[a], jaccard), max(best[b], jaccard)
        if n:
            out[r] = best.max(), (best > 0).mean(), best[-1]
    return out


def _profile_block(history: np.ndarray, arrays: _CatalogArrays) -> np.ndarray:
    n_rows, width = history.shape
    present = history >= 0
    items = np.where(present, history, 0)
    length = present.sum(axis=1)
    last_pos = np.maximum(length - 1, 0)
    last = items[np.arange(n_rows), last_pos]
    earlier = present & (np.arange(width)[None, :] < last_pos[:, None])
    out = np.zeros((n_rows, len(PROFILE_FEATURES)))

    genres = arrays.genres[items] & present[:, :, None]
    tagged = arrays.has_genres[items] & present
    n_tagged = np.maximum(tagged.sum(axis=1), 1)
    out[:, 0] = np.where(tagged.any(axis=1), genres.sum(axis=1).max(axis=1) / n_tagged, 0.0)
    shares_genre = (genres & arrays.genres[last][:, None, :]).any(axis=2)
    out[:, 1] = _share(shares_genre, earlier & tagged & arrays.has_genres[last][:, None])

    year = np.where(present, arrays.year[items], np.nan)
    dated = ~np.isnan(year)
    out[:, 2] = _top_share(np.where(dated, arrays.decade[items], -1))
    close = np.abs(year - arrays.year[last][:, None]) <= 5
    out[:, 3] = _share(close, earlier & dated & ~np.isnan(arrays.year[last])[:, None])

    creator = np.where(present, arrays.creator[items], -1)
    out[:, 4] = _top_share(creator)
    out[:, 5] = _share(creator == arrays.creator[last][:, None], earlier & (creator >= 0) & (arrays.creator[last] >= 0)[:, None])

    popularity = np.where(present, arrays.popularity[items], 0.0)
    out[:, 6] = popularity.sum(axis=1) / np.maximum(length, 1)
    out[:, 7] = _share(arrays.low[items], present)
    out[:, 8] = _share(arrays.top[items], present)

    out[:, 9:12] = _title_features(history, arrays.words)

    low, high = arrays.year_range
    with np.errstate(invalid="ignore"):
        mean_year = np.nanmean(np.where(dated, year, np.nan), axis=1) if dated.any() else np.full(n_rows, np.nan)
        spread = np.nanstd(np.where(dated, year, np.nan), axis=1) if dated.any() else np.full(n_rows, np.nan)
    out[:, 12] = np.nan_to_num((mean_year - low) / (high - low) if high > low else np.zeros(n_rows), nan=0.0)
    out[:, 13] = np.minimum(np.nan_to_num(spread, nan=0.0) / 20.0, 1.0)
    out[:, 14] = np.minimum(length / _FULL_LENGTH, 1.0)
    return out


def session_profiles(dataset: SessionDataset, use_cache: bool = True, block: int = 2048) -> np.ndarray:
    """float32 ``(len(dataset), len(PROFILE_FEATURES))``: the profile of every session, cached on disk."""
    catalog_digest = stable_hash([(item.title, dict(item.attributes)) for item in dataset.catalog.items])
    history_digest = hashlib.sha256(np.ascontiguousarray(dataset.history, dtype=np.int32).tobytes()).hexdigest()
    key = stable_hash(PROFILE_VERSION, catalog_digest, history_digest)
    path = cache_dir("observations") / f"profile-v{PROFILE_VERSION}-{key}.npy"
    if use_cache and path.exists():
        return np.load(path, allow_pickle=False)
    arrays = _CatalogArrays(dataset.catalog)
    profiles = np.concatenate([_profile_block(dataset.history[start:start + block], arrays)
                               for start in range(0, len(dataset), block)] or [np.zeros((0, len(PROFILE_FEATURES)))])
    profiles = np.clip(profiles, 0.0, 1.0).astype(np.float32)
    if use_cache:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, profiles, allow_pickle=False)
    return profiles
