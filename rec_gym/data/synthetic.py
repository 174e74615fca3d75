"""A synthetic movie world in which the helpful hint depends on what the session shows.

Items have genres, a release year, a creator (director) and a popularity; some belong to a
franchise whose titles share words ("Silent Harbor", "Silent Harbor 2"). Every session is driven by
one latent preference, drawn uniformly from :data:`PREFERENCES`:

===========  ======================================================  ===============================
preference   what the history shows                                  where the target comes from
===========  ======================================================  ===============================
genre        most items share one genre                              that genre, any popularity
era          most items come from one decade                         that decade, any genre
creator      most items are by one director                          that director's other films
niche        obscure items                                           the obscure half of the catalog
franchise    several parts of one franchise                          its next part
last_item    a mixed history                                         films like the most recent one
popular      well-known items                                        the most popular tenth
===========  ======================================================  ===============================

The preference is never stored in the observation; it is visible only through the items. With the
simulated LLM, the hint that names the session's aspect usually lifts the target, and a hint for
another aspect usually does not, so a policy that reads the session can beat every fixed hint.
``generate_synthetic`` is deterministic given its seed and needs no files.
"""

from __future__ import annotations

import numpy as np

from rec_gym.data.sessions import RawSession
from rec_gym.data.types import Catalog, Item

PREFERENCES = ("genre", "era", "creator", "niche", "franchise", "last_item", "popular")
GENRES = ("Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western")
_ADJECTIVES = ("Silent", "Crimson", "Hidden", "Broken", "Golden", "Last", "Midnight", "Frozen", "Wild", "Distant",
               "Burning", "Hollow", "Iron", "Velvet", "Paper", "Electric", "Savage", "Quiet", "Lonely", "Endless",
               "Bitter", "Secret", "Fallen", "Restless", "Northern", "Glass", "Shadow", "Lucky", "Neon", "Sacred")
_NOUNS = ("Harbor", "Garden", "Frontier", "Empire", "Station", "Highway", "Kingdom", "Circus", "Orchard", "Signal",
          "Canyon", "Mirror", "Lighthouse", "Carnival", "Harvest", "Archive", "Voyage", "Tide", "Citadel", "Parade",
          "Summit", "Lantern", "Meadow", "Engine", "Crossing", "Island", "Dynasty", "Horizon", "Cathedral", "Outpost")
_FIRST = ("Ada", "Bruno", "Clara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kofi", "Lena",
          "Marco", "Nadia", "Oskar", "Priya", "Quentin", "Rosa", "Sven", "Tamar")
_LAST = ("Alder", "Brandt", "Castell", "Duval", "Eriksen", "Fontaine", "Garza", "Holm", "Ivers", "Janssen",
         "Kowal", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Romano", "Sato", "Tanaka")


def _build_catalog(rng: np.random.Generator, n_items: int, n_creators: int, n_franchises: int
                   ) -> tuple[Catalog, dict[str, np.ndarray]]:
    creators = [f"{_FIRST[i % len(_FIRST)]} {_LAST[(i * 7 + i // len(_FIRST)) % len(_LAST)]}" for i in range(n_creators)]
    creator_genres = [rng.choice(len(GENRES), size=2, replace=False) for _ in range(n_creators)]
    creator_start = rng.integers(1950, 2005, size=n_creators)

    titles = [f"{a} {n}" for a in _ADJECTIVES for n in _NOUNS]
    if n_items > len(titles):
        titles += [f"{a} {n} of the {m}" for a in _ADJECTIVES for n in _NOUNS for m in _NOUNS if m != n]
    if n_items > len(titles):
        raise ValueError(f"n_items={n_items} is more than the {len(titles)} distinct titles the generator can make")
    order = np.concatenate([rng.permutation(900), 900 + rng.permutation(len(titles) - 900)])
    franchise_len = rng.integers(3, 6, size=n_franchises)
    creator_of = np.empty(n_items, dtype=np.int64)
    year = np.empty(n_items, dtype=np.int64)
    franchise = np.full(n_items, -1, dtype=np.int64)
    genres: list[tuple[str, ...]] = []
    names: list[str] = []
    i = 0
    base_title = 0
    for f in range(n_franchises):
        c = int(rng.integers(n_creators))
        start = int(creator_start[c] + rng.integers(0, 10))
        g = tuple(GENRES[j] for j in creator_genres[c][: 1 + int(rng.integers(2))])
        base = titles[order[base_title]]
        base_title += 1
        for part in range(int(franchise_len[f])):
            creator_of[i], year[i], franchise[i] = c, start + 3 * part, f
            genres.append(g)
            names.append(base if part == 0 else f"{base} {part + 1}")
            i += 1
    while i < n_items:
        c = int(rng.integers(n_creators))
        creator_of[i] = c
        year[i] = min(2020, int(creator_start[c] + rng.integers(0, 18)))
        own = [GENRES[j] for j in creator_genres[c]]
        g = {own[int(rng.integers(2))]}
        if rng.random() < 0.5:
            g.add(GENRES[int(rng.integers(len(GENRES)))])
        genres.append(tuple(sorted(g)))
        names.append(titles[order[base_title]])
        base_title += 1
        i += 1

    # Popularity: a random order, spread evenly over [0, 1]; tier words make it visible in the item text.
    rank = rng.permutation(n_items)
    popularity = 1.0 - rank / (n_items - 1)
    tiers = np.where(rank < n_items * 0.1, "blockbuster", np.where(rank < n_items * 0.5, "popular", "obscure"))
    items = [
        Item(
            item_id=str(k),
            title=f"{names[k]} ({year[k]})",
            attributes={"year": int(year[k]), "genres": genres[k], "creator": creators[creator_of[k]],
                        "popularity": float(round(popularity[k], 4)), "era": f"{year[k] // 10 * 10}s",
                        "tier": str(tiers[k])},
        )
        for k in range(n_items)
    ]
    arrays = {"creator": creator_of, "year": year, "franchise": franchise, "popularity": popularity, "rank": rank,
              "genre_sets": np.array([[g in gs for g in GENRES] for gs in genres])}
    return Catalog(items, domain="movie"), arrays


def _pick(rng: np.random.Generator, pool: np.ndarray, k: int, exclude: "set[int] | list[int]") -> list[int]:
    if exclude:
        pool = pool[~np.isin(pool, np.fromiter(exclude, dtype=np.int64))]
    if pool.size == 0:
        return []
    return [int(x) for x in rng.choice(pool, size=min(k, pool.size), replace=False)]


class _Pools:
    """The item pools sessions draw from, computed once per catalog so a session costs the same at any size."""

    def __init__(self, a: dict[str, np.ndarray], n_items: int) -> None:
        self.everything = np.arange(n_items)
        self.genre = [np.flatnonzero(a["genre_sets"][:, g]) for g in range(len(GENRES))]
        decade = a["year"] // 10 * 10
        self.decades = np.unique(decade)
        self.decade = {int(d): np.flatnonzero(decade == d) for d in self.decades}
        creator_counts = np.bincount(a["creator"])
        self.prolific = np.flatnonzero(creator_counts >= 8)
        order = np.argsort(a["creator"], kind="stable")
        bounds = np.concatenate([[0], np.cumsum(creator_counts)])
        self.creator = [order[bounds[c]:bounds[c + 1]] for c in range(creator_counts.size)]
        self.niche, self.very_niche = np.flatnonzero(a["rank"] >= n_items * 0.5), np.flatnonzero(a["rank"] >= n_items * 0.85)
        self.popular, self.very_popular = np.flatnonzero(a["rank"] < n_items * 0.3), np.flatnonzero(a["rank"] < n_items * 0.1)
        n_franchises = int(a["franchise"].max()) + 1
        self.franchise = [np.flatnonzero(a["franchise"] == f) for f in range(n_franchises)]


def _session(rng: np.random.Generator, preference: str, a: dict[str, np.ndarray], pools: _Pools
             ) -> tuple[list[int], int] | None:
    length = int(rng.integers(5, 16))
    everything = pools.everything
    n_main = int(round(length * 0.75))
    if preference == "genre":
        g = int(rng.integers(len(GENRES)))
        pool = pools.genre[g]
        target_pool = pool
    elif preference == "era":
        decade = int(rng.choice(pools.decades))
        pool = pools.decade[decade]
        target_pool = pool
    elif preference == "creator":
        c = int(rng.choice(pools.prolific))
        pool = pools.creator[c]
        n_main = min(n_main, pool.size - 2)
        target_pool = pool
    elif preference == "niche":
        pool, target_pool = pools.niche, pools.very_niche
    elif preference == "popular":
        pool, target_pool = pools.popular, pools.very_popular
    elif preference == "franchise":
        f = int(rng.integers(len(pools.franchise)))
        parts = pools.franchise[f]
        part_set = set(parts.tolist())
        k = int(rng.integers(2, parts.size))
        history = _pick(rng, everything, length - k, part_set)
        history = history + [int(p) for p in parts[:k]]
        # The franchise parts sit among the rest of the history, in release order.
        rng.shuffle(history)
        seen = [h for h in history if h in part_set]
        history = [h for h in history if h not in part_set]
        positions = sorted(rng.choice(len(history) + 1, size=len(seen), replace=True).tolist())
        for offset, (pos, part) in enumerate(zip(positions, sorted(seen))):
            history.insert(pos + offset, part)
        return history, int(parts[k])
    else:  # last_item: a mixed history; the next item is like the most recent one
        history = _pick(rng, everything, length, set())
        last = history[-1]
        same_creator = pools.creator[int(a["creator"][last])]
        close = same_creator[np.abs(a["year"][same_creator] - a["year"][last]) <= 8]
        target = _pick(rng, close, 1, set(history))
        return (history, target[0]) if target else None
    history = _pick(rng, pool, n_main, set()) + _pick(rng, everything, length - n_main, set())
    history = [int(h) for h in rng.permutation(history)]
    target = _pick(rng, target_pool, 1, set(history))
    return (history, target[0]) if target else None


def latent_preference(session_id: str) -> str | None:
    """The latent preference of a synthetic session, from its id (``"creator-17"`` -> ``"creator"``), one of
    :data:`PREFERENCES`; ``None`` for an id this generator does not write.

    What a writer that knows the generator may name (see :mod:`rec_gym.llm.simulated_preferences`): the
    preference's kind comes from here, its value (which genre, decade, director, franchise) from the
    history, where most items show it.
    """
    kind, _, number = str(session_id).rpartition("-")
    return kind if kind in PREFERENCES and number.isdigit() else None


def generate_synthetic(seed: int = 0, n_sessions: int = 4000, n_items: int = 900, n_creators: int = 48,
                       n_franchises: int = 60) -> tuple[Catalog, list[RawSession]]:
    """A catalog of ``n_items`` movies and ``n_sessions`` sessions (``session_id`` = ``"<preference>-<k>"``).

    The preference of each session is kept in its id, so analyses can group by it; splits and
    candidates are left to :func:`rec_gym.data.sessions.assemble`. The cost is linear in
    ``n_sessions``: the item pools are computed once, and a session draws from them.
    """
    rng = np.random.default_rng(seed)
    catalog, arrays = _build_catalog(rng, n_items, n_creators, n_franchises)
    pools = _Pools(arrays, n_items)
    sessions: list[RawSession] = []
    k = 0
    while len(sessions) < n_sessions:
        preference = PREFERENCES[k % len(PREFERENCES)]
        drawn = _session(rng, preference, arrays, pools)
        k += 1
        if drawn is None or len(drawn[0]) < 3:
            continue
        history, target = drawn
        sessions.append(RawSession(session_id=f"{preference}-{k}", history=tuple(history), target=int(target)))
    return catalog, sessions
