"""The simulated preference writer in the synthetic world: faithful texts name the session's latent preference at
the documented fidelity; on data without one, texts carry the history's facts only; text_kind tells the kinds apart."""

from __future__ import annotations

from collections import Counter

import pytest

from rec_gym.data import load_dataset
from rec_gym.data.synthetic import latent_preference
from rec_gym.llm import make_llm
from rec_gym.llm.simulated_preferences import KINDS, latent_phrase, supported_factors, text_kind
from rec_gym.recsys.preferences import generate_preferences, session_latent

from conftest import write_session_folder

N = 8


@pytest.fixture(scope="module")
def synthetic():
    return load_dataset("synthetic", n_train=200)


def _texts(dataset, fidelity, rows, temperature=1.0):
    writer = make_llm("simulated", preference_fidelity=fidelity)
    return generate_preferences(writer, dataset, rows, n=N, temperature=temperature, cache=False, progress=False)


def test_the_latent_preference_comes_from_a_synthetic_session_id_only():
    assert latent_preference("creator-17") == "creator"
    assert latent_preference("last_item-3") == "last_item"
    assert latent_preference("user-3") is None and latent_preference("genre") is None


def test_faithful_texts_name_the_latent_preference_at_the_fidelity_and_nothing_else_changes(synthetic):
    rows = synthetic.indices("test")[:40]
    by_fidelity = {f: _texts(synthetic, f, rows) for f in (0.0, 0.5, 1.0)}
    named = {}
    for fidelity, replies in by_fidelity.items():
        hits = faithful = 0
        for row, texts in zip(rows, replies):
            history = synthetic.session_items(int(row))[0]
            phrase = latent_phrase(history, session_latent(synthetic, row), synthetic.domain)[1]
            for text in texts:
                if text_kind(text, history, synthetic.domain, session_latent(synthetic, row)) == "faithful":
                    faithful += 1
                    hits += phrase in text
        named[fidelity] = hits / faithful
    assert named[0.0] == 0.0 and named[1.0] == 1.0
    assert 0.35 < named[0.5] < 0.65
    # The fidelity decides only whether the latent preference is named: each sample keeps its kind.
    kinds = {f: [text_kind(t, synthetic.session_items(int(r))[0], synthetic.domain, session_latent(synthetic, r))
                 for r, texts in zip(rows, replies) for t in texts] for f, replies in by_fidelity.items()}
    assert kinds[0.0] == kinds[0.5] == kinds[1.0]
    shares = Counter(kinds[1.0])
    assert 0.45 < shares["faithful"] / len(kinds[1.0]) < 0.75 and set(shares) == set(KINDS)


def test_the_greedy_text_names_the_latent_preference_first(synthetic):
    row = int(synthetic.indices("test")[0])
    text = _texts(synthetic, 0.5, [row], temperature=0.0)[0][0]
    history = synthetic.session_items(row)[0]
    name, phrase = latent_phrase(history, session_latent(synthetic, row), synthetic.domain)
    assert text.startswith(f"Factors: {name},") and f"The user {phrase};" in text
    assert _texts(synthetic, 0.0, [row], temperature=0.0)[0][0] != text


def test_on_data_without_a_latent_preference_texts_carry_the_historys_facts_only(tmp_path):
    items = [{"item_id": i, "title": f"Film {i} ({1960 + i})", "year": 1960 + i, "genres": ["Comedy", "Drama"][i % 2:],
              "creator": f"Director {i % 3}"} for i in range(60)]
    dataset = load_dataset(str(write_session_folder(tmp_path / "real", items)))
    rows = dataset.indices("train")[:10]
    assert _texts(dataset, 0.0, rows) == _texts(dataset, 1.0, rows)
    assert session_latent(dataset, int(rows[0])) is None


def test_text_kind_reads_each_kind_of_reply():
    from rec_gym.data.types import Item

    history = [Item(str(i), f"Harbor {i} (1984)", {"year": 1984, "genres": ("Comedy",), "creator": "Ada Alder",
                                                   "popularity": 0.9}) for i in range(4)]
    facts = supported_factors(history, "movie")
    assert text_kind(f"Factors: genres, era\nPreference: The user {facts['genres']}; {facts['era']}.", history,
                     "movie") == "faithful"
    assert text_kind("Factors: genres\nPreference: The user prefers Horror movies.", history, "movie") == "wrong"
    assert text_kind(f"Factors: genres, era\nPreference: The user {facts['genres']}; prefers Horror movies.", history,
                     "movie") == "wrong"
    assert text_kind("Factors: taste\nPreference: The user likes movies that are entertaining.", history,
                     "movie") == "unhelpful"
    assert text_kind(f"The user {facts['genres']}.", history, "movie") == "broken"
    phrase = latent_phrase(history, "creator", "movie")[1]
    assert phrase == "wants more by Ada Alder above all"
    assert text_kind(f"Factors: creator\nPreference: The user {phrase}.", history, "movie", "creator") == "faithful"
    assert text_kind(f"Factors: creator\nPreference: The user {phrase}.", history, "movie") == "wrong"


def test_text_kind_judges_genres_and_series_by_their_facts_not_their_wording():
    from rec_gym.data.types import Item

    genres = [("Drama", "Comedy"), ("Drama", "Action"), ("Drama", "Comedy"), ("Action", "Western"), ("Horror",)]
    titles = ["Iron Harbor", "Iron Harbor 2", "Glass Canyon", "Last Orchard", "Neon Parade"]
    history = [Item(str(i), f"{titles[i]} ({1980 + i})", {"year": 1980 + i, "genres": g}) for i, g in enumerate(genres)]

    def kind(statement):
        return text_kind(f"Factors: genres\nPreference: The user {statement}.", history, "movie")

    assert supported_factors(history, "movie")["genres"] == "prefers Drama, Comedy and Action movies"
    assert kind("prefers Comedy and Drama movies") == "faithful"  # the top genres in another order
    assert kind("prefers Action movies") == "faithful"  # a subset of them
    assert kind("prefers Drama and Western movies") == "wrong"  # in the history once, behind the top three
    assert kind("prefers Drama and Drama movies") == "wrong"
    assert kind("prefers Documentary movies") == "wrong"
    assert kind("follows a series or franchise (harbor)") == "faithful"  # any word two titles share
    assert kind("follows a series or franchise (canyon)") == "wrong"


def test_the_backend_name_changes_with_the_fidelity_only_away_from_the_default():
    assert make_llm("simulated").name == make_llm("simulated", preference_fidelity=0.5).name
    assert "preference_fidelity=0.9" in make_llm("simulated", preference_fidelity=0.9).name
    with pytest.raises(ValueError, match="preference_fidelity must be in"):
        make_llm("simulated", preference_fidelity=1.5)
