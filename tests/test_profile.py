"""Session profiles: each feature's value on hand-made sessions, missing attributes, caching, and the env's use of them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rec_gym  # noqa: F401  (registers the ids)
from rec_gym.data import profile as profile_module
from rec_gym.data.profile import PROFILE_FEATURES, session_profiles
from rec_gym.data.types import Catalog, Item, SessionDataset
from rec_gym.envs import Re2LLMEnv


def _item(k: int, title: str, genres=(), year=None, creator=None, popularity=0.0) -> Item:
    attributes = {"genres": tuple(genres), "popularity": popularity}
    if year is not None:
        attributes["year"] = year
    if creator is not None:
        attributes["creator"] = creator
    return Item(str(k), title, attributes)


CATALOG = Catalog([
    _item(0, "Silent Harbor (1971)", ["Drama"], 1971, "Ada Alder", 0.9),
    _item(1, "Silent Harbor 2 (1974)", ["Drama", "War"], 1974, "Ada Alder", 0.8),
    _item(2, "Glass Garden (1985)", ["Comedy"], 1985, "Bruno Brandt", 0.1),
    _item(3, "Iron Canyon (1979)", ["Drama"], 1979, "Clara Castell", 0.2),
    _item(4, "Neon Tide (2001)", ["Sci-Fi"], 2001, "Bruno Brandt", 0.3),
    _item(5, "Paper Moon", popularity=0.5),  # no genres, year or creator
    _item(6, "Quiet Meadow (1960)", ["Western"], 1960, "Dmitri Duval", 0.0),
    _item(7, "Lucky Parade (2020)", ["Comedy"], 2020, "Bruno Brandt", 1.0),
])


def _dataset(histories: list[list[int]], catalog: Catalog = CATALOG, targets: list[int] | None = None) -> SessionDataset:
    width = max(len(h) for h in histories)
    history = np.full((len(histories), width), -1, dtype=np.int32)
    for row, h in enumerate(histories):
        history[row, :len(h)] = h
    target = np.array(targets or [6] * len(histories), dtype=np.int32)
    candidates = np.stack([target, (target + 1) % len(catalog)], axis=1).astype(np.int32)
    return SessionDataset("hand-made", catalog, history, target, candidates, np.array(["train"] * len(histories)),
                          np.array([f"s{k}" for k in range(len(histories))]), fingerprint="hand-made")


def _named(row: np.ndarray) -> dict[str, float]:
    return dict(zip(PROFILE_FEATURES, row.tolist()))


def test_every_feature_of_a_franchise_session_matches_its_definition():
    # Silent Harbor, Iron Canyon, Silent Harbor 2: all Drama, all 1970s, two by Ada Alder.
    p = _named(session_profiles(_dataset([[0, 3, 1]]), use_cache=False)[0])
    std = np.std([1971, 1979, 1974])
    expected = {"genre_top_share": 1.0, "genre_last_share": 1.0, "era_top_share": 1.0, "year_last_share": 1.0,
                "creator_top_share": 2 / 3, "creator_last_share": 1 / 2, "popularity_mean": (0.9 + 0.2 + 0.8) / 3,
                # catalog median popularity is 0.4 (only Iron Canyon is below); top tenth is >= 0.93 (Lucky Parade)
                "popularity_low_share": 1 / 3, "popularity_top_share": 0.0,
                "title_top_overlap": 1.0, "title_linked_share": 2 / 3, "title_last_overlap": 1.0,
                "year_mean": (np.mean([1971, 1979, 1974]) - 1960) / 60, "year_spread": std / 20, "length": 3 / 20}
    assert p == pytest.approx(expected, abs=1e-6)


def test_items_without_an_attribute_are_left_out_of_its_shares():
    # Paper Moon has no genre, year or creator; the other three are by Bruno Brandt, two comedies.
    p = _named(session_profiles(_dataset([[5, 2, 7, 4]]), use_cache=False)[0])
    expected = {"genre_top_share": 2 / 3, "genre_last_share": 0.0, "era_top_share": 1 / 3, "year_last_share": 0.0,
                "creator_top_share": 1.0, "creator_last_share": 1.0, "popularity_mean": (0.5 + 0.1 + 1.0 + 0.3) / 4,
                "popularity_low_share": 2 / 4, "popularity_top_share": 1 / 4,
                "title_top_overlap": 0.0, "title_linked_share": 0.0, "title_last_overlap": 0.0,
                "year_mean": (2002 - 1960) / 60, "year_spread": np.std([1985, 2020, 2001]) / 20, "length": 4 / 20}
    assert p == pytest.approx(expected, abs=1e-6)


def test_a_one_item_session_has_no_likeness_to_earlier_items():
    p = _named(session_profiles(_dataset([[6]]), use_cache=False)[0])
    assert p["genre_last_share"] == p["year_last_share"] == p["creator_last_share"] == p["title_last_overlap"] == 0.0
    assert p["genre_top_share"] == p["era_top_share"] == p["creator_top_share"] == p["popularity_low_share"] == 1.0
    assert p["year_mean"] == 0.0 and p["length"] == pytest.approx(0.05)


def test_a_catalog_of_titles_only_gives_zero_for_the_attributes_it_lacks():
    titles = Catalog([_item(k, t, popularity=k / 3) for k, t in enumerate(["Portal", "Portal 2", "Dota", "Terraria"])],
                     domain="game")
    p = _named(session_profiles(_dataset([[0, 2, 1]], titles, targets=[3]), use_cache=False)[0])
    for name in ("genre_top_share", "genre_last_share", "era_top_share", "year_last_share", "creator_top_share",
                 "creator_last_share", "year_mean", "year_spread"):
        assert p[name] == 0.0, name
    assert p["title_top_overlap"] == 1.0 and p["title_last_overlap"] == 1.0 and p["title_linked_share"] == pytest.approx(2 / 3)


def test_the_profile_reads_the_history_and_never_the_target():
    histories = [[0, 3, 1], [5, 2, 7, 4]]
    a = session_profiles(_dataset(histories, targets=[6, 6]), use_cache=False)
    b = session_profiles(_dataset(histories, targets=[2, 0]), use_cache=False)
    assert np.array_equal(a, b) and a.dtype == np.float32 and a.shape == (2, len(PROFILE_FEATURES))


def test_profiles_are_cached_and_recomputed_when_the_history_changes(monkeypatch):
    first = session_profiles(_dataset([[0, 3, 1]]))

    def refuse(*args, **kwargs):
        raise AssertionError("the cached profile should have been read")

    monkeypatch.setattr(profile_module, "_profile_block", refuse)
    assert np.array_equal(session_profiles(_dataset([[0, 3, 1]])), first)
    with pytest.raises(AssertionError, match="cached profile"):
        session_profiles(_dataset([[0, 3, 2]]))


def test_the_synthetic_id_observes_the_profile_and_passes_the_checks():
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    env = gym.make("Re2LLM-Synthetic-v0")
    space = env.observation_space
    assert space.shape == (len(PROFILE_FEATURES),) and np.all(space.low == 0.0) and np.all(space.high == 1.0)
    task = env.unwrapped.task
    obs, info = env.reset(seed=3)
    assert np.array_equal(obs, session_profiles(task.dataset)[task.rows[info["session_index"]]])
    check_env(env.unwrapped)
    sb3_check_env(env.unwrapped)


def test_embedding_plus_profile_concatenates_both_with_their_own_bounds():
    both = Re2LLMEnv(encoder="hashing", observation="embedding+profile")
    embedding = Re2LLMEnv(encoder="hashing", observation="embedding")
    profile = Re2LLMEnv(encoder="hashing", observation="profile")
    assert both.observation_space.shape == (256 + len(PROFILE_FEATURES),)
    assert np.all(both.observation_space.low[:256] == -1.0) and np.all(both.observation_space.low[256:] == 0.0)
    assert np.array_equal(both.task.observations, np.hstack([embedding.task.observations, profile.task.observations]))
    with pytest.raises(ValueError, match="observation='mean' is not one of"):
        Re2LLMEnv(encoder="hashing", observation="mean")
