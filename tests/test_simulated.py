"""The simulated LLM: deterministic, attribute-driven, and moved by the words of a hint."""

from __future__ import annotations

import numpy as np
import pytest

from rec_gym.data.types import Item
from rec_gym.knowledge import load_knowledge_base
from rec_gym.llm import make_llm
from rec_gym.llm.protocol import LLMBackend, RankRequest, target_rank
from rec_gym.llm.simulated import BASE_WEIGHTS, SimulatedLLM, hint_weights


def movie(i, genres=("Drama",), year=1990, popularity=0.5, creator=None, title=None):
    attributes = {"genres": genres, "year": year, "popularity": popularity}
    if creator:
        attributes["creator"] = creator
    return Item(str(i), title or f"Film {i} ({year})", attributes)


def request(hint=None):
    # Four horror films, then a comedy: the popular comedies look like a good next step.
    history = tuple(movie(i, genres=("Horror",) if i < 4 else ("Comedy",), popularity=0.1) for i in range(5))
    # Candidate 0 is an obscure horror film; the others are popular comedies.
    candidates = (movie(100, genres=("Horror",), popularity=0.05),) + tuple(
        movie(200 + k, genres=("Comedy",), popularity=1.0) for k in range(9))
    return RankRequest(history, candidates, hint)


def test_simulator_implements_the_backend_protocol_and_is_what_make_llm_returns():
    llm = make_llm("simulated")
    assert isinstance(llm, SimulatedLLM) and isinstance(llm, LLMBackend)
    assert "simulated" in llm.name


def test_rankings_are_deterministic_and_a_permutation_of_the_candidates():
    a = SimulatedLLM().rank([request(), request("Prefer niche films.")])
    b = SimulatedLLM().rank([request(), request("Prefer niche films.")])
    assert a == b
    assert sorted(a[0]) == list(range(10))


def test_a_genre_hint_lifts_the_candidate_of_the_history_genre():
    llm = SimulatedLLM(session_noise=0.0, hint_noise=0.0)
    plain = target_rank(llm.rank([request()])[0], 0)
    hinted = target_rank(llm.rank([request("Focus on the genres that dominate the history.")])[0], 0)
    assert plain > 1 and hinted < plain


def test_negation_and_contrast_flip_the_sense_of_a_keyword():
    assert hint_weights("Prefer popular films.")[0]["popularity"] > BASE_WEIGHTS["popularity"]
    assert hint_weights("Avoid popular films.")[0]["popularity"] < BASE_WEIGHTS["popularity"]
    assert hint_weights("Favour newer releases over older films.")[0]["newer"] > 0
    assert hint_weights("Favour older films over newer releases.")[0]["newer"] < 0


def test_text_that_names_no_aspect_changes_only_the_noise():
    weights, _ = hint_weights("Think about the weather today.")
    assert weights == BASE_WEIGHTS
    noiseless = SimulatedLLM(session_noise=0.0, hint_noise=0.0)
    assert noiseless.rank([request("Think about the weather today.")]) == noiseless.rank([request()])


def test_any_hint_text_naming_a_genre_favours_that_genre():
    llm = SimulatedLLM(session_noise=0.0, hint_noise=0.0)
    history = tuple(movie(i, genres=("Comedy",)) for i in range(4))
    candidates = tuple(movie(10 + k, genres=("Western",) if k == 3 else ("Drama",)) for k in range(6))
    ranked = llm.rank([RankRequest(history, candidates, "The viewer is in the mood for a western.")])[0]
    assert ranked[0] == 3


def test_default_knowledge_bases_have_twenty_distinct_hints_per_domain():
    for domain in ("movie", "game"):
        kb = load_knowledge_base("default", domain)
        assert len(kb) == 20 and len(set(kb.hints)) == 20


def test_knowledge_base_errors_name_the_file_line_and_fix(tmp_path):
    bad = tmp_path / "kb.jsonl"
    bad.write_text('{"hint": "Prefer comedies."}\nnot json\n')
    with pytest.raises(ValueError, match=r"kb\.jsonl line 2: expected a JSON object"):
        load_knowledge_base(bad)
    with pytest.raises(ValueError, match="hint 2 repeats hint 1"):
        load_knowledge_base(["Prefer comedies.", "prefer comedies"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_knowledge_base(tmp_path / "missing.txt")


def test_knowledge_base_hash_changes_with_any_hint_text():
    a = load_knowledge_base(["Prefer comedies.", "Prefer dramas."])
    b = load_knowledge_base(["Prefer comedies.", "Prefer drama."])
    assert a.hash != b.hash and a.hint_for_action(0) is None and a.hint_for_action(2) == "Prefer dramas."


# ------------------------------------------------------------------------------ the vectorised scorer
def real_dataset(name):
    from pathlib import Path

    from rec_gym.data import load_dataset

    folder = Path(__file__).resolve().parents[1].parent / "shared" / "data" / {"steam": "steam-sessions"}.get(name, name)
    if not folder.is_dir():
        pytest.skip(f"{folder} is not there")
    return load_dataset(name, folder)


@pytest.mark.parametrize("name", ["ml-latest-small", "steam", "synthetic"])
def test_batch_features_equal_the_item_by_item_definition(name):
    from simulated_reference import reference_features

    from rec_gym.data import load_dataset
    from rec_gym.llm.simulated import ItemArrays, batch_features

    dataset = load_dataset("synthetic") if name == "synthetic" else real_dataset(name)
    rows = np.random.default_rng(0).choice(len(dataset), size=60, replace=False)
    got = batch_features(ItemArrays(dataset.catalog.items), dataset.history[rows], dataset.candidates[rows])
    for k, row in enumerate(rows):
        history, candidates = dataset.session_items(int(row))
        np.testing.assert_allclose(got[k, :len(candidates)], reference_features(history, candidates), atol=1e-12)


def test_target_ranks_match_rank_and_do_not_depend_on_batch_size_or_order():
    from rec_gym.data import load_dataset

    dataset = load_dataset("synthetic")
    kb = load_knowledge_base("default", "movie")
    hints = [None, *kb.hints]
    llm = SimulatedLLM()
    rows = dataset.indices("val")[:40]
    ranks = llm.target_ranks(dataset, rows, hints)
    for k, row in enumerate(rows[:5]):
        history, candidates = dataset.session_items(int(row))
        base = RankRequest(tuple(history), tuple(candidates))
        expected = [target_rank(r, int(dataset.target_pos[row])) for r in llm.rank([base.with_hint(h) for h in hints])]
        assert ranks[k].tolist() == expected
    shuffled = np.random.default_rng(1).permutation(rows.size)
    np.testing.assert_array_equal(llm.target_ranks(dataset, rows[shuffled], hints[::-1], chunk=3), ranks[shuffled][:, ::-1])
    alone = SimulatedLLM().rank([base.with_hint(hints[7])])[0]
    assert alone == llm.rank([base.with_hint(h) for h in hints])[7]


def test_noise_is_keyed_by_seed_session_and_hint_text():
    a, b = SimulatedLLM(seed=0), SimulatedLLM(seed=1)
    assert not np.array_equal(a.scores(request()), b.scores(request()))
    assert np.array_equal(a.scores(request()), SimulatedLLM(seed=0).scores(request()))
    assert not np.array_equal(a.scores(request("Think about the weather today.")),
                              a.scores(request("Think about the weather tonight.")))
    assert a.name.startswith("simulated-v2(") and a.cheap_and_deterministic


def test_a_session_with_no_history_is_ranked_by_popularity_and_noise():
    llm = SimulatedLLM(session_noise=0.0, hint_noise=0.0)
    candidates = tuple(movie(k, popularity=k / 10) for k in range(5))
    assert llm.rank([RankRequest((), candidates)])[0] == [4, 3, 2, 1, 0]


def test_noise_draws_are_standard_normal_and_independent_across_streams_and_positions():
    from rec_gym.llm.simulated import _mix, _normals

    keys = _mix(np.arange(1, 20001, dtype=np.uint64))
    draws = _normals(keys, 50)  # (20000, 50)
    assert abs(draws.mean()) < 0.01 and abs(draws.std() - 1.0) < 0.01
    assert abs(np.mean(draws > 1.96) - 0.025) < 0.002  # the tails are a normal's
    other = _normals(keys ^ np.uint64(12345), 50)
    assert abs(np.corrcoef(draws.ravel(), other.ravel())[0, 1]) < 0.01
    assert abs(np.corrcoef(draws[:, 0], draws[:, 1])[0, 1]) < 0.03
