"""Sessions by calendar day, candidate draws, splits, n_train, popularity and fingerprints."""

from __future__ import annotations

import numpy as np
import pytest

from rec_gym.data.sessions import RawSession, assemble, draw_candidates, session_rng, sessionize_by_day
from rec_gym.data.types import Catalog, Item

DAY = 86_400
T0 = 978_307_200  # 2001-01-01 00:00:00 UTC


def make_catalog(n: int, **attributes) -> Catalog:
    return Catalog([Item(str(i), f"Film {i}", dict(attributes)) for i in range(n)])


def make_sessions(n_sessions: int, n_items: int = 200, length: int = 6, seed: int = 0) -> list[RawSession]:
    rng = np.random.default_rng(seed)
    sessions = []
    for s in range(n_sessions):
        items = rng.choice(n_items, size=length, replace=False).tolist()
        sessions.append(RawSession(f"s{s}", tuple(items[:-1]), items[-1]))
    return sessions


# --- sessionize_by_day -------------------------------------------------------------------------

def test_a_day_with_four_items_is_one_session_with_the_last_item_as_target():
    user = np.array([1, 1, 1, 1])
    item = np.array([10, 11, 12, 13])
    stamp = np.array([T0 + 30, T0 + 10, T0 + 20, T0 + 40])  # out of order on purpose
    (session,) = sessionize_by_day(user, item, stamp)
    assert session.history == (11, 12, 10)
    assert session.target == 13
    assert session.session_id == "1:2001-01-01"


def test_the_utc_day_boundary_splits_a_run_of_interactions():
    # Six interactions one minute apart around midnight UTC: 3 before, 3 after.
    stamp = T0 + DAY - 180 + 60 * np.arange(6)
    user = np.ones(6, dtype=np.int64)
    assert sessionize_by_day(user, np.arange(6), stamp, min_length=4) == []
    sessions = sessionize_by_day(user, np.arange(6), stamp, min_length=3)
    assert [s.session_id for s in sessions] == ["1:2001-01-01", "1:2001-01-02"]
    assert [(s.history, s.target) for s in sessions] == [((0, 1), 2), ((3, 4), 5)]


def test_days_with_fewer_than_four_items_and_other_users_are_separate():
    # user 1: 5 items on day 0, 3 on day 1; user 2: 4 on day 0, interleaved with user 1.
    user = np.array([1, 2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1])
    day = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    stamp = T0 + day * DAY + np.arange(12) * 60
    sessions = sessionize_by_day(user, np.arange(12), stamp)
    assert [(s.session_id, s.history, s.target) for s in sessions] == [
        ("1:2001-01-01", (0, 2, 4, 6), 8),
        ("2:2001-01-01", (1, 3, 5), 7),
    ]


def test_equal_timestamps_keep_their_input_order():
    sessions = sessionize_by_day(np.ones(5, int), np.array([4, 3, 2, 1, 0]), np.full(5, T0))
    assert sessions[0].history == (4, 3, 2, 1) and sessions[0].target == 0


def test_max_history_in_sessionize_keeps_the_most_recent_items():
    (session,) = sessionize_by_day(np.ones(30, int), np.arange(30), T0 + np.arange(30), max_history=5)
    assert session.history == (24, 25, 26, 27, 28) and session.target == 29


# --- draw_candidates ---------------------------------------------------------------------------

def test_candidates_are_the_target_and_49_distinct_negatives_outside_the_history():
    history = list(range(0, 40, 2))
    candidates = draw_candidates(7, history, 120, 50, np.random.default_rng(0))
    assert candidates.shape == (50,) and candidates.dtype == np.int32
    assert len(set(candidates.tolist())) == 50
    assert (candidates == 7).sum() == 1
    assert not set(candidates.tolist()) & set(history)
    assert candidates.min() >= 0 and candidates.max() < 120


def test_candidates_take_all_of_a_pool_that_is_just_large_enough():
    # 10 items, 3 in the session: exactly 7 negatives are left (the dense path).
    candidates = draw_candidates(9, [0, 1], 10, 8, np.random.default_rng(1))
    assert sorted(candidates.tolist()) == [2, 3, 4, 5, 6, 7, 8, 9]


def test_too_small_a_catalog_for_n_candidates_is_an_error():
    with pytest.raises(ValueError, match="n_candidates <= 8"):
        draw_candidates(9, [0, 1], 10, 9, np.random.default_rng(0))


def test_the_target_position_and_negatives_are_uniform():
    rng = np.random.default_rng(0)
    positions = np.zeros(5, int)
    counts = np.zeros(40, int)
    for _ in range(4000):
        candidates = draw_candidates(0, [1], 40, 5, rng)
        positions[np.flatnonzero(candidates == 0)[0]] += 1
        counts[candidates] += 1
    assert positions.min() > 700  # 800 expected per slot
    assert counts[1] == 0 and counts[2:].min() > 300  # 421 expected per negative


def test_session_rng_depends_only_on_seed_and_session_id():
    a = session_rng(0, "u1:2001-01-01").integers(1 << 30, size=4)
    assert (a == session_rng(0, "u1:2001-01-01").integers(1 << 30, size=4)).all()
    assert (a != session_rng(1, "u1:2001-01-01").integers(1 << 30, size=4)).any()
    assert (a != session_rng(0, "u1:2001-01-02").integers(1 << 30, size=4)).any()


# --- assemble ----------------------------------------------------------------------------------

def test_assemble_packs_arrays_with_the_documented_shapes():
    sessions = make_sessions(50) + [RawSession("long", tuple(range(30)), 99)]
    dataset = assemble("toy", make_catalog(200), sessions, n_candidates=20, max_history=8)
    assert dataset.history.shape == (51, 8) and dataset.history.dtype == np.int32
    assert dataset.candidates.shape == (51, 20)
    row = int(np.flatnonzero(dataset.session_ids == "long")[0])
    assert dataset.history_of(row).tolist() == list(range(22, 30))
    assert dataset.history[0, 5:].tolist() == [-1, -1, -1]
    assert (dataset.candidates[np.arange(51), dataset.target_pos] == dataset.target).all()


def test_same_seed_same_candidates_and_other_seed_other_candidates():
    catalog, sessions = make_catalog(300), make_sessions(40, n_items=300)
    a = assemble("toy", catalog, sessions, seed=3)
    b = assemble("toy", catalog, sessions, seed=3)
    c = assemble("toy", catalog, sessions, seed=4)
    assert (a.candidates == b.candidates).all() and a.fingerprint == b.fingerprint
    assert (a.candidates != c.candidates).any() and a.fingerprint != c.fingerprint


def test_a_sessions_candidates_do_not_depend_on_n_train_or_other_sessions():
    catalog, sessions = make_catalog(300), make_sessions(60, n_items=300)
    full = assemble("toy", catalog, sessions)
    few = assemble("toy", catalog, sessions, n_train=10)
    alone = assemble("toy", catalog, sessions[7:8], split_ratios=(0.0, 0.0, 1.0))
    full_by_id = dict(zip(full.session_ids.tolist(), full.candidates.tolist()))
    for sid, candidates in zip(few.session_ids.tolist(), few.candidates.tolist()):
        assert full_by_id[sid] == candidates
    assert alone.candidates[0].tolist() == full_by_id["s7"]


def test_split_ratios_are_applied_to_sessions_without_a_split():
    dataset = assemble("toy", make_catalog(200), make_sessions(100))
    assert [(dataset.split == s).sum() for s in ("train", "val", "test")] == [80, 10, 10]
    again = assemble("toy", make_catalog(200), make_sessions(100))
    assert (dataset.split == again.split).all()
    other = assemble("toy", make_catalog(200), make_sessions(100), seed=1)
    assert (dataset.split != other.split).any()


def test_sessions_with_a_split_keep_it():
    sessions = [RawSession(s.session_id, s.history, s.target, split="test") for s in make_sessions(20)]
    dataset = assemble("toy", make_catalog(200), sessions)
    assert set(dataset.split.tolist()) == {"test"}


def test_n_train_keeps_that_many_train_sessions_and_every_other_session():
    dataset = assemble("toy", make_catalog(200), make_sessions(100), n_train=25)
    assert [(dataset.split == s).sum() for s in ("train", "val", "test")] == [25, 10, 10]
    again = assemble("toy", make_catalog(200), make_sessions(100), n_train=25)
    assert (dataset.session_ids == again.session_ids).all()
    with pytest.raises(ValueError, match="n_train=81 but dataset 'toy' has 80 train sessions"):
        assemble("toy", make_catalog(200), make_sessions(100), n_train=81)


def test_given_candidates_are_used_exactly():
    given = (5, 9, 1, 7)
    sessions = [RawSession("a", (2, 3), 9, candidates=given)]
    dataset = assemble("toy", make_catalog(10), sessions, n_candidates=4)
    assert dataset.candidates[0].tolist() == list(given) and dataset.target_pos[0] == 1


@pytest.mark.parametrize("candidates, message", [
    ((5, 6, 1, 7), "do not contain the target"),
    ((5, 9, 1, 12), "candidate index 12 is outside the catalog"),
])
def test_bad_given_candidates_name_the_session(candidates, message):
    sessions = [RawSession("ok", (1, 2), 3), RawSession("bad-one", (2, 3), 9, candidates=candidates)]
    with pytest.raises(ValueError, match=f"session 'bad-one'.*{message}"):
        assemble("toy", make_catalog(10), sessions, n_candidates=4)


def test_repeated_given_candidates_are_dropped_keeping_the_first_with_one_warning():
    sessions = [RawSession("a", (1, 2), 9, candidates=(5, 9, 5, 7, 9)), RawSession("b", (2, 3), 4, candidates=(4, 4, 8)),
                RawSession("c", (2, 3), 6, candidates=(6, 0, 1))]
    with pytest.warns(UserWarning, match=r"dataset 'toy': dropped 3 repeated candidate\(s\) in 2 session\(s\)") as caught:
        dataset = assemble("toy", make_catalog(10), sessions, n_candidates=4)
    assert len(caught) == 1
    assert dataset.candidates.tolist() == [[5, 9, 7], [4, 8, -1], [6, 0, 1]]
    assert dataset.candidate_counts.tolist() == [3, 2, 3] and dataset.target_pos.tolist() == [1, 0, 0]
    assert dataset.candidates_of(1).tolist() == [4, 8]


def test_given_candidate_sets_of_different_sizes_are_padded_to_the_largest():
    sessions = [RawSession("a", (1, 2), 9, candidates=(5, 9, 1)), RawSession("b", (2, 3), 4),
                RawSession("c", (2, 3), 6, candidates=(0, 1, 2, 3, 6, 7))]
    dataset = assemble("toy", make_catalog(10), sessions, n_candidates=4)
    assert dataset.candidates.shape == (3, 6) and dataset.candidate_counts.tolist() == [3, 4, 6]
    assert dataset.candidates[0].tolist() == [5, 9, 1, -1, -1, -1] and (dataset.candidates[1, 4:] == -1).all()
    history, candidates = dataset.session_items(0)
    assert [item.item_id for item in candidates] == ["5", "9", "1"]
    assert dataset.subset([1, 0]).candidate_counts.tolist() == [4, 3]


def test_n_candidates_beyond_the_catalog_is_no_error_when_every_session_has_its_candidates():
    dataset = assemble("toy", make_catalog(10), [RawSession("x", (1,), 2, candidates=(2, 3))])
    assert dataset.candidates.tolist() == [[2, 3]]


def test_out_of_catalog_indices_duplicate_ids_and_a_small_catalog_are_errors():
    with pytest.raises(ValueError, match="session 'x': item index 10 is outside"):
        assemble("toy", make_catalog(10), [RawSession("x", (1, 10), 2)], n_candidates=3)
    with pytest.raises(ValueError, match="session id 'x' occurs more than once"):
        assemble("toy", make_catalog(10), [RawSession("x", (1,), 2), RawSession("x", (3,), 4)], n_candidates=3)
    with pytest.raises(ValueError, match="n_candidates=50 exceeds the catalog"):
        assemble("toy", make_catalog(10), [RawSession("x", (1,), 2)])


def test_popularity_is_log_count_over_log_max_count():
    sessions = [RawSession("a", (0, 1, 1), 2), RawSession("b", (0, 1), 3)]
    dataset = assemble("toy", make_catalog(6), sessions, n_candidates=2)
    # counts: item0 2, item1 3, item2 1, item3 1, items 4-5 0
    expected = np.log1p([2, 3, 1, 1, 0, 0]) / np.log1p(3)
    assert np.allclose([item.popularity for item in dataset.catalog.items], expected, atol=1e-6)
    assert dataset.catalog[1].popularity == 1.0 and dataset.catalog[5].popularity == 0.0


def test_popularity_a_catalog_already_has_is_kept():
    catalog = make_catalog(6, popularity=0.25)
    dataset = assemble("toy", catalog, [RawSession("a", (0, 1, 1), 2)], n_candidates=2)
    assert dataset.catalog is catalog


def test_fingerprint_changes_with_max_history_and_n_candidates():
    catalog, sessions = make_catalog(200), [RawSession("a", tuple(range(30)), 40)] + make_sessions(9)
    base = assemble("toy", catalog, sessions).fingerprint
    assert assemble("toy", catalog, sessions, max_history=10).fingerprint != base
    assert assemble("toy", catalog, sessions, n_candidates=40).fingerprint != base
    assert assemble("other", catalog, sessions).fingerprint != base


def test_an_empty_history_is_kept_as_padding():
    dataset = assemble("toy", make_catalog(10), [RawSession("a", (), 3), RawSession("b", (1, 2), 4)],
                       n_candidates=5)
    assert dataset.history.tolist() == [[-1, -1], [1, 2]]
    assert 3 in dataset.candidates[0]


def test_popularity_counts_only_the_kept_history():
    # With max_history=1 only item 2 of "a"'s history is kept: counts item2 1+1, item3 1, item4 1.
    sessions = [RawSession("a", (0, 1, 2), 3), RawSession("b", (2,), 4)]
    dataset = assemble("toy", make_catalog(6), sessions, n_candidates=2, max_history=1)
    assert [item.popularity for item in dataset.catalog.items][:3] == [0.0, 0.0, 1.0]
